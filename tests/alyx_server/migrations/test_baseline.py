"""A fresh database (a new clone, `db reset`) is built from schema.yaml, files recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alyx_server.errors import MigrationError
from alyx_server.migrations import (
    apply_migrations,
    create_migration,
    migration_status,
    read_history,
    rollback_migrations,
)
from alyx_server.schema.loader import parse_schema

BEFORE = """\
version: 1
collections:
  posts:
    fields:
      id: { type: uuid, primary: true, default: auto }
      title: { type: string }
      slug: { type: string, nullable: true }
"""
AFTER = BEFORE.replace("      slug: { type: string, nullable: true }\n", "")


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def test_a_fresh_database_is_built_from_schema_yaml_and_records_existing_files(
    tmp_path: Path,
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    # The developer's database: old schema, then the destructive change with its file.
    dev = sqlite3.connect(tmp_path / "dev.db", isolation_level=None)
    apply_migrations(dev, parse_schema(BEFORE), migrations)
    path = create_migration(dev, parse_schema(AFTER), migrations, "drop_slug")
    apply_migrations(dev, parse_schema(AFTER), migrations)
    assert columns(dev, "posts") == ["id", "title"]

    # A fresh clone: no history, the file already there.
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    rows = migration_status(fresh, parse_schema(AFTER), migrations)
    assert [(r.state, r.name) for r in rows if r.state == "pending"] == [("pending", path.stem)]
    result = apply_migrations(fresh, parse_schema(AFTER), migrations)
    assert result.files == (f"{path.stem} (baseline)",)
    assert columns(fresh, "posts") == ["id", "title"]
    history = read_history(fresh)
    assert [(h.kind, h.version) for h in history] == [("auto", None), ("file", 1)]
    # Up to date afterwards, and later changes build on it as usual.
    assert not apply_migrations(fresh, parse_schema(AFTER), migrations).changed
    with pytest.raises(MigrationError, match="cannot be rolled back: it was recorded as the baseline"):
        rollback_migrations(fresh, migrations, 1)
    assert columns(fresh, "posts") == ["id", "title"]


def test_the_destructive_change_message_is_one_line(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    apply_migrations(conn, parse_schema(BEFORE), tmp_path)
    with pytest.raises(MigrationError) as caught:
        apply_migrations(conn, parse_schema(AFTER), tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "- posts.slug" in message
    assert "alyx migrate create drop_slug" in message
