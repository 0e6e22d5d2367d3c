"""The one way migrations write: an exclusive transaction with foreign keys off.

SQLite ignores `PRAGMA foreign_keys` inside a transaction, so it is switched off before
`BEGIN IMMEDIATE` and restored afterwards; table rebuilds need it off, and
`PRAGMA foreign_key_check` runs before `COMMIT` instead. `BEGIN IMMEDIATE` takes the write
lock at once, so two processes migrating the same file queue up rather than deadlock.

The connection is a plain `sqlite3.Connection` in autocommit mode (`isolation_level=None`),
so the same code runs from the CLI, from tests, and on the server's live writer thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from alyx_server.errors import MigrationError
from alyx_server.schema.transition import foreign_key_problems

__all__ = ["write_transaction"]


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block in `BEGIN IMMEDIATE` ... `COMMIT`, foreign keys off, checked at the end.

    Any exception rolls back everything the block did and propagates; a foreign key left
    dangling raises MigrationError and rolls back as well.
    """
    if conn.in_transaction:
        raise MigrationError(
            "a migration must start outside a transaction (it opens its own with BEGIN IMMEDIATE)"
        )
    foreign_keys = bool(conn.execute("PRAGMA foreign_keys").fetchone()[0])
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            if not conn.in_transaction:
                raise MigrationError("the migration ended its transaction early (COMMIT, ROLLBACK)")
            problems = foreign_key_problems(conn)
            if problems:
                raise MigrationError("foreign key check failed: " + "; ".join(problems))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
