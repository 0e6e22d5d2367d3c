"""A deploy's schema swap in two steps (api/admin_live.py): `stage_schema` compiles and
diffs the new schema before the schema gate closes, `swap_staged_schema` swaps references
once the migrations are committed. The application runs on a real port, its database is
a real SQLite file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from alyx_server.api.admin_live import reload_schema, stage_schema, swap_staged_schema
from alyx_server.api.runtime import RUNTIME
from alyx_server.app import create_app
from alyx_server.config import default_settings
from alyx_server.migrations import apply_migrations
from alyx_server.schema.loader import parse_schema

SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  tags:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      label: { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""
# notes gains a field, and its create rule now wants a title that is not "no".
NEXT = SCHEMA.replace(
    "      title: { type: string }\n",
    "      title: { type: string }\n      stars: { type: int, nullable: true }\n",
    1,
).replace('rules: { create: "true"', "rules: { create: \"request.body.title != 'no'\"", 1)

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    settings = default_settings(root, "dev", overrides={"auth.bcrypt_cost": 4})
    return await aiohttp_client(create_app(settings))


async def commit_migrations(client: Client, text: str) -> None:
    """What a deploy's commit does before the swap: the database takes the new schema."""
    rt = client.server.app[RUNTIME]
    folder = rt.settings.project_dir / "migrations"
    await rt.ready_db().run_exclusive(lambda conn: apply_migrations(conn, parse_schema(text), folder))


async def test_a_staged_schema_serves_its_fields_and_rules_once_swapped(client: Client) -> None:
    app = client.server.app
    staged = await asyncio.to_thread(stage_schema, app[RUNTIME].catalog.schema, parse_schema(NEXT))
    assert staged.touched == ("notes",)
    # Staged only: the old schema and rules still serve.
    assert (await client.post("/api/collections/notes", json={"title": "no"})).status == 201
    await commit_migrations(client, NEXT)

    swapped = await swap_staged_schema(app, staged)

    assert swapped.refused is None and swapped.collections == ("notes",)
    created = await client.post("/api/collections/notes", json={"title": "yes", "stars": 3})
    assert created.status == 201, await created.text()
    assert (await created.json())["stars"] == 3
    refused = await client.post("/api/collections/notes", json={"title": "no"})
    assert refused.status == 403, await refused.text()
    assert (await client.post("/api/collections/tags", json={"label": "x"})).status == 201


async def test_a_schema_staged_against_one_that_no_longer_serves_is_diffed_again(client: Client) -> None:
    app = client.server.app
    staged = await asyncio.to_thread(stage_schema, app[RUNTIME].catalog.schema, parse_schema(NEXT))
    # Meanwhile the same change was applied another way (alyx dev's reload).
    assert (await reload_schema(app, parse_schema(NEXT))).refused is None

    swapped = await swap_staged_schema(app, staged)

    assert swapped.collections == ()
    assert app[RUNTIME].catalog.schema is staged.schema
