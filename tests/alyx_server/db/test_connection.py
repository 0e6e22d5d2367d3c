"""Every connection gets WAL, foreign keys, a busy timeout and the configured synchronous."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alyx_server.db.connection import open_connection


@pytest.mark.parametrize(("synchronous", "level"), [("normal", 1), ("full", 2)])
def test_pragmas_applied(tmp_path: Path, synchronous: str, level: int) -> None:
    conn = open_connection(tmp_path / "a.db", synchronous=synchronous)  # type: ignore[arg-type]
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
        assert conn.isolation_level is None
    finally:
        conn.close()


def test_readonly_connection_refuses_writes(tmp_path: Path) -> None:
    writer = open_connection(tmp_path / "a.db")
    writer.execute("CREATE TABLE t (x)")
    reader = open_connection(tmp_path / "a.db", readonly=True)
    try:
        assert reader.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("INSERT INTO t VALUES (1)")
    finally:
        reader.close()
        writer.close()


def test_unknown_synchronous_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous must be 'normal' or 'full', not 'off'"):
        open_connection(tmp_path / "a.db", synchronous="off")  # type: ignore[arg-type]
