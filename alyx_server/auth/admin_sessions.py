"""The admin UI's sign-in sessions and one-time sign-in links (`_alyx_admin_sessions`).

A session is a random secret the browser holds in a cookie; the table stores its SHA-256
only, so a copy of the database signs nobody in. A session ends at the first of:
sign-out (`revoked_at`), its absolute expiry (`expires_at`, set when it opens), or
`idle` seconds without a request (`last_seen_at`, moved forward at most every
`touch_every(idle)` seconds so that browsing costs a write a minute, not one per page).
Every lookup joins the account: a session is honoured only while its account is an
enabled admin, so a demotion or a disabled account signs the browser out at once, in
every process serving the database.

A sign-in link (kind `link`) is a single-use secret with a short life that `alyx dev`
prints; redeeming it marks it used in the same write that opens the session.

`csrf_token(secret, purpose)` derives the CSRF token of a session (or of the sign-in
form) from the cookie's secret with HMAC-SHA256: the token is tied to the session,
needs no storage, and cannot be computed from the stored hash.

Nothing here knows about HTTP: alyx_server/admin_ui turns requests into these calls.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from dataclasses import dataclass
from typing import Literal

from alyx_server.auth.tokens import hash_secret
from alyx_server.auth.users import UserRecord, user_by_id
from alyx_server.schema.system_tables import ADMIN_SESSIONS_TABLE, USERS_TABLE
from alyx_server.tools.ids import new_id

__all__ = [
    "AdminSession",
    "Ended",
    "close_admin_session",
    "csrf_matches",
    "csrf_token",
    "find_admin_session",
    "first_admin",
    "issue_sign_in_link",
    "open_admin_session",
    "redeem_sign_in_link",
    "revoke_admin_sessions",
    "touch_admin_session",
    "touch_every",
]

Ended = Literal["unknown", "signed_out", "expired", "idle", "not_admin"]
"""Why a presented session secret does not sign anyone in."""


@dataclass(frozen=True, slots=True)
class AdminSession:
    """A live session and the admin account it belongs to."""

    id: str
    user: UserRecord
    last_seen_at: str
    expires_at: str


def touch_every(idle: float) -> float:
    """Seconds between two updates of `last_seen_at`: a minute, less for short idle limits."""
    return min(60.0, idle / 4)


def csrf_token(secret: str, purpose: str = "session") -> str:
    """The CSRF token of a session (or of the sign-in form's pre-session cookie)."""
    return hmac.new(secret.encode(), f"alyx-admin-csrf:{purpose}".encode(), hashlib.sha256).hexdigest()


def csrf_matches(secret: str, presented: str, purpose: str = "session") -> bool:
    """Whether `presented` is the CSRF token of `secret` (constant-time comparison)."""
    return presented.isascii() and hmac.compare_digest(csrf_token(secret, purpose), presented)


_INSERT = (
    f"INSERT INTO {ADMIN_SESSIONS_TABLE} "
    "(id, kind, user_id, token_hash, created_at, last_seen_at, expires_at, ip, user_agent) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_FIND = (
    f"SELECT s.id, s.user_id, s.last_seen_at, s.expires_at, s.revoked_at, u.role, u.disabled "
    f"FROM {ADMIN_SESSIONS_TABLE} s JOIN {USERS_TABLE} u ON u.id = s.user_id "
    "WHERE s.token_hash = ? AND s.kind = ?"
)
# Rows that cannot sign anyone in again: deleted when a new session or link is stored.
_PRUNE = f"DELETE FROM {ADMIN_SESSIONS_TABLE} WHERE expires_at <= ? OR revoked_at IS NOT NULL"


def open_admin_session(
    conn: sqlite3.Connection,
    *,
    user_id: str,
    secret: str,
    now: str,
    expires_at: str,
    ip: str | None,
    user_agent: str | None,
) -> str:
    """Store a new session for `secret` (its hash); returns the session id."""
    conn.execute(_PRUNE, (now,))
    session_id = new_id()
    conn.execute(
        _INSERT, (session_id, "session", user_id, hash_secret(secret), now, now, expires_at, ip, user_agent)
    )
    return session_id


def find_admin_session(
    conn: sqlite3.Connection, secret: str, *, now: str, idle_since: str
) -> AdminSession | Ended:
    """The live session of `secret`, or why there is none. `idle_since`: the time before
    which a `last_seen_at` means the session idled out."""
    row = conn.execute(_FIND, (hash_secret(secret), "session")).fetchone()
    if row is None:
        return "unknown"
    session_id, user_id, last_seen, expires_at, revoked_at, role, disabled = row
    if revoked_at is not None:
        return "signed_out"
    if expires_at <= now:
        return "expired"
    if last_seen <= idle_since:
        return "idle"
    if role != "admin" or disabled:
        return "not_admin"
    user = user_by_id(conn, user_id)
    if user is None:
        return "unknown"
    return AdminSession(str(session_id), user, str(last_seen), str(expires_at))


def touch_admin_session(conn: sqlite3.Connection, session_id: str, now: str) -> None:
    """Record a request now (the idle limit counts from here)."""
    conn.execute(
        f"UPDATE {ADMIN_SESSIONS_TABLE} SET last_seen_at = ? WHERE id = ? AND revoked_at IS NULL",
        (now, session_id),
    )


def close_admin_session(conn: sqlite3.Connection, secret: str, now: str) -> bool:
    """Sign out the session of `secret`; False when there was no live one."""
    cursor = conn.execute(
        f"UPDATE {ADMIN_SESSIONS_TABLE} SET revoked_at = ? "
        "WHERE token_hash = ? AND kind = 'session' AND revoked_at IS NULL",
        (now, hash_secret(secret)),
    )
    return cursor.rowcount > 0


def revoke_admin_sessions(conn: sqlite3.Connection, user_id: str, now: str) -> int:
    """Sign out every admin UI session (and unused link) of an account; how many ended."""
    cursor = conn.execute(
        f"UPDATE {ADMIN_SESSIONS_TABLE} SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        (now, user_id),
    )
    return cursor.rowcount


def issue_sign_in_link(
    conn: sqlite3.Connection, *, user_id: str, secret: str, now: str, expires_at: str
) -> None:
    """Store a single-use sign-in link for an admin account."""
    conn.execute(_PRUNE, (now,))
    conn.execute(_INSERT, (new_id(), "link", user_id, hash_secret(secret), now, now, expires_at, None, None))


def redeem_sign_in_link(conn: sqlite3.Connection, secret: str, now: str) -> str | Ended:
    """Use up a sign-in link: the id of its (still admin) account, or why it does not work.
    Call it inside the write that opens the session, so both commit or neither does."""
    row = conn.execute(_FIND, (hash_secret(secret), "link")).fetchone()
    if row is None:
        return "unknown"
    link_id, user_id, _seen, expires_at, revoked_at, role, disabled = row
    if revoked_at is not None:
        return "signed_out"
    if expires_at <= now:
        return "expired"
    if role != "admin" or disabled:
        return "not_admin"
    conn.execute(f"UPDATE {ADMIN_SESSIONS_TABLE} SET revoked_at = ? WHERE id = ?", (now, link_id))
    return str(user_id)


def first_admin(conn: sqlite3.Connection) -> UserRecord | None:
    """The oldest enabled admin account (whom `alyx dev`'s sign-in link signs in), if any."""
    row = conn.execute(
        f"SELECT id FROM {USERS_TABLE} WHERE role = 'admin' AND disabled = 0 ORDER BY created_at, id LIMIT 1"
    ).fetchone()
    return None if row is None else user_by_id(conn, str(row[0]))
