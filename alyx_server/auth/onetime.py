"""One-time tokens in `_alyx_auth_tokens`: email verification and password reset.

Each is a random secret sent to the account's address; only its SHA-256 is stored. A
token works once (`used_at` is set in the same transaction that acts on it), only
before `expires_at`, and issuing a new token of a kind retires the account's earlier
unused ones, so only the latest email sent works.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from alyx_server.auth.tokens import invalid_token, token_expired
from alyx_server.schema.system_tables import AUTH_TOKENS_TABLE
from alyx_server.tools.ids import new_id

__all__ = ["OneTimeKind", "check_one_time", "issue_one_time", "redeem_one_time"]

OneTimeKind = Literal["verify", "reset"]

_RETIRE = f"UPDATE {AUTH_TOKENS_TABLE} SET used_at = ? WHERE user_id = ? AND kind = ? AND used_at IS NULL"
_INSERT = (
    f"INSERT INTO {AUTH_TOKENS_TABLE} (id, user_id, kind, token_hash, expires_at, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_FIND = f"SELECT id, user_id, expires_at, used_at FROM {AUTH_TOKENS_TABLE} WHERE token_hash = ? AND kind = ?"
_USE = f"UPDATE {AUTH_TOKENS_TABLE} SET used_at = ? WHERE id = ?"
_NAMES = {"verify": "verification", "reset": "password reset"}


def issue_one_time(
    conn: sqlite3.Connection, *, user_id: str, kind: OneTimeKind, token_hash: str, expires_at: str, now: str
) -> None:
    """Store a new token of `kind` for the account, retiring its earlier unused ones."""
    conn.execute(_RETIRE, (now, user_id, kind))
    conn.execute(_INSERT, (new_id(), user_id, kind, token_hash, expires_at, now))


def check_one_time(
    conn: sqlite3.Connection, *, token_hash: str, kind: OneTimeKind, now: str
) -> tuple[str, str]:
    """(token id, account id) of a usable token; 401 INVALID_TOKEN when unknown or already
    used, TOKEN_EXPIRED when too old. Consumes nothing."""
    row = conn.execute(_FIND, (token_hash, kind)).fetchone()
    name = _NAMES[kind]
    if row is None or row[3] is not None:
        raise invalid_token(f"this {name} token is invalid or was already used; request a new one")
    token_id, user_id, expires_at, _used = row
    if expires_at <= now:
        raise token_expired(f"this {name} token has expired; request a new one")
    return str(token_id), str(user_id)


def redeem_one_time(conn: sqlite3.Connection, *, token_hash: str, kind: OneTimeKind, now: str) -> str:
    """Use the token up and return its account id (errors as `check_one_time`). Call it
    inside the write that acts on the token, so both commit or neither does."""
    token_id, user_id = check_one_time(conn, token_hash=token_hash, kind=kind, now=now)
    conn.execute(_USE, (now, token_id))
    return user_id
