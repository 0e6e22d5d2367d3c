"""The dashboard's admin API: `/api/admin/events` (WebSocket), `/api/admin/schema`, `/api/admin/stats`.

Refusals are tested from the attacker's side (anonymous, a signed-in user, a deploy
token, a token in the query string); the stream is read from a real WebSocket while
real requests, writes and realtime subscriptions happen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.app import create_app
from alyx_server.config import default_settings

SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
      n:     { type: int, default: 0 }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""
PASSWORD = "correct horse battery"
WAIT = 10.0  # a bound on waits, never an assertion about speed

Client = TestClient[Any, Any]


def alyx(project: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "-C", str(project)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    (root / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n", encoding="utf-8")
    settings = default_settings(
        root, "dev", overrides={"auth.bcrypt_cost": 4, "realtime.poll_interval": "50ms"}
    )
    return await aiohttp_client(create_app(settings))


def project_of(client: Client) -> Path:
    from alyx_server.api.runtime import RUNTIME

    return client.server.app[RUNTIME].settings.project_dir


async def user_token(client: Client) -> str:
    response = await client.post(
        "/api/auth/register", json={"email": "eve@example.com", "password": PASSWORD}
    )
    assert response.status == 201
    token: str = (await response.json())["tokens"]["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Stream:
    """An event WebSocket and every event read from it so far (events may come in any
    order relative to one another: a write's change is published before its response)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def find(self, kind: str, **match: Any) -> dict[str, Any]:
        """The first `kind` event whose payload has the `match` items, waiting for it."""
        checked = 0
        async with asyncio.timeout(WAIT):
            while True:
                for found_kind, payload in self.seen[checked:]:
                    if found_kind == kind and all(payload.get(k) == v for k, v in match.items()):
                        return payload
                checked = len(self.seen)
                message = await self.ws.receive_json()
                self.seen.append((message["type"], message["payload"]))


@pytest.mark.parametrize("path", ["/api/admin/schema", "/api/admin/stats", "/api/admin/events"])
async def test_anonymous_users_and_deploy_tokens_are_refused(client: Client, path: str) -> None:
    response = await client.get(path)
    body = await response.json()
    assert (response.status, body["code"]) == (401, "UNAUTHORIZED")
    assert body["error"] == "sign in as an administrator, or send an admin token"

    response = await client.get(path, headers=bearer(await user_token(client)))
    body = await response.json()
    assert (response.status, body["code"]) == (403, "FORBIDDEN")
    assert "this needs an administrator" in body["error"]

    deploy = alyx(project_of(client), "admin", "create-token", "--name", "ci", "--kind", "deploy")
    response = await client.get(path, headers=bearer(deploy))
    assert response.status == 403


async def test_the_event_stream_refuses_a_user_token_in_the_query(client: Client) -> None:
    token = await user_token(client)
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect(f"/api/admin/events?token={token}")
    assert refused.value.status == 403
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/api/admin/events?token=alyx_admin_forged")
    assert refused.value.status == 401


async def test_schema_and_stats_for_an_admin_token(client: Client) -> None:
    admin = alyx(project_of(client), "admin", "create-token", "--name", "dash")
    await client.post("/api/collections/notes", json={"title": "a"})
    response = await client.get("/api/admin/schema", headers=bearer(admin))
    body = await response.json()
    assert response.status == 200
    assert list(body["schema"]["collections"]) == ["notes"]
    notes = body["collections"][0]
    assert [f["name"] for f in notes["fields"]] == ["id", "title", "n"]
    assert notes["fields"][0]["flags"] == ["primary"]
    assert notes["rules"]["read"] == "true"

    response = await client.get("/api/admin/stats", headers=bearer(admin))
    stats = await response.json()
    assert response.status == 200
    assert stats["mode"] == "dev" and stats["phase"] == "ready"
    assert stats["database"]["rows"] == {"notes": 1}
    assert stats["requests"]["total"] >= 2
    assert stats["realtime"] == {"connections": 0, "subscriptions": 0}


async def test_the_stream_shows_requests_changes_and_subscriptions(client: Client) -> None:
    admin = alyx(project_of(client), "admin", "create-token", "--name", "dash")
    async with client.ws_connect("/api/admin/events", headers=bearer(admin)) as ws:
        events = Stream(ws)
        hello = await events.find("hello")
        assert hello["mode"] == "dev"
        assert (await events.find("realtime"))["connections"] == 0

        response = await client.post(
            "/api/collections/notes", json={"title": "hi"}, headers={"X-Request-ID": "r-1"}
        )
        doc = await response.json()
        request = await events.find("request", id="r-1")
        assert (request["method"], request["path"], request["status"]) == (
            "POST",
            "/api/collections/notes",
            201,
        )
        assert request["user"] is None and request["duration_ms"] >= 0
        change = await events.find("change", doc_id=doc["id"])
        assert (change["collection"], change["op"]) == ("notes", "INSERT")

        await client.get("/api/collections/notes?token=secret-value", headers={"X-Request-ID": "r-2"})
        assert (await events.find("request", id="r-2"))["path"] == "/api/collections/notes?token=[REDACTED]"

        async with client.ws_connect("/api/realtime") as live:
            await live.send_json(
                {"id": 1, "type": "subscribe", "payload": {"collection": "notes", "filter": {"n": 0}}}
            )
            summary = await events.find("realtime", subscriptions=1)
            (connection,) = summary["clients"]
            assert connection["subscriptions"][0]["collection"] == "notes"
            assert connection["subscriptions"][0]["filter"] == ["n:eq:0"]


async def test_the_stream_accepts_an_admin_token_in_the_query(client: Client) -> None:
    admin = alyx(project_of(client), "admin", "create-token", "--name", "dash")
    async with client.ws_connect(f"/api/admin/events?token={admin}") as ws:
        assert (await Stream(ws).find("hello"))["recent"] == []
