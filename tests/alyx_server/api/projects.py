"""Projects on disk for the API tests: schema, settings and a table checksum.

Every collection carries explicit `"true"` rules, so these tests keep their meaning once
CEL rules are enforced. `posts.created_at` is `clientWritable`, so tests can send any
timestamp value through it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alyx_server.config import Mode, Settings, default_settings

__all__ = ["SCHEMA_YAML", "make_settings", "table_checksum", "write_project"]

SCHEMA_YAML = """\
version: 1
collections:
  authors:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      name:  { type: string, minLength: 1, maxLength: 50 }
      email: { type: string, unique: true, nullable: true, format: email }
      owner: { type: uuid, references: _alyx_users.id, nullable: true }
      token: { type: string, nullable: true, internal: true }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  posts:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      title:      { type: string, minLength: 1, maxLength: 200 }
      author_id:  { type: uuid, references: authors.id, nullable: true, onDelete: restrict, index: true }
      n:          { type: int, default: 0 }
      score:      { type: float, nullable: true }
      published:  { type: bool, default: false }
      tags:       { type: json, nullable: true }
      created_at: { type: timestamp, default: now, clientWritable: true }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  counters:
    fields:
      id:    { type: int, primary: true, default: auto }
      label: { type: string, nullable: true }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""


def write_project(root: Path, schema: str = SCHEMA_YAML) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(schema, encoding="utf-8")
    return root


def make_settings(root: Path, mode: Mode = "dev", **overrides: object) -> Settings:
    values: dict[str, object] = {"realtime.poll_interval": "50ms", **overrides}
    if mode == "serve":
        values.setdefault("auth.jwt.secret", "s" * 40)
    return default_settings(root, mode, overrides=values)


def table_checksum(db_file: Path) -> list[tuple[Any, ...]]:
    """Every row of every collection table, for before/after comparisons."""
    conn = sqlite3.connect(db_file)
    try:
        rows: list[tuple[Any, ...]] = []
        tables = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' "
            "AND name NOT LIKE 'sqlite%' ORDER BY name"
        ).fetchall()
        for (name,) in tables:
            rows.extend((name, *r) for r in conn.execute(f'SELECT * FROM "{name}" ORDER BY 1'))
        return rows
    finally:
        conn.close()
