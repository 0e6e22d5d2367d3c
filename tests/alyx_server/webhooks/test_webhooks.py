"""Webhooks end to end: the real server, real receivers on loopback that verify every
delivery with the `standardwebhooks` package (as a receiver in the wild would), and the
delivery log in the real SQLite file."""

from __future__ import annotations

import asyncio
import base64
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema_rs import Draft202012Validator
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from alyx_server.api.runtime import RUNTIME
from alyx_server.app import create_app
from alyx_server.config import load_settings
from alyx_server.errors import ConfigError
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.functions.projects import sign_up

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[..., Awaitable[TestServer]]
Client = TestClient[Any, Any]
DEADLINE = 60.0  # a bound on each wait, never a claim about speed
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:        { type: uuid, primary: true, default: auto }
      title:     { type: string }
      published: { type: bool, default: false }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""


@dataclass
class Receiver:
    """An HTTP endpoint that verifies each delivery, failing the first `fail` ones."""

    secret: str
    fail: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, str]] = field(default_factory=list)
    raw: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("webhook-")}
        self.attempts.append(headers)
        self.raw.append((body, headers))
        try:
            payload = Verifier(self.secret).verify(body, headers)
        except WebhookVerificationError as e:
            return web.Response(status=400, text=str(e))
        if len(self.attempts) <= self.fail:
            return web.Response(status=500, text="try again later")
        self.received.append(payload)
        return web.Response(status=204)


async def start_receiver(aiohttp_server: ServerFactory, receiver: Receiver) -> str:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}/hook"


def write_project(
    root: Path, url: str, *, allow_private: bool = True, when: str | None = None, deletes_apart: bool = False
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(SCHEMA)
    condition = f"\n              when: {when!r}" if when else ""
    kinds = "create, update" if deletes_apart else "create, update, delete"
    if deletes_apart:
        condition += "\n            - collection: posts\n              events: [delete]"
    (root / "alyx.yaml").write_text(
        f"""\
jobs:
  poll_interval: 50ms
webhooks:
  allow_private_targets: {str(allow_private).lower()}
  targets:
    - name: crm
      url: {url}
      secret: ${{CRM_SECRET}}
      events:
            - collection: posts
              events: [{kinds}]{condition}
"""
    )
    return root


def make_app(root: Path, clock: ManualClock | None = None) -> web.Application:
    overrides = {"auth.bcrypt_cost": 4, "auth.rate_limit.register": "off", "auth.rate_limit.login": "off"}
    settings = load_settings(root, mode="dev", environ={"CRM_SECRET": SECRET}, overrides=overrides)
    return create_app(settings) if clock is None else create_app(settings, clock=clock)


async def until(check: Callable[[], Any]) -> Any:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not hold in time")


def deliveries(client: Client) -> list[dict[str, Any]]:
    with sqlite3.connect(client.app[RUNTIME].settings.database.path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM _alyx_webhook_deliveries ORDER BY change_id").fetchall()
    return [dict(row) for row in rows]


async def test_events_arrive_signed_and_filtered_by_when(
    tmp_path: Path, aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
) -> None:
    receiver = Receiver(SECRET)
    url = await start_receiver(aiohttp_server, receiver)
    client = await aiohttp_client(
        make_app(write_project(tmp_path / "p", url, when="doc.published", deletes_apart=True))
    )
    draft = await (await client.post("/api/collections/posts", json={"title": "draft"})).json()
    post = await (
        await client.post("/api/collections/posts", json={"title": "out", "published": True})
    ).json()
    await client.patch(f"/api/collections/posts/{post['id']}", json={"title": "out now"})
    await client.delete(f"/api/collections/posts/{draft['id']}")
    await until(lambda: len(receiver.received) == 3)
    # Deliveries run concurrently: receivers get them in any order (change_id orders them).
    received = sorted(receiver.received, key=lambda p: p["data"]["change_id"])
    assert [(p["type"], p["data"]["id"]) for p in received] == [
        ("posts.create", post["id"]), ("posts.update", post["id"]), ("posts.delete", draft["id"]),
    ]  # fmt: skip
    assert received[1]["data"]["doc"]["title"] == "out now"
    assert received[2]["data"]["doc"] is None
    log = await until(
        lambda: (rows := deliveries(client)) and all(r["status"] == "delivered" for r in rows) and rows
    )
    assert [(r["status"], r["attempts"], r["response_status"]) for r in log] == [("delivered", 1, 204)] * 3
    assert all(r["response_ms"] is not None for r in log)


async def test_a_receiver_failing_twice_gets_the_delivery_on_the_third_attempt(
    tmp_path: Path, aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
) -> None:
    receiver = Receiver(SECRET, fail=2)
    url = await start_receiver(aiohttp_server, receiver)
    # The injected clock starts at the real time (the receiver checks timestamps) and is
    # moved past each backoff instead of waiting for it.
    clock = ManualClock(datetime.now(UTC))
    client = await aiohttp_client(make_app(write_project(tmp_path / "p", url), clock))
    await client.post("/api/collections/posts", json={"title": "hello"})
    for failures in (1, 2):
        await until(lambda f=failures: len(receiver.attempts) == f and deliveries(client)[0]["attempts"] == f)
        row = deliveries(client)[0]
        assert (row["status"], row["response_status"]) == ("pending", 500)
        assert row["last_error"] == "HTTP 500: try again later"
        clock.advance(2.0 * 2 ** (failures - 1) + 0.001)
        await asyncio.sleep(0.1)  # let the runner see the clock move at its next poll
    await until(lambda: len(receiver.received) == 1)
    # One webhook-id across the attempts (receivers deduplicate on it); a fresh signature each.
    assert len({a["webhook-id"] for a in receiver.attempts}) == 1
    assert len({a["webhook-signature"] for a in receiver.attempts}) == 3
    row = await until(lambda: (r := deliveries(client)[0])["status"] == "delivered" and r)
    assert (row["attempts"], row["response_status"], row["last_error"]) == (3, 204, None)
    root = await sign_up(client, "root@example.com", admin=True)
    listed = await (await client.get("/api/admin/webhooks/deliveries", headers=root.headers)).json()
    assert [(d["webhook"], d["status"], d["attempts"]) for d in listed["deliveries"]] == [
        ("crm", "delivered", 3)
    ]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_private_target_is_refused_unless_allowed(
    tmp_path: Path, aiohttp_client: ClientFactory, aiohttp_server: ServerFactory, host: str
) -> None:
    receiver = Receiver(SECRET)
    url = (await start_receiver(aiohttp_server, receiver)).replace("127.0.0.1", host)
    client = await aiohttp_client(make_app(write_project(tmp_path / "p", url, allow_private=False)))
    await client.post("/api/collections/posts", json={"title": "hello"})
    row = await until(lambda: (rows := deliveries(client)) and rows[0]["status"] != "pending" and rows[0])
    assert row["status"] == "refused" and row["attempts"] == 1
    assert (
        "127.0.0.1 is a loopback address" in row["last_error"]
        and "allow_private_targets" in row["last_error"]
    )
    assert receiver.attempts == []


async def test_tampered_and_stale_deliveries_are_rejected_by_the_receiver_library(
    tmp_path: Path, aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
) -> None:
    receiver = Receiver(SECRET)
    url = await start_receiver(aiohttp_server, receiver)
    # A server whose clock is 10 minutes behind signs deliveries that look replayed.
    clock = ManualClock(datetime.now(UTC) - timedelta(minutes=10))
    client = await aiohttp_client(make_app(write_project(tmp_path / "p", url), clock))
    await client.post("/api/collections/posts", json={"title": "hello"})
    await until(lambda: receiver.attempts)
    body, headers = receiver.raw[0]
    assert receiver.received == []  # the receiver answered 400: too old
    verifier = Verifier(SECRET)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(body, headers)
    # The same delivery with a fresh timestamp or a changed body: the signature fails.
    fresh = {**headers, "webhook-timestamp": str(int(time.time()))}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(body, fresh)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(body.replace(b"hello", b"HELLO"), fresh)
    # Signed now, it verifies: the headers themselves are right.
    clock.set(datetime.now(UTC))
    await until(lambda: len(receiver.attempts) >= 2 or (clock.advance(1.0) or False))
    await until(lambda: receiver.received)
    assert receiver.received[0]["data"]["doc"]["title"] == "hello"


async def test_admin_api_adds_webhooks_and_events_survive_a_restart(
    tmp_path: Path, aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
) -> None:
    first, second = Receiver(SECRET), Receiver("")
    url = await start_receiver(aiohttp_server, first)
    root_dir = write_project(tmp_path / "p", url)
    client = await aiohttp_client(make_app(root_dir))
    root = await sign_up(client, "root@example.com", admin=True)
    other = await start_receiver(aiohttp_server, second)
    bad = await client.post(
        "/api/admin/webhooks", headers=root.headers,
        json={"name": "ops", "url": other, "events": [{"collection": "posts", "when": "doc.title =="}]},
    )  # fmt: skip
    assert bad.status == 400 and "when does not compile" in (await bad.json())["error"]
    added = await client.post(
        "/api/admin/webhooks",
        headers=root.headers,
        json={"name": "ops", "url": other, "events": [{"collection": "posts", "events": ["create"]}]},
    )
    assert added.status == 201, await added.text()
    second.secret = (await added.json())["secret"]
    taken = await client.post(
        "/api/admin/webhooks",
        headers=root.headers,
        json={"name": "crm", "url": other, "events": [{"collection": "posts"}]},
    )
    assert taken.status == 409
    anonymous = await client.get("/api/admin/webhooks")
    assert anonymous.status == 401
    names = [
        w["name"]
        for w in (await (await client.get("/api/admin/webhooks", headers=root.headers)).json())["webhooks"]
    ]
    assert sorted(names) == ["crm", "ops"]
    await client.close()
    # Written while no server runs (another process): dispatched at the next start.
    db_file = root_dir / "data" / "alyx.db"
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO posts (id, title, published) "
            "VALUES ('00000000-0000-4000-8000-000000000001', 'offline', 0)"
        )
    client = await aiohttp_client(make_app(root_dir))
    await until(lambda: first.received and second.received)
    assert first.received[0]["data"]["doc"]["title"] == "offline"
    assert second.received[0]["type"] == "posts.create"


def test_webhook_configuration_errors_name_the_line(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", "ftp://example.com/hook")
    with pytest.raises(ConfigError) as caught:
        load_settings(root, mode="dev", environ={"CRM_SECRET": SECRET})
    assert str(caught.value).startswith(
        "alyx.yaml:7:12: webhooks.targets[0].url: 'ftp://example.com/hook' is not an http"
    )
    write_project(root, "https://example.com/hook")
    with pytest.raises(ConfigError) as caught:
        load_settings(root, mode="dev", environ={"CRM_SECRET": "not-a-secret"})
    assert str(caught.value).startswith(
        "alyx.yaml:8:15: webhooks.targets[0].secret: a webhook secret starts with whsec_"
    )


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"url": "http://["}, 400),  # urlsplit raises on an unclosed IPv6 bracket
        ({"url": "http://[::1"}, 400),
        ({"url": "http://a b/hook"}, 400),
        ({"url": "HTTPS://user:pw@example.com:8443/h?q=1#f"}, 201),
        ({"url": "ftp://example.com/hook"}, 400),
        ({"secret": ""}, 400),
        ({"secret": False}, 400),
        ({"secret": "whsec_" + base64.b64encode(b"k" * 23).decode()}, 400),
        ({"secret": "whsec_" + base64.b64encode(b"k" * 64).decode()}, 201),
        ({"secret": None}, 201),
        ({"name": "Ops"}, 400),
        ({"name": "deliveries"}, 400),  # the delivery log's path
        ({"events": []}, 400),
        ({"events": [{"collection": "posts", "events": []}]}, 400),
        ({"events": [{"collection": "posts", "events": ["create"], "when": None, "note": 1}]}, 201),
        ({"extra": 1}, 400),
    ],
)
async def test_a_webhook_body_is_what_the_openapi_document_says(
    tmp_path: Path, aiohttp_client: ClientFactory, change: dict[str, Any], status: int
) -> None:
    client = await aiohttp_client(make_app(write_project(tmp_path / "p", "https://example.com/hook")))
    root = await sign_up(client, "root@example.com", admin=True)
    document = await (await client.get("/api/openapi.json")).json()

    def fits(name: str, value: Any) -> bool:
        schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        return bool(Draft202012Validator(schema).is_valid(value))

    body = {"name": "ops", "url": "https://example.com/hook", "events": [{"collection": "posts"}], **change}
    assert fits("WebhookRequest", body) is (status == 201)
    answer = await client.post("/api/admin/webhooks", headers=root.headers, json=body)
    assert answer.status == status, await answer.text()
    if status == 400:
        assert (await answer.json())["code"] == "VALIDATION_ERROR"
        return
    assert fits("WebhookCreated", await answer.json())
    listed = await client.get("/api/admin/webhooks", headers=root.headers)
    assert fits("WebhookList", await listed.json())
    log = await client.get("/api/admin/webhooks/deliveries", headers=root.headers)
    assert fits("WebhookDeliveries", await log.json())


async def test_the_delivery_log_path_is_no_webhook(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    """/api/admin/webhooks/deliveries is the log: DELETE there is no route (405, Allow GET)."""
    client = await aiohttp_client(make_app(write_project(tmp_path / "p", "https://example.com/hook")))
    root = await sign_up(client, "root@example.com", admin=True)
    removed = await client.delete("/api/admin/webhooks/deliveries", headers=root.headers)
    assert removed.status == 405
    assert set(removed.headers["Allow"].split(",")) == {"GET", "HEAD"}
    missing = await client.delete("/api/admin/webhooks/ops", headers=root.headers)
    assert (missing.status, (await missing.json())["code"]) == (404, "WEBHOOK_NOT_FOUND")


async def test_no_webhook_costs_no_write_per_commit_and_a_new_one_starts_now(
    tmp_path: Path, aiohttp_client: ClientFactory, aiohttp_server: ServerFactory
) -> None:
    receiver = Receiver("")
    url = await start_receiver(aiohttp_server, receiver)
    root_dir = write_project(tmp_path / "p", url)
    config = "jobs:\n  poll_interval: 50ms\nwebhooks:\n  allow_private_targets: true\n"
    (root_dir / "alyx.yaml").write_text(config)
    # Still: the idle dispatcher's next look never comes; near now: the receiver checks
    # the signed timestamp against its own clock.
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    client = await aiohttp_client(make_app(root_dir, clock))
    root = await sign_up(client, "root@example.com", admin=True)
    db_file = root_dir / "data" / "alyx.db"

    def cursor() -> tuple[int, int]:
        with sqlite3.connect(db_file) as conn:
            moved = conn.execute("SELECT change_id FROM _alyx_webhook_cursor WHERE id = 1").fetchone()
            latest = conn.execute("SELECT max(id) FROM _alyx_changes").fetchone()
        return (int(moved[0]) if moved else 0), int(latest[0] or 0)

    for n in range(10):
        post = {"title": f"old {n}"}
        created = await client.post("/api/collections/posts", headers=root.headers, json=post)
        assert created.status == 201, await created.text()
    await asyncio.sleep(0.3)  # the dispatcher's turn, had it one per commit
    moved, latest = cursor()
    assert moved < latest  # idle: the cursor did not follow each commit

    added = await client.post(
        "/api/admin/webhooks",
        headers=root.headers,
        json={"name": "ops", "url": url, "events": [{"collection": "posts", "events": ["create"]}]},
    )
    assert added.status == 201, await added.text()
    receiver.secret = (await added.json())["secret"]
    assert cursor()[0] == cursor()[1]  # the new webhook starts at the newest change
    created = await client.post("/api/collections/posts", headers=root.headers, json={"title": "new"})
    assert created.status == 201
    await until(lambda: receiver.received)
    await asyncio.sleep(0.3)
    assert [r["data"]["doc"]["title"] for r in receiver.received] == ["new"]
