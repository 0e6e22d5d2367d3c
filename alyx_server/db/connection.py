"""Opening SQLite connections the way every part of Alyx expects them.

WAL lets readers run while the single writer commits; `foreign_keys` is off by default in
SQLite and must be switched on per connection; `busy_timeout` makes a connection wait
for another process's write lock instead of failing at once; `synchronous` is the
durability setting of `database.synchronous` (`normal`: a commit survives a crash of
the process, `full`: it also survives power loss). `isolation_level=None` hands
transaction control to Alyx: nothing begins implicitly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Literal

__all__ = ["BUSY_TIMEOUT_MS", "Connection", "Synchronous", "open_connection"]

Synchronous = Literal["normal", "full"]

BUSY_TIMEOUT_MS = 5000


class Connection(sqlite3.Connection):
    """A sqlite3 connection that also keeps the list totals it counted (documents.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (count SQL, parameters) -> (change-log high-water mark, total)
        self.totals: dict[tuple[str, tuple[Any, ...]], tuple[int, int]] = {}


def open_connection(
    path: str | Path,
    *,
    synchronous: Synchronous = "normal",
    readonly: bool = False,
) -> sqlite3.Connection:
    """Open `path` with WAL, foreign keys, a busy timeout and the given `synchronous`.

    A `readonly` connection is still opened read-write at the file level (WAL readers need
    the shared-memory file) but refuses writes with `PRAGMA query_only`. Connections may be
    handed between threads; each is used by one thread at a time.
    """
    if synchronous not in ("normal", "full"):
        raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
    conn = sqlite3.connect(
        str(path),
        factory=Connection,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal" and str(path) != ":memory:":
                raise sqlite3.OperationalError(f"could not switch {path} to WAL (got {mode})")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn
