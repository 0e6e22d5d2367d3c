"""Sessions in `_alyx_sessions`: one row per refresh token, rows of one sign-in share a family.

    login          a new family with its first row
    refresh        the presented row is retired (`revoked_at`, `replaced_by` = the new row)
                   and a new row joins the family: refresh tokens are single-use
    reuse          a retired row presented again means two parties hold the family's
                   tokens: every row of the family is revoked, both are signed out
    logout         every live row of the family is revoked

A family is live while one of its rows is not revoked; access tokens name the family
(`sid`), so they stay valid across refreshes and die with their family. Revocations are
returned as outcomes rather than raised, so that they commit: an exception inside a
`Database.write` would roll the revocation back with it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import Enum

from alyx_server.schema.system_tables import SESSIONS_TABLE
from alyx_server.tools.ids import new_id

__all__ = [
    "FamilyState",
    "Refresh",
    "RefreshOutcome",
    "SessionRow",
    "family_of_token",
    "family_state",
    "open_session",
    "revoke_family",
    "revoke_user_sessions",
    "rotate_session",
]

_INSERT = (
    f"INSERT INTO {SESSIONS_TABLE} (id, user_id, family_id, refresh_token_hash, expires_at, "
    "user_agent, ip, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_BY_HASH = (
    f"SELECT id, user_id, family_id, expires_at, revoked_at, replaced_by FROM {SESSIONS_TABLE} "
    "WHERE refresh_token_hash = ?"
)
_RETIRE = f"UPDATE {SESSIONS_TABLE} SET revoked_at = ?, replaced_by = ? WHERE id = ? AND revoked_at IS NULL"
_REVOKE_FAMILY = f"UPDATE {SESSIONS_TABLE} SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL"
_LIVE_ROW = f"SELECT id, user_id FROM {SESSIONS_TABLE} WHERE family_id = ? AND revoked_at IS NULL LIMIT 1"


@dataclass(frozen=True, slots=True)
class SessionRow:
    """The live row of a family after login or refresh."""

    id: str
    user_id: str
    family_id: str
    expires_at: str


class Refresh(Enum):
    """What presenting a refresh token led to."""

    ROTATED = "rotated"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    REUSED = "reused"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    kind: Refresh
    session: SessionRow | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class FamilyState:
    """Whether a family is live, and (when it is) its live row and owner."""

    live_row: str | None
    user_id: str | None

    @property
    def live(self) -> bool:
        return self.live_row is not None


def open_session(
    conn: sqlite3.Connection,
    *,
    user_id: str,
    token_hash: str,
    expires_at: str,
    now: str,
    user_agent: str | None,
    ip: str | None,
    family_id: str | None = None,
) -> SessionRow:
    """Insert a live row, in a new family unless `family_id` is given."""
    row_id = new_id()
    family = family_id or new_id()
    conn.execute(_INSERT, (row_id, user_id, family, token_hash, expires_at, user_agent, ip, now))
    return SessionRow(row_id, user_id, family, expires_at)


def rotate_session(
    conn: sqlite3.Connection,
    *,
    token_hash: str,
    new_hash: str,
    now: str,
    expires_at: str,
    user_agent: str | None,
    ip: str | None,
) -> RefreshOutcome:
    """Retire the row of `token_hash` and open its successor; see the module docstring."""
    row = conn.execute(_BY_HASH, (token_hash,)).fetchone()
    if row is None:
        return RefreshOutcome(Refresh.UNKNOWN)
    row_id, user_id, family, row_expires, revoked_at, replaced_by = row
    if revoked_at is not None:
        if replaced_by is None:
            return RefreshOutcome(Refresh.REVOKED, user_id=user_id)
        conn.execute(_REVOKE_FAMILY, (now, family))
        return RefreshOutcome(Refresh.REUSED, user_id=user_id)
    if row_expires <= now:
        return RefreshOutcome(Refresh.EXPIRED, user_id=user_id)
    session = open_session(
        conn, user_id=user_id, token_hash=new_hash, expires_at=expires_at, now=now,
        user_agent=user_agent, ip=ip, family_id=family,
    )  # fmt: skip
    conn.execute(_RETIRE, (now, session.id, row_id))
    return RefreshOutcome(Refresh.ROTATED, session, user_id)


def family_of_token(conn: sqlite3.Connection, token_hash: str) -> tuple[str, str] | None:
    """(family id, user id) of the row holding `token_hash`, retired or not."""
    row = conn.execute(_BY_HASH, (token_hash,)).fetchone()
    return (row[2], row[1]) if row else None


def revoke_family(conn: sqlite3.Connection, family_id: str, now: str) -> int:
    """Revoke every live row of a family; returns how many were live."""
    return conn.execute(_REVOKE_FAMILY, (now, family_id)).rowcount


def revoke_user_sessions(
    conn: sqlite3.Connection, user_id: str, now: str, *, keep_family: str | None = None
) -> int:
    """Revoke every live session of a user, except the family `keep_family` when given."""
    sql = f"UPDATE {SESSIONS_TABLE} SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL"
    params: tuple[str, ...] = (now, user_id)
    if keep_family is not None:
        sql += " AND family_id != ?"
        params = (*params, keep_family)
    return conn.execute(sql, params).rowcount


def family_state(conn: sqlite3.Connection, family_id: str) -> FamilyState:
    """The live row of a family (an indexed point read), or a dead state."""
    row = conn.execute(_LIVE_ROW, (family_id,)).fetchone()
    return FamilyState(row[0], row[1]) if row else FamilyState(None, None)
