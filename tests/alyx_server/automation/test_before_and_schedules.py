"""Before-write hooks and schedules on the real application with real function workers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from alyx_server.api.automation import AUTOMATION
from alyx_server.api.runtime import RUNTIME
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.automation.support import TICK_PY, make_app, rows, write_project

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

GUARD_PY = """\
import time
from alyx_functions import define_function


def handler(event, ctx):
    title = event["doc"].get("title", "")
    if title == "slow":
        time.sleep(30)
    if title.startswith("forbidden"):
        return {"refuse": "no forbidden titles", "status": 403}
    if title == "":
        return {"refuse": "a title is required"}
    if event["event"] == "update" and event["previous"]["title"].lower() == "locked":
        return {"refuse": "this post is locked", "status": 403}
    return {"changes": {"title": title.strip().capitalize()}}


guard = define_function(handler=handler)
"""
GUARD_YAML = "before: { collection: posts, events: [create, update], timeout: 500ms }\n"


async def test_a_before_hook_refuses_modifies_and_times_out(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_project(tmp_path / "p", {"guard.py": GUARD_PY, "guard.yaml": GUARD_YAML})
    client = await aiohttp_client(make_app(root, **{"functions.pool.max_instances": 4}))
    response = await client.post("/api/collections/posts", json={"title": "  hello "})
    assert response.status == 201
    assert (await response.json())["title"] == "Hello"
    response = await client.post("/api/collections/posts", json={"title": "forbidden fruit"})
    assert response.status == 403
    assert (await response.json())["error"] == "no forbidden titles"
    response = await client.post("/api/collections/posts", json={"title": ""})
    assert response.status == 400
    assert (await response.json())["code"] == "VALIDATION_ERROR"

    response = await client.post("/api/collections/posts", json={"title": "locked"})
    locked = (await response.json())["id"]
    response = await client.patch(f"/api/collections/posts/{locked}", json={"title": "open"})
    assert response.status == 403
    assert (await response.json())["error"] == "this post is locked"

    # A hook that does not answer in time refuses its write; other writes go on meanwhile.
    slow = asyncio.ensure_future(client.post("/api/collections/posts", json={"title": "slow"}))
    others = [await client.post("/api/collections/posts", json={"title": f"n{i}"}) for i in range(5)]
    assert [r.status for r in others] == [201] * 5
    response = await slow
    assert response.status == 504
    error = await response.json()
    assert error["code"] == "HOOK_TIMEOUT"
    assert (
        error["error"] == "the before hook guard of posts did not answer within 0.5s; the write was refused"
    )
    titles = sorted(r[0] for r in rows(root, "SELECT title FROM posts"))
    assert titles == ["Hello", "Locked", "N0", "N1", "N2", "N3", "N4"]


def _runs(root: Path, name: str) -> list[tuple[Any, ...]]:
    return rows(root, "SELECT at, n FROM seen WHERE hook = ? ORDER BY id", name)


def _tick_files(name: str, manifest: str) -> dict[str, str]:
    return {f"{name}.py": TICK_PY, f"{name}.yaml": f"env: {{ NAME: {name} }}\n{manifest}"}


async def test_cron_and_interval_fire_at_their_instants(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    files = {
        **_tick_files("fivemin", 'schedule: "*/5 * * * *"\n'),
        **_tick_files("paris", 'schedule: "0 9 * * *"\ntimezone: Europe/Paris\n'),
        **_tick_files("often", "every: 30s\n"),
    }
    root = write_project(tmp_path / "p", files)
    clock = ManualClock("2026-03-02T07:58:10Z")
    app = make_app(root, clock=clock)
    app[AUTOMATION].run_scheduler = False
    client = await aiohttp_client(app)
    scheduler = client.app[AUTOMATION].scheduler
    assert scheduler is not None
    assert await scheduler.tick() == 0
    for _ in range(12):  # 6 minutes in 30 s steps
        clock.advance(30)
        await scheduler.tick()
    assert [r[0] for r in _runs(root, "fivemin")] == ["2026-03-02T08:00:00.000Z"]
    often = [r[0] for r in _runs(root, "often")]
    assert often[:3] == ["2026-03-02T07:58:40.000Z", "2026-03-02T07:59:10.000Z", "2026-03-02T07:59:40.000Z"]
    assert len(often) == 12
    # 09:00 in Paris is 08:00 UTC in March (CET).
    assert [r[0] for r in _runs(root, "paris")] == ["2026-03-02T08:00:00.000Z"]
    listed = await scheduler.describe()
    assert listed["fivemin"]["next_run"] == "2026-03-02T08:05:00.000Z"
    assert listed["fivemin"]["last_scheduled"] == "2026-03-02T08:00:00.000Z"
    assert listed["paris"]["next_run"] == "2026-03-03T08:00:00.000Z"
    assert listed["often"]["runs"] == 12


async def test_catch_up_modes_after_downtime(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    files = {
        **_tick_files("none", 'schedule: "*/5 * * * *"\ncatch_up: none\n'),
        **_tick_files("one", 'schedule: "*/5 * * * *"\ncatch_up: one\n'),
        **_tick_files("all", 'schedule: "*/5 * * * *"\ncatch_up: all\n'),
    }
    root = write_project(tmp_path / "p", files)
    clock = ManualClock("2026-03-02T10:01:00Z")
    app = make_app(root, clock=clock)
    app[AUTOMATION].run_scheduler = False
    client = await aiohttp_client(app)
    await client.close()  # the server stops at 10:01 ...
    clock.set("2026-03-02T11:02:30Z")  # ... and starts again at 11:02:30: 10:05 to 11:00 were missed
    app = make_app(root, clock=clock)
    app[AUTOMATION].run_scheduler = False
    client = await aiohttp_client(app)
    scheduler = client.app[AUTOMATION].scheduler
    assert scheduler is not None
    await scheduler.tick()
    assert _runs(root, "none") == []
    assert _runs(root, "one") == [("2026-03-02T11:00:00.000Z", 11)]
    assert len(_runs(root, "all")) == 12
    assert _runs(root, "all")[0] == ("2026-03-02T10:05:00.000Z", 0)
    assert _runs(root, "all")[-1][0] == "2026-03-02T11:00:00.000Z"
    listed = await scheduler.describe()
    assert listed["none"]["skipped"] == 12 and listed["none"]["next_run"] == "2026-03-02T11:05:00.000Z"
    clock.set("2026-03-02T11:05:01Z")
    await scheduler.tick()
    assert [r[0] for r in _runs(root, "none")] == ["2026-03-02T11:05:00.000Z"]


SLOW_TICK_PY = TICK_PY.replace(
    "async def handler(event, ctx):\n",
    "async def handler(event, ctx):\n    import asyncio\n    await asyncio.sleep(0.5)\n",
)


async def test_one_run_at_a_time_with_two_servers_on_one_file(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    files = {"slow.py": SLOW_TICK_PY, "slow.yaml": "env: { NAME: slow }\nevery: 10s\n"}
    root = write_project(tmp_path / "p", files)
    clock = ManualClock("2026-03-02T10:00:00Z")
    clients = []
    for _ in range(2):
        app = make_app(root, clock=clock)
        app[AUTOMATION].run_scheduler = False
        clients.append(await aiohttp_client(app))
    schedulers = [c.app[AUTOMATION].scheduler for c in clients]
    assert all(s is not None for s in schedulers)
    for _ in range(5):
        clock.advance(10)
        counts = await asyncio.gather(*(s.tick() for s in schedulers if s is not None))
        assert sorted(counts) == [0, 1]
    assert len(_runs(root, "slow")) == 5


async def test_next_and_last_runs_in_the_admin_api(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    root = write_project(tmp_path / "p", _tick_files("often", "every: 30s\ncatch_up: all\n"))
    clock = ManualClock("2026-03-02T10:00:00Z")
    app = make_app(root, clock=clock)
    app[AUTOMATION].run_scheduler = False
    client = await aiohttp_client(app)
    clock.advance(30)
    scheduler = client.app[AUTOMATION].scheduler
    assert scheduler is not None and await scheduler.tick() == 1
    password = "correct horse battery"
    await client.post("/api/auth/register", json={"email": "a@example.com", "password": password})
    with sqlite3.connect(root / "data" / "alyx.db") as conn:
        conn.execute("UPDATE _alyx_users SET role = 'admin'")
    await client.app[RUNTIME].db.poll_changes()
    response = await client.post("/api/auth/login", json={"email": "a@example.com", "password": password})
    token = (await response.json())["tokens"]["access_token"]
    response = await client.get("/api/admin/functions", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    (entry,) = (await response.json())["functions"]
    schedule = entry["schedule"]
    assert schedule["every"] == 30 and schedule["catch_up"] == "all"
    assert schedule["last_scheduled"] == "2026-03-02T10:00:30.000Z"
    assert schedule["next_run"] == "2026-03-02T10:01:00.000Z"
    assert schedule["last_status"] == "ok" and schedule["runs"] == 1


async def test_an_interval_keeps_its_grid_when_ticks_come_late(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_project(tmp_path / "p", _tick_files("often", "every: 30s\n"))
    clock = ManualClock("2026-03-02T07:58:10Z")
    app = make_app(root, clock=clock)
    app[AUTOMATION].run_scheduler = False
    client = await aiohttp_client(app)
    scheduler = client.app[AUTOMATION].scheduler
    assert scheduler is not None
    for step in (45, 17, 21):  # 07:58:55, 07:59:12, 07:59:33: each tick late for its time
        clock.advance(step)
        await scheduler.tick()
    assert [r[0] for r in _runs(root, "often")] == ["2026-03-02T07:58:40.000Z", "2026-03-02T07:59:10.000Z"]
    assert (await scheduler.describe())["often"]["next_run"] == "2026-03-02T07:59:40.000Z"
