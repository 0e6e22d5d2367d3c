"""A collection without a read rule is for admins only, and says so to everyone else.

Sent from the caller's side over the real application with the schema's CEL rules: a
realtime subscribe, a REST list and a REST get by anyone but an admin are refused with
FORBIDDEN naming the missing rule (not an empty snapshot or list that looks like "no
documents"); a get is refused alike whether or not the document exists; a reference into
the collection expands to null; admins read everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.app import create_app
from tests.alyx_server.realtime.support import LiveClient, register, settings_for

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]

SCHEMA = """\
version: 1
collections:
  audit:
    fields:
      id:   { type: uuid, primary: true, default: auto }
      note: { type: string }
    rules: { create: "true" }
  links:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      audit: { type: uuid, references: audit.id, nullable: true }
    rules: { create: "true", read: "true" }
"""
REFUSAL = "audit has no read rule: only admins may read it; add rules.read to audit in schema.yaml"
ADMIN, PASSWORD = "root@example.com", "correct-horse-1"
MISSING = "00000000-0000-4000-8000-000000000000"


@dataclass
class Actors:
    client: Client
    user: str
    admin: str
    audit_id: str


@pytest.fixture
async def actors(tmp_path: Path, aiohttp_client: ClientFactory) -> Actors:
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    (root / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n", encoding="utf-8")
    client = await aiohttp_client(create_app(settings_for(root)))
    _user_id, user = await register(client, "ada@example.com")
    result = CliRunner().invoke(
        cli, ["admin", "create", ADMIN, "--password-stdin", "-C", str(root)], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    response = await client.post("/api/auth/login", json={"email": ADMIN, "password": PASSWORD})
    admin = (await response.json())["tokens"]["access_token"]
    response = await client.post("/api/collections/audit", json={"note": "n"}, headers=bearer(user))
    assert response.status == 201, await response.text()
    return Actors(client, user, admin, (await response.json())["id"])


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.mark.parametrize("who", ["anonymous", "user"])
async def test_subscribe_is_forbidden_naming_the_missing_rule(actors: Actors, who: str) -> None:
    token = actors.user if who == "user" else None
    live = await LiveClient.connect(actors.client, headers=bearer(token))
    answer = await live.subscribe({"collection": "audit"})
    assert answer["type"] == "error"
    assert answer["payload"] == {"code": "FORBIDDEN", "message": REFUSAL}
    # Nothing was subscribed: a later write sends nothing.
    await actors.client.post("/api/collections/audit", json={"note": "later"}, headers=bearer(token))
    assert await live.sync() == []


@pytest.mark.parametrize("who", ["anonymous", "user"])
async def test_rest_list_and_get_are_forbidden_whether_or_not_the_doc_exists(
    actors: Actors, who: str
) -> None:
    headers = bearer(actors.user if who == "user" else None)
    for path in (
        "/api/collections/audit",
        f"/api/collections/audit/{actors.audit_id}",
        f"/api/collections/audit/{MISSING}",
    ):
        response = await actors.client.get(path, headers=headers)
        body = await response.json()
        assert (response.status, body["code"], body["error"]) == (403, "FORBIDDEN", REFUSAL), path


async def test_a_reference_into_it_expands_to_null(actors: Actors) -> None:
    response = await actors.client.post("/api/collections/links", json={"audit": actors.audit_id})
    link = await response.json()
    response = await actors.client.get(f"/api/collections/links/{link['id']}?expand=audit")
    assert response.status == 200
    assert (await response.json())["expand"] == {"audit": None}
    response = await actors.client.get(
        f"/api/collections/links/{link['id']}?expand=audit", headers=bearer(actors.admin)
    )
    assert (await response.json())["expand"]["audit"]["note"] == "n"


async def test_admins_read_and_subscribe(actors: Actors) -> None:
    response = await actors.client.get("/api/collections/audit", headers=bearer(actors.admin))
    assert response.status == 200
    assert [d["id"] for d in (await response.json())["docs"]] == [actors.audit_id]
    live = await LiveClient.connect(actors.client, headers=bearer(actors.admin))
    snapshot = await live.subscribe({"collection": "audit"})
    assert snapshot["type"] == "snapshot"
    assert [d["id"] for d in snapshot["payload"]["docs"]] == [actors.audit_id]


async def test_an_admin_subscription_is_dropped_when_a_user_token_takes_over(actors: Actors) -> None:
    live = await LiveClient.connect(actors.client, headers=bearer(actors.admin))
    snapshot = await live.subscribe({"collection": "audit"})
    await live.send("auth", {"token": actors.user}, "a1")
    error = await live.until("error")
    assert error == {
        "id": snapshot["id"],
        "type": "error",
        "payload": {"code": "FORBIDDEN", "message": REFUSAL},
    }
    await actors.client.post("/api/collections/audit", json={"note": "later"}, headers=bearer(actors.admin))
    assert await live.sync() == []
