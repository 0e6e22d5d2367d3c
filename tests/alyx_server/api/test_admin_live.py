"""Live reloads on a running application: schema, realtime subscriptions and settings.

The application runs on a real port; realtime clients hold real WebSockets while the
schema changes under them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from alyx_server.api.admin_live import changed_collections, reload_schema, reload_settings
from alyx_server.api.runtime import RUNTIME
from alyx_server.app import create_app
from alyx_server.config import default_settings
from alyx_server.errors import RuleError, SchemaError
from alyx_server.schema.loader import load_schema

SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
      n:     { type: int, default: 0 }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  tags:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      label: { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""
WITH_STARS = SCHEMA.replace(
    "      n:     { type: int, default: 0 }\n",
    "      n:     { type: int, default: 0 }\n      stars: { type: int, nullable: true }\n",
)
WAIT = 10.0

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    settings = default_settings(
        root, "dev", overrides={"auth.bcrypt_cost": 4, "realtime.poll_interval": "50ms"}
    )
    return await aiohttp_client(create_app(settings))


def schema_file(client: Client) -> Path:
    return Path(client.server.app[RUNTIME].settings.project_dir) / "schema.yaml"


async def edit_schema(client: Client, text: str) -> Any:
    path = schema_file(client)
    path.write_text(text, encoding="utf-8")
    return await reload_schema(client.server.app, load_schema(path))


async def receive(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            message: dict[str, Any] = await ws.receive_json()
            if message["type"] == kind:
                return message


async def test_a_new_field_is_accepted_and_subscriptions_get_a_fresh_snapshot(client: Client) -> None:
    await client.post("/api/collections/notes", json={"title": "old"})
    async with client.ws_connect("/api/realtime") as live:
        await live.send_json({"id": "s", "type": "subscribe", "payload": {"collection": "notes"}})
        first = await receive(live, "snapshot")
        assert "stars" not in first["payload"]["docs"][0]

        result = await edit_schema(client, WITH_STARS)
        assert result.refused is None
        assert result.changes == ("+ notes.stars",)
        assert result.collections == ("notes",)

        again = await receive(live, "snapshot")
        assert again["id"] == "s" and again["payload"]["docs"][0]["stars"] is None
        response = await client.post("/api/collections/notes", json={"title": "new", "stars": 5})
        assert response.status == 201 and (await response.json())["stars"] == 5
        delta = await receive(live, "delta")
        assert delta["payload"]["changes"]["inserts"][0]["stars"] == 5

    spec = await (await client.get("/api/openapi.json")).json()
    assert "stars" in spec["components"]["schemas"]["NotesCreate"]["properties"]


async def test_a_destructive_change_is_refused_and_the_old_schema_keeps_serving(client: Client) -> None:
    without_n = SCHEMA.replace("      n:     { type: int, default: 0 }\n", "")
    result = await edit_schema(client, without_n)
    assert result.refused is not None
    assert result.refused.startswith("schema.yaml has destructive changes: - notes.n")
    assert "alyx migrate create drop_n" in result.refused
    response = await client.post("/api/collections/notes", json={"title": "x", "n": 3})
    assert response.status == 201 and (await response.json())["n"] == 3


async def test_a_subscription_on_a_dropped_field_gets_an_error_and_is_dropped(client: Client) -> None:
    migrations = schema_file(client).parent / "migrations"
    migrations.mkdir()
    (migrations / "001_drop_n.yaml").write_text(
        "version: 1\nname: drop_n\noperations:\n  - drop_field: { collection: notes, field: n }\n",
        encoding="utf-8",
    )
    async with client.ws_connect("/api/realtime") as live:
        await live.send_json(
            {"id": "by-n", "type": "subscribe", "payload": {"collection": "notes", "filter": {"n": 0}}}
        )
        await receive(live, "snapshot")
        await live.send_json({"id": "tags", "type": "subscribe", "payload": {"collection": "tags"}})
        await receive(live, "snapshot")

        result = await edit_schema(client, SCHEMA.replace("      n:     { type: int, default: 0 }\n", ""))
        assert result.refused is None and result.migrations == ("001_drop_n",)
        assert result.dropped_subscriptions == 1
        error = await receive(live, "error")
        assert error["id"] == "by-n" and error["payload"]["code"] == "INVALID_FILTER"
        assert "unknown field 'n'" in error["payload"]["message"]
        await live.send_json({"id": "p", "type": "ping"})
        assert (await receive(live, "pong"))["id"] == "p"


async def test_a_bad_rule_raises_before_anything_changes(client: Client) -> None:
    path = schema_file(client)
    path.write_text(WITH_STARS.replace('read: "true"', 'read: "doc.nope == 1"', 1), encoding="utf-8")
    with pytest.raises(RuleError, match="the read rule of notes does not compile"):
        await reload_schema(client.server.app, load_schema(path))
    path.write_text("version: 1\ncollections:\n  notes: [", encoding="utf-8")
    with pytest.raises(SchemaError):
        load_schema(path)
    response = await client.post("/api/collections/notes", json={"title": "x", "stars": 1})
    assert response.status == 400


async def test_live_settings_apply_and_restart_keys_are_named(client: Client) -> None:
    app = client.server.app
    old = app[RUNTIME].settings
    new = default_settings(
        old.project_dir,
        "dev",
        overrides={
            "auth.bcrypt_cost": 4,
            "realtime.poll_interval": "50ms",
            "auth.rate_limit.register": "1/hour",
            "server.cors.allowed_origins": ["https://app.example"],
            "server.port": 9999,
        },
    )
    result = await reload_settings(app, new)
    assert result.applied == ("server.cors.allowed_origins", "auth.rate_limit.register")
    assert result.restart == ("server.port",)
    assert app[RUNTIME].settings.server.port == old.server.port
    body = {"email": "a@example.com", "password": "correct horse battery"}
    assert (await client.post("/api/auth/register", json=body)).status == 201
    refused = await client.post("/api/auth/register", json={**body, "email": "b@example.com"})
    assert refused.status == 429
    response = await client.get("/health", headers={"Origin": "https://app.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_changed_collections_names_added_removed_and_altered(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SCHEMA, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        WITH_STARS.replace("  tags:", "  labels:").replace(
            "label: { type: string }", "name: { type: string }"
        ),
        encoding="utf-8",
    )
    old, new = load_schema(tmp_path / "a.yaml"), load_schema(tmp_path / "b.yaml")
    assert changed_collections(old, new) == ("labels", "notes", "tags")
    assert changed_collections(old, old) == ()
