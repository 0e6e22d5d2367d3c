"""The evaluation budget across one connection's subscriptions, and evaluation-error logs.

A connection may hold `realtime.max_subscriptions_per_client` subscriptions; if each
`where` had its own budget per changed doc, one connection could make a single write cost
that many budgets on the event loop. The fan-out charges every check of one connection to
one budget per changed doc, so the second and third copies of an expensive `where` run out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from alyx_server.app import create_app
from tests.alyx_server.realtime.support import LiveClient, settings_for

Client = TestClient  # type: ignore[type-arg]

SCHEMA = """\
version: 1
collections:
  items:
    fields:
      id:   { type: uuid, primary: true, default: auto }
      tags: { type: json }
    rules: { create: "true", read: "true" }
"""
BUDGET = 1000
# One evaluation of this where charges one step per tag before it runs: 600 of the 1,000.
WHERE = "doc.tags.all(t, t >= 0)"
TAGS = list(range(600))


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    return create_app(settings_for(root, **{"rules.eval_budget": BUDGET}))


async def _inserted(live: LiveClient) -> dict[str, list[Any]]:
    got: dict[str, list[Any]] = {}
    for message in await live.sync():
        if message["type"] == "delta":
            payload = message["payload"]
            got.setdefault(payload["subscription_id"], []).extend(payload["changes"].get("inserts", []))
    return got


async def test_one_connections_subscriptions_share_one_budget_per_change(client: Client) -> None:
    many = await LiveClient.connect(client)
    other = await LiveClient.connect(client)
    subs = []
    for _ in range(3):
        snapshot = await many.subscribe({"collection": "items", "where": WHERE})
        assert snapshot["type"] == "snapshot", snapshot
        subs.append(snapshot["payload"]["subscription_id"])
    assert (await other.subscribe({"collection": "items", "where": WHERE}))["type"] == "snapshot"

    resp = await client.post("/api/collections/items", json={"tags": TAGS})
    assert resp.status == 201, await resp.text()
    doc = await resp.json()

    # 600 + 600 steps are past the connection's 1,000: one of its three copies sees the
    # doc, the others run out of budget (an evaluation error denies). Another connection
    # has a budget of its own.
    got = await _inserted(many)
    assert len([sub for sub in subs if got.get(sub) == [doc]]) == 1, got
    assert list((await _inserted(other)).values()) == [[doc]]

    # The budget is refilled for the next change: the same happens again, no worse.
    resp = await client.post("/api/collections/items", json={"tags": TAGS})
    second = await resp.json()
    got = await _inserted(many)
    assert len([sub for sub in subs if got.get(sub) == [second]]) == 1, got


async def test_evaluation_errors_of_one_where_are_logged_once_not_per_row(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(30):
        resp = await client.post("/api/collections/items", json={"tags": TAGS * 2})
        assert resp.status == 201
    caplog.set_level(logging.WARNING, logger="alyx")
    resp = await client.get("/api/collections/items", params={"where": WHERE})
    assert resp.status == 200
    assert (await resp.json())["docs"] == []
    denied = [r.getMessage() for r in caplog.records if "denied doc" in r.getMessage()]
    # Every row ran out of budget; a line a second per expression, not one per row.
    assert 1 <= len(denied) <= 2, denied
    assert "evaluation budget exceeded" in denied[0]
