"""Accounts in `_alyx_users`: the record, email normalisation, and the SQL that reads and writes them.

Every function here takes a `sqlite3.Connection` and runs inside whatever the caller
opened (a `Database.write` savepoint, a read, the CLI's connection), so the same code
serves the server and `alyx admin`. Emails are stored normalised (surrounding space
removed, lower case) and the column is also `COLLATE NOCASE` with a unique index, so
`Ada@Example.com` and `ada@example.com` are one account whichever path wrote them.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from alyx_server.db.constraints import ConstraintViolation, map_integrity_errors
from alyx_server.errors import AlyxError, Conflict, FieldIssue, ValidationError
from alyx_server.schema.system_tables import USERS_TABLE
from alyx_server.tools.ids import new_id

__all__ = [
    "MAX_METADATA_BYTES",
    "NO_ADMIN_HINT",
    "ROLE_PATTERN",
    "UserRecord",
    "admin_count",
    "admin_missing",
    "check_metadata",
    "check_role",
    "delete_user",
    "insert_user",
    "list_users",
    "normalize_email",
    "update_user",
    "user_by_email",
    "user_by_id",
]

MAX_METADATA_BYTES = 16 * 1024
"""Largest `metadata` / `app_metadata` object, as JSON."""
ROLE_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(?:\.[^@\s.]+)+")
# Control characters (C0, DEL, C1): never part of an address, and a NUL or line break in
# one could cut or forge what mail headers and logs show.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_COLUMNS = (
    "id, email, password_hash, role, verified, disabled, metadata, app_metadata, created_at, updated_at"
)
_BY_ID = f"SELECT {_COLUMNS} FROM {USERS_TABLE} WHERE id = ?"
_BY_EMAIL = f"SELECT {_COLUMNS} FROM {USERS_TABLE} WHERE email = ?"
_INSERT = f"INSERT INTO {USERS_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING {_COLUMNS}"
_WRITABLE = frozenset({"password_hash", "role", "verified", "disabled", "metadata", "app_metadata"})


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One `_alyx_users` row, JSON columns parsed."""

    id: str
    email: str
    password_hash: str | None
    role: str
    verified: bool
    disabled: bool
    metadata: dict[str, Any]
    app_metadata: dict[str, Any]
    created_at: str
    updated_at: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, Any]:
        """The `user` object of SPEC §8, as the account holder sees it."""
        return {
            "id": self.id,
            "email": self.email,
            "role": self.role,
            "verified": self.verified,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def for_admin(self) -> dict[str, Any]:
        """What the admin API shows: the public fields plus `app_metadata` and `disabled`."""
        return {**self.public(), "app_metadata": self.app_metadata, "disabled": self.disabled}


def _record(row: tuple[Any, ...]) -> UserRecord:
    uid, email, pw, role, verified, disabled, meta, app_meta, created, updated = row
    return UserRecord(
        uid, email, pw, role, bool(verified), bool(disabled),
        orjson.loads(meta), orjson.loads(app_meta), created, updated,
    )  # fmt: skip


def normalize_email(value: object, field: str = "email") -> str:
    """`value` stripped and lower-cased, or a 400 VALIDATION_ERROR saying what is wrong."""
    if not isinstance(value, str):
        raise ValidationError(
            f"{field} must be a string", [FieldIssue(field, "invalid_type", f"{field} must be a string")]
        )
    email = value.strip().lower()
    control = _CONTROL.search(email)
    if control is not None:
        message = (
            f"{field} must not contain control characters "
            f"(U+{ord(control.group()):04X} at position {control.start() + 1}); remove it"
        )
        raise ValidationError(message, [FieldIssue(field, "format_email", message)])
    if len(email) > 254 or _EMAIL.fullmatch(email) is None:
        message = f"{field} must be an email address like name@example.com"
        raise ValidationError(message, [FieldIssue(field, "format_email", message)])
    return email


def check_metadata(value: object, field: str) -> dict[str, Any]:
    """A JSON object of at most MAX_METADATA_BYTES, or a 400 naming `field`."""
    if not isinstance(value, dict):
        message = f"{field} must be a JSON object"
        raise ValidationError(message, [FieldIssue(field, "invalid_type", message)])
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        message = f"{field} must be at most {MAX_METADATA_BYTES // 1024} KiB as JSON"
        raise ValidationError(message, [FieldIssue(field, "max_length", message)])
    return value


def check_role(value: object) -> str:
    """A role name (`user`, `admin`, or another lower-case word), or a 400."""
    if not isinstance(value, str) or ROLE_PATTERN.fullmatch(value) is None:
        message = "role must be a lower-case word of letters, digits, _ or - (e.g. user, admin, editor)"
        raise ValidationError(message, [FieldIssue("role", "pattern", message)])
    return value


def user_by_id(conn: sqlite3.Connection, user_id: str) -> UserRecord | None:
    row = conn.execute(_BY_ID, (user_id,)).fetchone()
    return _record(row) if row else None


def user_by_email(conn: sqlite3.Connection, email: str) -> UserRecord | None:
    row = conn.execute(_BY_EMAIL, (email,)).fetchone()
    return _record(row) if row else None


def insert_user(
    conn: sqlite3.Connection,
    *,
    email: str,
    password_hash: str | None,
    now: str,
    role: str = "user",
    verified: bool = False,
    metadata: Mapping[str, Any] | None = None,
    app_metadata: Mapping[str, Any] | None = None,
) -> UserRecord:
    """Create an account; 409 USER_EXISTS when the email (in any case) has one."""
    params = (
        new_id(), email, password_hash, role, int(verified),
        orjson.dumps(metadata or {}).decode(), orjson.dumps(app_metadata or {}).decode(), now, now,
    )  # fmt: skip
    with map_integrity_errors(_email_taken):
        row = conn.execute(_INSERT, params).fetchone()
    return _record(row)


def _email_taken(violation: ConstraintViolation) -> AlyxError | None:
    if violation.kind != "unique" or "email" not in violation.columns:
        return None
    return Conflict("an account with this email already exists", code="USER_EXISTS", field="email")


def update_user(
    conn: sqlite3.Connection, user_id: str, changes: Mapping[str, Any], *, now: str
) -> UserRecord | None:
    """Set the given columns (and `updated_at`); None when the account does not exist."""
    unknown = set(changes) - _WRITABLE
    if unknown:
        raise ValueError(f"not writable user columns: {sorted(unknown)}")
    names = list(changes)
    values = [_column_value(changes[n]) for n in names]
    assignments = ", ".join(f"{n} = ?" for n in [*names, "updated_at"])
    row = conn.execute(
        f"UPDATE {USERS_TABLE} SET {assignments} WHERE id = ? RETURNING {_COLUMNS}",
        (*values, now, user_id),
    ).fetchone()
    return _record(row) if row else None


def _column_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return value


def delete_user(conn: sqlite3.Connection, user_id: str) -> bool:
    """Delete an account with its sessions and one-time tokens (foreign-key cascade)."""
    return conn.execute(f"DELETE FROM {USERS_TABLE} WHERE id = ?", (user_id,)).rowcount > 0


def list_users(
    conn: sqlite3.Connection, *, limit: int, offset: int, email: str | None = None
) -> tuple[list[UserRecord], int]:
    """A page of accounts, oldest first, and the total; `email` filters by substring."""
    where, params = ("WHERE instr(email, ?) > 0", [email.lower()]) if email else ("", [])
    total = conn.execute(f"SELECT count(*) FROM {USERS_TABLE} {where}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM {USERS_TABLE} {where} ORDER BY created_at, id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return [_record(r) for r in rows], int(total)


def admin_count(conn: sqlite3.Connection) -> int:
    """How many enabled accounts have the admin role."""
    row = conn.execute(f"SELECT count(*) FROM {USERS_TABLE} WHERE role = 'admin' AND disabled = 0")
    return int(row.fetchone()[0])


NO_ADMIN_HINT = "no admin account exists yet; create one with: alyx admin create <email>"


def admin_missing(conn: sqlite3.Connection) -> bool:
    """True when the database has no enabled admin (also before the accounts table exists)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (USERS_TABLE,)
    ).fetchone()
    return exists is None or admin_count(conn) == 0
