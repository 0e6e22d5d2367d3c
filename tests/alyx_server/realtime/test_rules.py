"""Realtime under the CEL rules of schema.yaml (the application's default policy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from alyx_server.app import create_app
from tests.alyx_server.realtime.support import LiveClient, register, settings_for

Client = TestClient  # type: ignore[type-arg]

RULES_SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:      { type: uuid, primary: true, default: auto }
      owner:   { type: string }
      text:    { type: string }
      n:       { type: int, default: 0 }
      private: { type: bool, default: false }
    rules:
      create: "auth != null && doc.owner == auth.id"
      read:   "!doc.private || (auth != null && doc.owner == auth.id)"
      update: "auth != null && doc.owner == auth.id"
      delete: "auth != null && doc.owner == auth.id"
  diaries:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      owner: { type: string }
      text:  { type: string }
    rules:
      create: "auth != null && doc.owner == auth.id"
      read:   "auth != null && doc.owner == auth.id"
  board:
    fields:
      id:   { type: uuid, primary: true, default: auto }
      text: { type: string }
    rules:
      create: "auth != null"
      read:   "auth != null && request.query.room == 'red'"
"""


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(RULES_SCHEMA, encoding="utf-8")
    return create_app(settings_for(root))


async def write(client: Client, token: str, method: str, path: str, body: Any = None) -> Any:
    resp = await client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert resp.status < 300, await resp.text()
    return await resp.json() if resp.status != 204 else None


async def test_read_rule_decides_every_delivery(client: Client) -> None:
    alice, a_token = await register(client, "alice@example.com")
    _bob, b_token = await register(client, "bob@example.com")
    a = await LiveClient.connect(client, f"/api/realtime?token={a_token}")
    b = await LiveClient.connect(client, f"/api/realtime?token={b_token}")
    anon = await LiveClient.connect(client)
    for live in (a, b, anon):
        assert (await live.subscribe({"collection": "notes", "sort": ["n"], "limit": 10}))[
            "type"
        ] == "snapshot"

    secret = await write(
        client, a_token, "POST", "/api/collections/notes", {"owner": alice, "text": "s", "private": True}
    )
    assert [m["payload"]["changes"] for m in await a.sync()] == [{"inserts": [secret]}]
    assert await b.sync() == [] and await anon.sync() == []

    shared = await write(
        client, a_token, "POST", "/api/collections/notes", {"owner": alice, "text": "p", "n": 1}
    )
    for live in (a, b, anon):
        assert [m["payload"]["changes"] for m in await live.sync()] == [{"inserts": [shared]}]

    hidden = await write(
        client, a_token, "PATCH", f"/api/collections/notes/{shared['id']}", {"private": True}
    )
    assert [m["payload"]["changes"] for m in await a.sync()] == [{"updates": [hidden]}]
    for live in (b, anon):
        got = await live.sync()
        assert [m["payload"]["changes"] for m in got] == [{"deletes": [shared["id"]]}]
        assert got[0]["payload"]["order"] == []


async def test_owner_only_collection_routes_by_the_rule_and_where_narrows(client: Client) -> None:
    alice, a_token = await register(client, "alice@example.com")
    bob, b_token = await register(client, "bob@example.com")
    a = await LiveClient.connect(client, f"/api/realtime?token={a_token}")
    b = await LiveClient.connect(client, f"/api/realtime?token={b_token}")
    await a.subscribe({"collection": "diaries"})
    await b.subscribe({"collection": "diaries", "where": "doc.text.startsWith('dear')"})
    anon = await LiveClient.connect(client)
    snap = await anon.subscribe({"collection": "diaries"})
    assert snap["payload"] == {"subscription_id": snap["payload"]["subscription_id"], "docs": [], "total": 0}

    mine = await write(
        client, a_token, "POST", "/api/collections/diaries", {"owner": alice, "text": "dear me"}
    )
    assert [m["payload"]["changes"] for m in await a.sync()] == [{"inserts": [mine]}]
    assert await b.sync() == [] and await anon.sync() == []
    await write(client, b_token, "POST", "/api/collections/diaries", {"owner": bob, "text": "hello"})
    assert await b.sync() == [] and await a.sync() == []
    dear = await write(
        client, b_token, "POST", "/api/collections/diaries", {"owner": bob, "text": "dear diary"}
    )
    assert [m["payload"]["changes"] for m in await b.sync()] == [{"inserts": [dear]}]


async def test_a_rule_that_reads_no_doc_is_decided_per_subscriber(client: Client) -> None:
    """`auth` and `request` alone decide: each subscriber gets every doc or none."""
    _alice, a_token = await register(client, "alice@example.com")
    red = await LiveClient.connect(client, f"/api/realtime?room=red&token={a_token}")
    blue = await LiveClient.connect(client, f"/api/realtime?room=blue&token={a_token}")
    anon_red = await LiveClient.connect(client, "/api/realtime?room=red")
    for live in (red, blue, anon_red):
        await live.subscribe({"collection": "board"})
    posted = await write(client, a_token, "POST", "/api/collections/board", {"text": "hello"})
    assert [m["payload"]["changes"] for m in await red.sync()] == [{"inserts": [posted]}]
    assert await blue.sync() == [] and await anon_red.sync() == []
