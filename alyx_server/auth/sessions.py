"""Sessions in `_alyx_sessions`: one row per refresh token, rows of one sign-in share a family.

    login          a new family with its first row
    refresh        the presented row is retired (`revoked_at`, `replaced_by` = the new row)
                   and a new row joins the family: refresh tokens are single-use
    reuse          a retired row presented again means two parties hold the family's
                   tokens: every row of the family is revoked, both are signed out
    logout         every live row of the family is revoked

Row ids are time-ordered UUIDs (version 7: milliseconds first, then 74 random bits), and
the stored refresh-token keys are time-ordered too (tokens.py): a rotation then adds both
of its index entries at the end of their indexes, not at random leaves, which is fewer
pages written per commit and checkpoint. Family ids stay random (version 4).

A family is live while one of its rows is not revoked; access tokens name the family
(`sid`), so they stay valid across refreshes and die with their family. Revocations are
returned as outcomes rather than raised, so that they commit: an exception inside a
`Database.write` would roll the revocation back with it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from os import urandom

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
# The common case of a refresh in one statement: retire the presented row if it is live
# and unexpired, and learn its family. Anything else is sorted out by reading the row.
_ROTATE = (
    f"UPDATE {SESSIONS_TABLE} SET revoked_at = ?, replaced_by = ? "
    "WHERE refresh_token_hash = ? AND revoked_at IS NULL AND expires_at > ? RETURNING user_id, family_id"
)
_REVOKE_FAMILY = f"UPDATE {SESSIONS_TABLE} SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL"
_LIVE_ROW = f"SELECT id, user_id FROM {SESSIONS_TABLE} WHERE family_id = ? AND revoked_at IS NULL LIMIT 1"


def _time_ordered_id() -> str:
    """A time-ordered row id: a version-7 UUID (48 bits of milliseconds, then random bits)."""
    h = f"{time.time_ns() // 1_000_000:012x}{urandom(10).hex()}"
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = dict(zip("0123456789abcdef", "89ab" * 4, strict=True))


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
    row_id = _time_ordered_id()
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
    """Retire the row of `token_hash` and open its successor; see the module docstring.

    Two statements when the token is live (the retiring UPDATE and the successor's INSERT);
    a token that cannot rotate is read to tell the caller why.
    """
    successor = _time_ordered_id()
    retired = conn.execute(_ROTATE, (now, successor, token_hash, now)).fetchall()
    if retired:
        ((user_id, family),) = retired
        conn.execute(_INSERT, (successor, user_id, family, new_hash, expires_at, user_agent, ip, now))
        return RefreshOutcome(Refresh.ROTATED, SessionRow(successor, user_id, family, expires_at), user_id)
    row = conn.execute(_BY_HASH, (token_hash,)).fetchone()
    if row is None:
        return RefreshOutcome(Refresh.UNKNOWN)
    _row_id, user_id, family, _expires, revoked_at, replaced_by = row
    if revoked_at is None:
        return RefreshOutcome(Refresh.EXPIRED, user_id=user_id)
    if replaced_by is None:
        return RefreshOutcome(Refresh.REVOKED, user_id=user_id)
    conn.execute(_REVOKE_FAMILY, (now, family))
    return RefreshOutcome(Refresh.REUSED, user_id=user_id)


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
