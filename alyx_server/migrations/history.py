"""The `_alyx_migrations` history: one row per apply, each holding the full schema snapshot.

A row is written in the same transaction as the change it records. `kind` is `file` for a
migration file (with its version and the sha256 of its bytes) or `auto` for the safe
changes applied straight from schema.yaml (no version; the checksum of the snapshot).
`down` holds the operations that undo a file, computed when it was applied, so a file that
was edited or deleted later can still be rolled back. The latest row's snapshot is what
the differ compares schema.yaml with.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from alyx_server.errors import MigrationError
from alyx_server.migrations.files import MigrationFile
from alyx_server.schema.model import Schema
from alyx_server.schema.system_tables import HISTORY_TABLE

__all__ = [
    "HistoryRow",
    "Irreversible",
    "delete_row",
    "edited_message",
    "expect_head",
    "find_edited",
    "head_id",
    "latest_snapshot",
    "read_history",
    "record",
]

Kind = Literal["auto", "file"]


@dataclass(frozen=True, slots=True)
class Irreversible:
    """A step of a file that has no down side (an `sql` operation without `down`)."""

    where: str


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: int
    version: int | None
    name: str
    kind: Kind
    checksum: str
    applied_at: str
    schema_json: str
    down: tuple[dict[str, Any] | Irreversible, ...]

    @property
    def snapshot(self) -> Schema:
        """The schema after this row, decoded when asked (see `_decode`)."""
        return _decode(self.schema_json)

    @property
    def label(self) -> str:
        """`003_drop_slug` for a file, `auto` for an automatic apply."""
        return f"{self.version:03d}_{self.name}" if self.version is not None else self.name


def _table_exists(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (HISTORY_TABLE,)
    ).fetchone()
    return row is not None


def _down(text: str) -> tuple[dict[str, Any] | Irreversible, ...]:
    items: list[dict[str, Any]] = json.loads(text)
    return tuple(
        Irreversible(str(item["irreversible"])) if "irreversible" in item else item for item in items
    )


@lru_cache(maxsize=16)
def _decode(text: str) -> Schema:
    """A stored snapshot as a Schema (immutable, so shared). Every deploy adds a row with a
    full snapshot, and most readers want only the newest: decoding each row's on every read
    made planning a deploy grow with the number of deploys before it (90 ms after 60)."""
    return Schema.from_dict(json.loads(text))


def read_history(conn: sqlite3.Connection) -> list[HistoryRow]:
    """Every history row, oldest first; empty when the database has no history yet."""
    if not _table_exists(conn):
        return []
    rows = conn.execute(
        f"SELECT id, version, name, kind, checksum, applied_at, schema, down FROM {HISTORY_TABLE} ORDER BY id"
    ).fetchall()
    return [
        HistoryRow(
            id=int(row[0]),
            version=None if row[1] is None else int(row[1]),
            name=str(row[2]),
            kind="file" if row[3] == "file" else "auto",
            checksum=str(row[4]),
            applied_at=str(row[5]),
            schema_json=str(row[6]),
            down=_down(row[7]),
        )
        for row in rows
    ]


def history_keys(conn: sqlite3.Connection) -> list[tuple[int, int | None, str]]:
    """(id, version, checksum) of every history row, oldest first: what identifies the
    history, read without its schema snapshots (a deploy checks it under the write lock)."""
    if not _table_exists(conn):
        return []
    rows = conn.execute(f"SELECT id, version, checksum FROM {HISTORY_TABLE} ORDER BY id").fetchall()
    return [(int(r[0]), None if r[1] is None else int(r[1]), str(r[2])) for r in rows]


def head_id(conn: sqlite3.Connection) -> int:
    """Id of the newest history row (0 for none): a cheap check that nobody else migrated."""
    if not _table_exists(conn):
        return 0
    return int(conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {HISTORY_TABLE}").fetchone()[0])


def expect_head(conn: sqlite3.Connection, expected: int) -> None:
    """Refuse to go on when another process wrote history since this one read it."""
    if head_id(conn) != expected:
        raise MigrationError(
            "another process changed the migration history while this one was working; run the command again"
        )


def latest_snapshot(history: Sequence[HistoryRow]) -> Schema:
    """The schema the stored tables have: the newest row's snapshot, or an empty schema."""
    return history[-1].snapshot if history else Schema()


def record(
    conn: sqlite3.Connection,
    *,
    kind: Kind,
    name: str,
    checksum: str,
    snapshot: Schema,
    version: int | None = None,
    down: Sequence[dict[str, Any] | Irreversible] = (),
) -> int:
    """Insert a history row (inside the caller's transaction); returns its id."""
    items = [{"irreversible": d.where} if isinstance(d, Irreversible) else d for d in down]
    cursor = conn.execute(
        f"INSERT INTO {HISTORY_TABLE} (version, name, kind, checksum, schema, down) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            version,
            name,
            kind,
            checksum,
            json.dumps(snapshot.to_dict(), sort_keys=True, separators=(",", ":")),
            json.dumps(items, separators=(",", ":")),
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def delete_row(conn: sqlite3.Connection, row_id: int) -> None:
    conn.execute(f"DELETE FROM {HISTORY_TABLE} WHERE id = ?", (row_id,))


def find_edited(
    history: Sequence[HistoryRow], files: Sequence[MigrationFile]
) -> list[tuple[HistoryRow, MigrationFile]]:
    """Applied files whose bytes changed since they were applied."""
    by_version = {f.version: f for f in files}
    out = []
    for row in history:
        if row.kind != "file" or row.version is None:
            continue
        current = by_version.get(row.version)
        if current is not None and current.checksum != row.checksum:
            out.append((row, current))
    return out


def edited_message(row: HistoryRow, current: MigrationFile) -> str:
    return (
        f"{current.label} was edited after it was applied on {row.applied_at} "
        f"(checksum {row.checksum[:12]}, now {current.checksum[:12]}): restore it as it was "
        "applied (e.g. `git checkout` it) and write a new migration for further changes"
    )
