"""Short-lived file tokens for the downloads of `protected` file fields.

`POST /api/files/token` checks the collection's read rule for the caller and issues a
token for one file (collection, document id, field, file name) valid for
`storage.file_token_ttl`; the download URL carries it as `?token=`, so an `<img src>` or a
link works without an `Authorization` header. A token opens that one file only, until it
expires. It is `<payload>.<signature>`: the payload base64url JSON
`{c, d, f, n, exp}`, the signature HMAC-SHA256 with a key derived from `auth.jwt.secret`
(never the secret itself, so a file token is never an access token, nor the reverse).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

import orjson

from alyx_server.errors import Forbidden, Unauthorized

__all__ = ["FileRef", "FileTokens"]


@dataclass(frozen=True, slots=True)
class FileRef:
    """One stored file: collection, document id (as text), field and file name."""

    collection: str
    doc_id: str
    field: str
    name: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FileTokens:
    """Issues and checks file tokens; `secret` is auth.jwt.secret."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"alyx file token v1", hashlib.sha256).digest()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, ref: FileRef, expires_at: float) -> str:
        body = {"c": ref.collection, "d": ref.doc_id, "f": ref.field, "n": ref.name, "exp": int(expires_at)}
        payload = _b64(orjson.dumps(body))
        return f"{payload}.{self._sign(payload)}"

    def check(self, token: str, ref: FileRef, now: float) -> None:
        """Return if `token` opens `ref` at `now`; else INVALID_TOKEN / TOKEN_EXPIRED 401 or 403."""
        payload, _, signature = token.partition(".")
        if not payload or not hmac.compare_digest(self._sign(payload), signature):
            raise Unauthorized("invalid file token; ask POST /api/files/token for one", code="INVALID_TOKEN")
        try:
            body = orjson.loads(_unb64(payload))
        except (binascii.Error, ValueError, orjson.JSONDecodeError) as e:
            raise Unauthorized("invalid file token", code="INVALID_TOKEN") from e
        if not isinstance(body, dict) or not isinstance(body.get("exp"), int):
            raise Unauthorized("invalid file token", code="INVALID_TOKEN")
        if body["exp"] <= now:
            raise Unauthorized("the file token has expired; ask POST /api/files/token for a new one",
                               code="TOKEN_EXPIRED")  # fmt: skip
        if (body.get("c"), body.get("d"), body.get("f"), body.get("n")) != (
            ref.collection, ref.doc_id, ref.field, ref.name,
        ):  # fmt: skip
            raise Forbidden("this file token is for another file")
