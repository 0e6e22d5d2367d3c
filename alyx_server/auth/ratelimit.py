"""Rate limits: at most `count` attempts per key in any window of `period` seconds.

A sliding log per key (the times of the recent attempts, at most `count` of them) gives
an exact answer to "how many in the last period" and an exact `Retry-After`: the moment
the oldest counted attempt leaves the window. Keys are client addresses or normalised
emails, prefixed by the caller. Time comes from an injected clock, so tests move it
instead of sleeping.

The logs live in the database (`_alyx_rate_limits`: one row per counted attempt, indexed
by limit, key and time), so every process serving it counts the same attempts: two
workers allow the rate, not twice it. One attempt is one `Database.write`: the check and the
new entry commit together in the writer's transaction, which one process at a time
holds, so two processes cannot both take the last slot; it joins the group commit of
the writes around it and never runs on the event loop. When any key is over its limit
the write raises and leaves nothing behind: refused attempts are not counted. Each
attempt deletes its keys' attempts that have left the window, so a key keeps at most
`count` rows; every `SWEEP_EVERY` attempts a process also deletes, in the same write,
those of the keys nobody tried since.

A login or registration pays one more small write before its password hash (which
stays the expensive part); docs/auth.md gives the figures.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable

from alyx_server.db import Database
from alyx_server.errors import RateLimited
from alyx_server.schema.system_tables import RATE_LIMITS_TABLE
from alyx_server.tools.rates import Rate, format_rate
from alyx_server.tools.timestamps import Clock

__all__ = ["SWEEP_EVERY", "RateLimiter", "count_attempt"]

SWEEP_EVERY = 4096
"""Attempts (in one process) between sweeps that forget keys whose whole log has left the window."""


class RateLimiter:
    """One limit (`rate`, None = off) over any number of keys, stored in the database.

    `name` tells this limit's rows apart from the others' (login, register, reset);
    `what` names it in messages; `database` gives the open database (called per attempt,
    so the limiter can be built before the database is open).
    """

    def __init__(
        self, rate: Rate | None, clock: Clock, what: str, *, name: str, database: Callable[[], Database]
    ) -> None:
        self.rate = rate
        self.name = name
        self._clock = clock
        self._what = what
        self._database = database
        self._since_sweep = 0

    async def hit(self, *keys: str) -> None:
        """Count one attempt against each key, or raise 429 RATE_LIMITED with the wait.

        When any key is over its limit nothing is counted, so refused attempts do not
        extend the wait.
        """
        rate = self.rate
        if rate is None:
            return
        now = self._clock.now().timestamp()
        self._since_sweep += 1
        sweep = self._since_sweep >= SWEEP_EVERY
        if sweep:
            self._since_sweep = 0
        name, what = self.name, self._what
        await self._database().write(
            lambda conn: count_attempt(conn, name, rate, now, keys, what, sweep=sweep)
        )


def count_attempt(
    conn: sqlite3.Connection,
    name: str,
    rate: Rate,
    now: float,
    keys: tuple[str, ...],
    what: str,
    *,
    sweep: bool = False,
) -> None:
    """Inside a write: record an attempt at `now` (Unix seconds) on every key of limit `name`.

    Raises RateLimited (the caller's savepoint then undoes everything) when a key already
    has `rate.count` attempts in the window ending at `now`. `sweep` also deletes the
    limit's attempts that have left the window, whatever their key.
    """
    start = now - rate.period_seconds
    wanted = list(dict.fromkeys(keys))
    wait = 0.0
    for key in wanted:
        conn.execute(_FORGET, (name, key, start))
        # The attempt whose leaving brings the key under its limit: the count-th newest.
        row = conn.execute(_NTH_NEWEST, (name, key, rate.count - 1)).fetchone()
        if row is not None:
            wait = max(wait, row[0] - start)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise RateLimited(
            f"too many {what} (limit {format_rate(rate)}); try again in {seconds} s",
            retry_after=seconds,
        )
    conn.executemany(_COUNT, [(name, key, now) for key in wanted])
    if sweep:
        conn.execute(f"DELETE FROM {RATE_LIMITS_TABLE} WHERE name = ? AND at <= ?", (name, start))


_FORGET = f"DELETE FROM {RATE_LIMITS_TABLE} WHERE name = ? AND key = ? AND at <= ?"
_NTH_NEWEST = (
    f"SELECT at FROM {RATE_LIMITS_TABLE} WHERE name = ? AND key = ? ORDER BY at DESC LIMIT 1 OFFSET ?"
)
_COUNT = f"INSERT INTO {RATE_LIMITS_TABLE} (name, key, at) VALUES (?, ?, ?)"
