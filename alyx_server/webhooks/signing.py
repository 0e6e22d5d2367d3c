"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

    webhook-id          msg_<32 hex>: the same on every attempt of one delivery
    webhook-timestamp   Unix seconds of this attempt
    webhook-signature   v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

The key is the base64 after `whsec_` in the secret. Signing is these few lines of
`hmac` rather than the `standardwebhooks` package: the specification defines it in one
line, and the package would bring its HTTP client and date libraries into the server for
it. The tests verify our headers with that package, as receivers do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["delivery_headers", "new_message_id", "new_secret", "sign"]


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value of one attempt."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def delivery_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(16)


def new_secret() -> str:
    """A fresh `whsec_` secret of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
