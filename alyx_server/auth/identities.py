"""OAuth / OpenID identities in `_alyx_identities`: who an account is at a provider.

One row per (provider, subject), linked to one account; an account may hold several
(Google and GitHub, say) besides or instead of a password. `sign_in_methods` counts what
an account can sign in with, so that the last one is never removed: an account without a
password keeps at least one identity. Functions take a `sqlite3.Connection` and run in
whatever the caller opened, so the server and `alyx admin` share them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from alyx_server.errors import Conflict, NotFound
from alyx_server.schema.system_tables import IDENTITIES_TABLE, USERS_TABLE
from alyx_server.tools.ids import new_id

__all__ = [
    "IdentityRecord",
    "identities_of",
    "identity_by_subject",
    "insert_identity",
    "last_method_error",
    "remove_identity",
    "touch_identity",
]

_COLUMNS = "id, provider, subject, user_id, email, email_verified, created_at, updated_at, last_sign_in_at"


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    id: str
    provider: str
    subject: str
    user_id: str
    email: str | None
    email_verified: bool
    created_at: str
    updated_at: str
    last_sign_in_at: str | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "subject": self.subject,
            "email": self.email,
            "email_verified": self.email_verified,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_sign_in_at": self.last_sign_in_at,
        }


def _record(row: tuple[Any, ...]) -> IdentityRecord:
    iid, provider, subject, user_id, email, verified, created, updated, last = row
    return IdentityRecord(iid, provider, subject, user_id, email, bool(verified), created, updated, last)


def identity_by_subject(conn: sqlite3.Connection, provider: str, subject: str) -> IdentityRecord | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM {IDENTITIES_TABLE} WHERE provider = ? AND subject = ?", (provider, subject)
    ).fetchone()
    return _record(row) if row else None


def identities_of(conn: sqlite3.Connection, user_id: str) -> list[IdentityRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM {IDENTITIES_TABLE} WHERE user_id = ? ORDER BY created_at, id", (user_id,)
    )
    return [_record(row) for row in rows]


def insert_identity(
    conn: sqlite3.Connection,
    *,
    provider: str,
    subject: str,
    user_id: str,
    email: str | None,
    email_verified: bool,
    now: str,
) -> IdentityRecord:
    row = conn.execute(
        f"INSERT INTO {IDENTITIES_TABLE} ({_COLUMNS}) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
        (new_id(), provider, subject, user_id, email, int(email_verified), now, now, now),
    ).fetchone()
    return _record(row)


def touch_identity(
    conn: sqlite3.Connection, identity_id: str, *, email: str | None, email_verified: bool, now: str
) -> None:
    """Record a sign-in, with the email the provider gave this time."""
    conn.execute(
        f"UPDATE {IDENTITIES_TABLE} SET email = ?, email_verified = ?, updated_at = ?, last_sign_in_at = ? "
        "WHERE id = ?",
        (email, int(email_verified), now, now, identity_id),
    )


def last_method_error() -> Conflict:
    return Conflict(
        "this is the account's last way to sign in; set a password or link another provider first",
        code="LAST_SIGN_IN_METHOD",
    )


def remove_identity(conn: sqlite3.Connection, user_id: str, identity_id: str) -> IdentityRecord:
    """Unlink one identity of an account, unless it is the account's last sign-in method."""
    found = [i for i in identities_of(conn, user_id) if i.id == identity_id]
    if not found:
        raise NotFound(f"this account has no identity {identity_id!r}", code="IDENTITY_NOT_FOUND")
    row = conn.execute(f"SELECT password_hash FROM {USERS_TABLE} WHERE id = ?", (user_id,)).fetchone()
    has_password = row is not None and row[0] is not None
    if not has_password and len(identities_of(conn, user_id)) <= 1:
        raise last_method_error()
    conn.execute(f"DELETE FROM {IDENTITIES_TABLE} WHERE id = ?", (identity_id,))
    return found[0]
