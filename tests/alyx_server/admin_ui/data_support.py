"""The data browser tests' schema and helpers (support.py has the application and browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.alyx_server.admin_ui.support import UI, UiFactory, alyx

__all__ = ["DATA_SCHEMA", "admin_token", "data_ui"]

DATA_SCHEMA = """\
version: 1
collections:
  authors:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      name:       { type: string, minLength: 1 }
    rules:
      read: "true"
  posts:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      title:      { type: string, maxLength: 40 }
      body:       { type: text, nullable: true }
      views:      { type: int, default: 0, min: 0 }
      published:  { type: bool, default: false }
      tags:       { type: json, nullable: true }
      status:     { type: string, enum: [draft, live], default: draft }
      author_id:  { type: uuid, nullable: true, references: authors.id }
      secret:     { type: string, nullable: true, internal: true }
      created_at: { type: timestamp, default: now }
  items:
    fields:
      id:         { type: int, primary: true, default: auto }
      n:          { type: int, index: true }
      label:      { type: string, nullable: true }
"""


async def data_ui(make_ui: UiFactory, tmp_path: Path, **overrides: object) -> UI:
    """The application over DATA_SCHEMA, with its admin account."""
    project = tmp_path / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "schema.yaml").write_text(DATA_SCHEMA, encoding="utf-8")
    (project / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n", encoding="utf-8")
    return await make_ui(**overrides)


def admin_token(ui: UI) -> str:
    """A new admin token (every permission) made by `alyx admin create-token`."""
    out = alyx(ui.project, "admin", "create-token", "--name", "tests")
    for word in out.split():
        if word.startswith("alyx_"):
            return word
    raise AssertionError(f"no token in: {out}")


def rest_headers(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
