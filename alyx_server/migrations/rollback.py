"""`alyx migrate rollback [n]`: undo the newest history rows, one transaction each.

A file row is undone by the `down` operations stored when it was applied (inverse
operations in reverse order, `sql` by its `down`), then the tables are brought exactly
to the previous snapshot (e.g. an index that went away with a dropped field). An
automatic row is undone by turning its snapshot back into the previous one, which drops
what that step added, data included. Rows are deleted with the change they undo.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from alyx_server.errors import MigrationError
from alyx_server.migrations.execute import run_operation, transition_to
from alyx_server.migrations.history import (
    HistoryRow,
    Irreversible,
    delete_row,
    expect_head,
    read_history,
)
from alyx_server.migrations.operations import OperationRefused
from alyx_server.migrations.syntax import from_yaml
from alyx_server.migrations.transactions import write_transaction
from alyx_server.schema.model import Schema

__all__ = ["rollback_atomically", "rollback_migrations"]


def _undo(conn: sqlite3.Connection, row: HistoryRow, previous: Schema) -> None:
    snapshot = row.snapshot
    for item in row.down:
        assert not isinstance(item, Irreversible)
        snapshot = run_operation(conn, snapshot, from_yaml(item))
    transition_to(conn, snapshot, previous)


def _irreversible(row: HistoryRow) -> str | None:
    for item in row.down:
        if isinstance(item, Irreversible):
            return f"{row.label} cannot be rolled back: {item.where}"
    return None


def _undo_plan(history: list[HistoryRow], count: int) -> list[tuple[HistoryRow, Schema]]:
    """The newest `count` rows of `history`, newest first, each with the schema before it.

    Refuses (MigrationError naming the row) a row without a down side, before any change.
    """
    start = len(history) - count
    plan = [
        (history[i], history[i - 1].snapshot if i else Schema()) for i in reversed(range(start, len(history)))
    ]
    for row, _previous in plan:
        problem = _irreversible(row)
        if problem:
            raise MigrationError(problem)
    return plan


def rollback_migrations(
    conn: sqlite3.Connection, migrations_dir: Path | None = None, n: int = 1
) -> list[str]:
    """Undo the newest `n` applies, newest first; returns their labels (`003_drop_slug`, `auto`).

    The down side comes from the history, so `migrations_dir` is not read: a file edited or
    deleted since it was applied rolls back as it was applied. Everything that cannot be
    rolled back is refused before the first row is touched.
    """
    del migrations_dir  # kept for the shape shared by every migrate command
    if n < 1:
        raise MigrationError(f"the number of migrations to roll back must be 1 or more, not {n}")
    history = read_history(conn)
    if len(history) < n:
        raise MigrationError(f"cannot roll back {n}: only {len(history)} migrations are applied")
    done: list[str] = []
    for row, previous in _undo_plan(history, n):
        with write_transaction(conn):
            expect_head(conn, row.id)
            try:
                _undo(conn, row, previous)
            except (MigrationError, OperationRefused, sqlite3.Error) as e:
                message = f"rolling back {row.label} failed: {e}; {row.label} is still applied"
                raise MigrationError(message) from e
            delete_row(conn, row.id)
        done.append(row.label)
    return done


def rollback_atomically(
    conn: sqlite3.Connection, head: int, *, before_commit: Callable[[sqlite3.Connection], None]
) -> list[str]:
    """Undo every history row above id `head`, newest first, in ONE transaction that
    `before_commit(conn)` joins last (`alyx deploy rollback`); all or nothing.

    Refuses (MigrationError naming the row) a row without a down side before any change.
    """
    history = read_history(conn)
    plan = _undo_plan(history, sum(1 for row in history if row.id > head))
    done: list[str] = []
    with write_transaction(conn):
        if history:
            expect_head(conn, history[-1].id)
        for row, previous in plan:
            try:
                _undo(conn, row, previous)
            except (MigrationError, OperationRefused, sqlite3.Error) as e:
                raise MigrationError(f"rolling back {row.label} failed: {e}; nothing was changed") from e
            delete_row(conn, row.id)
            done.append(row.label)
        before_commit(conn)
    return done
