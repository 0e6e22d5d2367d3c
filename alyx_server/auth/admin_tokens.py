"""Admin and deploy tokens in `_alyx_tokens`: long-lived bearer secrets for tools and CI.

A token is `alyx_admin_<secret>` or `alyx_deploy_<secret>` (the prefix tells it from an
access token at a glance and lets secret scanners find leaked ones); only its SHA-256 is
stored, with a name, its permissions and an optional expiry. It is shown once, when it
is created. Admin tokens default to every permission (`*`), deploy tokens to `deploy`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

import orjson

from alyx_server.auth.tokens import hash_secret, invalid_token, new_secret, token_expired
from alyx_server.errors import Conflict, NotFound, Unauthorized, ValidationError
from alyx_server.schema.system_tables import TOKENS_TABLE
from alyx_server.tools.ids import new_id
from alyx_server.tools.suggest import did_you_mean

__all__ = [
    "PERMISSIONS",
    "TOKEN_PREFIX",
    "TokenKind",
    "TokenRecord",
    "check_permissions",
    "create_token",
    "list_tokens",
    "revoke_token",
    "token_for_secret",
]

TokenKind = Literal["admin", "deploy"]
TOKEN_PREFIX = "alyx_"
PERMISSIONS: tuple[str, ...] = (
    "*", "users", "schema", "migrations", "stats", "logs", "functions", "events", "tokens", "deploy",
)  # fmt: skip
"""What a token may be allowed; `*` is everything. Admin users have every permission."""
_DEFAULTS: dict[str, tuple[str, ...]] = {"admin": ("*",), "deploy": ("deploy",)}
_COLUMNS = "id, name, kind, permissions, expires_at, created_at, last_used_at, revoked_at"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One stored token (never its secret)."""

    id: str
    name: str
    kind: TokenKind
    permissions: tuple[str, ...]
    expires_at: str | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "permissions": list(self.permissions),
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
        }


def _record(row: tuple[object, ...]) -> TokenRecord:
    tid, name, kind, perms, expires, created, used, revoked = row
    return TokenRecord(
        str(tid), str(name), "admin" if kind == "admin" else "deploy",
        tuple(orjson.loads(str(perms))), _opt(expires), str(created), _opt(used), _opt(revoked),
    )  # fmt: skip


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def check_permissions(kind: TokenKind, permissions: tuple[str, ...]) -> tuple[str, ...]:
    """The permissions to store (the kind's default when none are given), or a 400."""
    if not permissions:
        return _DEFAULTS[kind]
    for permission in permissions:
        if permission not in PERMISSIONS:
            hint = did_you_mean(permission, PERMISSIONS)
            known = ", ".join(PERMISSIONS)
            raise ValidationError(
                f"unknown permission {permission!r}" + (f" ({hint})" if hint else "") + f"; known: {known}"
            )
    return tuple(dict.fromkeys(permissions))


def create_token(
    conn: sqlite3.Connection,
    *,
    name: str,
    kind: TokenKind,
    permissions: tuple[str, ...],
    expires_at: str | None,
    now: str,
) -> tuple[str, TokenRecord]:
    """Store a new token; returns its secret (to show once) and its record."""
    if not name.strip():
        raise ValidationError("a token needs a name (e.g. ci-deploy)")
    clash = conn.execute(
        f"SELECT 1 FROM {TOKENS_TABLE} WHERE name = ? AND revoked_at IS NULL", (name,)
    ).fetchone()
    if clash:
        raise Conflict(
            f"a live token named {name!r} exists; revoke it or pick another name", code="TOKEN_EXISTS"
        )
    secret = f"{TOKEN_PREFIX}{kind}_{new_secret()}"
    perms = check_permissions(kind, permissions)
    row = conn.execute(
        f"INSERT INTO {TOKENS_TABLE} (id, name, kind, token_hash, permissions, expires_at, created_at) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
        (new_id(), name, kind, hash_secret(secret), orjson.dumps(list(perms)).decode(), expires_at, now),
    ).fetchone()
    return secret, _record(row)


def list_tokens(conn: sqlite3.Connection) -> list[TokenRecord]:
    """Every token, newest first, revoked ones included."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM {TOKENS_TABLE} ORDER BY created_at DESC, id").fetchall()
    return [_record(r) for r in rows]


def revoke_token(conn: sqlite3.Connection, ident: str, now: str) -> TokenRecord:
    """Revoke the live token with this id or name; 404 when there is none."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM {TOKENS_TABLE} WHERE (id = ? OR name = ?) AND revoked_at IS NULL",
        (ident, ident),
    ).fetchall()
    if not rows:
        raise NotFound(
            f"no live token with id or name {ident!r} (see `alyx admin list-tokens`)", code="TOKEN_NOT_FOUND"
        )
    token = _record(rows[0])
    conn.execute(f"UPDATE {TOKENS_TABLE} SET revoked_at = ? WHERE id = ?", (now, token.id))
    return token


def token_for_secret(conn: sqlite3.Connection, secret: str, now: str) -> TokenRecord:
    """The live token whose secret this is; 401 INVALID_TOKEN, TOKEN_EXPIRED or SESSION_REVOKED."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM {TOKENS_TABLE} WHERE token_hash = ?", (hash_secret(secret),)
    ).fetchone()
    if row is None:
        raise invalid_token("unknown admin or deploy token")
    token = _record(row)
    if token.revoked_at is not None:
        raise Unauthorized(f"the token {token.name!r} was revoked", code="SESSION_REVOKED")
    if token.expires_at is not None and token.expires_at <= now:
        raise token_expired(f"the token {token.name!r} has expired; create a new one")
    return token
