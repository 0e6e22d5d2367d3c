"""The per-process cache of accounts and session families behind access tokens.

A request with a token needs its account (role, flags, metadata) and to know that its
session family is still live. Both are point reads, kept here after the first one, so
the common request costs no query at all. Entries are dropped when the change feed
reports their row changed: `_alyx_users` and `_alyx_sessions` carry change triggers, so
writes from this process (published before the write is acknowledged) and from others
both invalidate. A session change names its family (migrations/system.py, step 13) and
is logged only when the family may have died or changed hands (a logout, a reuse caught,
a revocation, a live row deleted): a refresh rotates a family's rows without ending it,
logs nothing, and leaves every process's entry for the family as it was.

Other processes on the same file (workers, a second server, the CLI) announce their
commits (db/notify.py), and every look-up first calls `Database.catch_up`: one read of
the shared commit counter (about 0.2 µs) when nothing was committed elsewhere, else the
change log is read and its events delivered before the look-up. So a logout answered by
one worker is refused by every other on the very next request, and a refresh-token reuse
caught by one revokes the family everywhere, with no window for a stale entry. Writers
outside Alyx (a sqlite3 shell) are found by the change poller, within its interval.

Loads use `Database.read_now` on the event-loop thread, the same thread that delivers
change events, so no event can slip between a read and the moment its result is cached.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from alyx_server.auth.context import AuthContext, user_principal
from alyx_server.auth.sessions import FamilyState, family_state
from alyx_server.auth.users import UserRecord, user_by_id
from alyx_server.db import ChangeEvent, Database
from alyx_server.schema.system_tables import SESSIONS_TABLE, USERS_TABLE

__all__ = ["AuthCache"]

T = TypeVar("T")

MAX_ENTRIES = 100_000
"""Per map; past it the map is emptied (a cheap bound: it refills from the database)."""


class AuthCache:
    """Accounts and families by id, for one database; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._users: dict[str, UserRecord | None] = {}
        self._contexts: dict[str, dict[str, AuthContext]] = {}
        self._families: dict[str, FamilyState] = {}
        self.loads = 0
        self._unsubscribe: Callable[[], None] = db.feed.subscribe(self._on_change)

    def close(self) -> None:
        self._unsubscribe()
        self.clear()

    def clear(self) -> None:
        self._users.clear()
        self._contexts.clear()
        self._families.clear()

    def _on_change(self, event: ChangeEvent) -> None:
        if event.collection == USERS_TABLE:
            self._users.pop(event.doc_id, None)
            self._contexts.pop(event.doc_id, None)
        elif event.collection == SESSIONS_TABLE:
            self._families.pop(event.doc_id, None)

    def user(self, user_id: str) -> UserRecord | None:
        """The account (None when deleted), from the cache or one point read."""
        self.db.catch_up()
        try:
            return self._users[user_id]
        except KeyError:
            pass
        found = self._load(lambda conn: user_by_id(conn, user_id))
        if len(self._users) >= MAX_ENTRIES:
            self._users.clear()
            self._contexts.clear()
        self._users[user_id] = found
        return found

    def family(self, family_id: str) -> FamilyState:
        """Whether a session family is live, from the cache or one point read."""
        self.db.catch_up()
        try:
            return self._families[family_id]
        except KeyError:
            pass
        state = self._load(lambda conn: family_state(conn, family_id))
        if len(self._families) >= MAX_ENTRIES:
            self._families.clear()
        self._families[family_id] = state
        return state

    def context(self, user: UserRecord, family_id: str) -> AuthContext:
        """The AuthContext of an account in a session, built once per account and family."""
        by_family = self._contexts.get(user.id)
        if by_family is None:
            if len(self._contexts) >= MAX_ENTRIES:
                self._contexts.clear()
            by_family = self._contexts[user.id] = {}
        found = by_family.get(family_id)
        if found is None or found.user is not user:
            found = by_family[family_id] = user_principal(user, family_id)
        return found

    def _load(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self.loads += 1
        return self.db.read_now(fn)
