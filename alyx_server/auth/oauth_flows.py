"""OAuth sign-ins in progress, in `_alyx_oauth_flows`, shared by every process.

Three kinds of one-time secrets, each stored as its SHA-256 with an expiry and used once
(`used_at` set by one `UPDATE ... WHERE used_at IS NULL`, so two processes racing on the
same secret cannot both win):

    state     made by /start: the PKCE verifier, the nonce, the app's redirect, the callback
              URL sent to the provider, the hash of the browser cookie, and for a link the
              account, and the app's code challenge when it sent one; redeemed by /callback
    exchange  made by /callback: the account signed in (and the app's code challenge, which
              then must be met); redeemed by POST /oauth/exchange or DELETE /api/auth/me
    link      made by POST /api/auth/identities for a signed-in account; redeemed by /start
"""

from __future__ import annotations

import hmac
import re
import sqlite3
from dataclasses import dataclass
from typing import Literal

from alyx_server.auth.tokens import hash_secret, invalid_token
from alyx_server.errors import ValidationError
from alyx_server.schema.system_tables import OAUTH_FLOWS_TABLE
from alyx_server.tools.ids import new_id

__all__ = [
    "FlowKind",
    "FlowRow",
    "check_app_challenge",
    "insert_flow",
    "prune_flows",
    "redeem_exchange_code",
    "redeem_flow",
]

FlowKind = Literal["state", "exchange", "link"]
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_COLUMNS = "id, provider, redirect, callback_url, code_verifier, nonce, browser_hash, user_id, app_challenge"


@dataclass(frozen=True, slots=True)
class FlowRow:
    id: str
    provider: str
    redirect: str
    callback_url: str | None
    code_verifier: str | None
    nonce: str | None
    browser_hash: str | None
    user_id: str | None
    app_challenge: str | None = None


def insert_flow(
    conn: sqlite3.Connection,
    *,
    kind: FlowKind,
    token_hash: str,
    provider: str,
    redirect: str,
    expires_at: str,
    now: str,
    callback_url: str | None = None,
    code_verifier: str | None = None,
    nonce: str | None = None,
    browser_hash: str | None = None,
    user_id: str | None = None,
    app_challenge: str | None = None,
) -> None:
    conn.execute(
        f"INSERT INTO {OAUTH_FLOWS_TABLE} (id, kind, token_hash, provider, redirect, callback_url, "
        "code_verifier, nonce, browser_hash, user_id, expires_at, created_at, app_challenge) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id(),
            kind,
            token_hash,
            provider,
            redirect,
            callback_url,
            code_verifier,
            nonce,
            browser_hash,
            user_id,
            expires_at,
            now,
            app_challenge,
        ),
    )


def redeem_flow(conn: sqlite3.Connection, *, kind: FlowKind, token_hash: str, now: str) -> FlowRow | None:
    """Use up a live secret of `kind` and return its row; None when it is unknown, of
    another kind, expired or already used (the caller says which secret was refused)."""
    row = conn.execute(
        f"UPDATE {OAUTH_FLOWS_TABLE} SET used_at = ? "
        "WHERE token_hash = ? AND kind = ? AND used_at IS NULL AND expires_at > ? "
        f"RETURNING {_COLUMNS}",
        (now, token_hash, kind, now),
    ).fetchone()
    if row is None:
        return None
    return FlowRow(*row)


def prune_flows(conn: sqlite3.Connection, *, now: str) -> int:
    """Delete expired secrets (used ones stay until they expire, so a replay is told apart)."""
    return conn.execute(f"DELETE FROM {OAUTH_FLOWS_TABLE} WHERE expires_at <= ?", (now,)).rowcount


def check_app_challenge(challenge: object) -> str | None:
    """The app's `code_challenge` (S256 of a verifier it keeps: 43 base64url characters),
    None when it sent none; anything else is a 400."""
    if challenge is None:
        return None
    if not isinstance(challenge, str) or not _CHALLENGE.fullmatch(challenge):
        raise ValidationError(
            "code_challenge must be the base64url SHA-256 of a code verifier (43 characters, "
            "no padding), as in PKCE S256",
            code="OAUTH_CHALLENGE_INVALID",
        )
    return challenge


def redeem_exchange_code(conn: sqlite3.Connection, code: object, verifier: object, *, now: str) -> str:
    """Use up a one-time exchange code; the account id it signs in. When the sign-in was
    started with a `code_challenge`, `verifier` must be the verifier it was made from, so
    a code copied out of the app's address bar is no use without the app's storage."""
    if not isinstance(code, str) or not code or len(code) > 256:
        raise invalid_token("code must be the one-time code the sign-in redirect carried")
    row = redeem_flow(conn, kind="exchange", token_hash=hash_secret(code), now=now)
    if row is None or row.user_id is None:
        raise invalid_token("this sign-in code is invalid, expired or was already used; sign in again")
    if row.app_challenge is not None:
        from authlib.oauth2.rfc7636 import create_s256_code_challenge  # imported when used

        given = verifier if isinstance(verifier, str) and 43 <= len(verifier) <= 128 else None
        if given is None or not hmac.compare_digest(create_s256_code_challenge(given), row.app_challenge):
            raise invalid_token(
                "this sign-in was started with a code_challenge: send the code_verifier it was "
                "made from (the app that started the sign-in keeps it); sign in again"
            )
    return row.user_id
