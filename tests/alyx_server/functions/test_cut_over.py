"""How a pool grows under load, and what a reload (a deploy's function cut-over) starts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from alyx_server.api.admin_live import reload_functions
from tests.alyx_server.functions.projects import call, make_app, service_of, until, write_functions
from tests.alyx_server.functions.sources import FILES

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]
MISBEHAVE = {"misbehave.py": FILES["misbehave.py"], "misbehave.yaml": FILES["misbehave.yaml"]}


async def test_a_call_served_by_a_released_worker_starts_none(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_functions(tmp_path / "p", MISBEHAVE)
    client = await aiohttp_client(make_app(root, **{"functions.pool.max_instances": 2}))
    pool = service_of(client).pools["misbehave"]
    pool.grow_after = 30.0  # longer than the running call: its release comes first
    running = asyncio.ensure_future(call(client, "misbehave", {"mode": "sleep", "seconds": 0.3}))
    await until(lambda: pool.state["busy"] == 1)
    assert (await call(client, "misbehave", {"mode": "ok"}))[0] == 200
    assert (await running)[0] == 200
    assert pool.started == 1 and pool.total == 1


async def test_a_call_still_waiting_grows_the_pool_and_takes_the_new_worker(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_functions(tmp_path / "p", MISBEHAVE)
    client = await aiohttp_client(make_app(root, **{"functions.pool.max_instances": 2}))
    pool = service_of(client).pools["misbehave"]
    pool.grow_after = 0.0
    running = asyncio.ensure_future(call(client, "misbehave", {"mode": "sleep", "seconds": 1.5}))
    await until(lambda: pool.state["busy"] == 1)
    status, body = await call(client, "misbehave", {"mode": "ok"})
    assert status == 200 and body["success"] is True
    assert not running.done()  # answered by the new worker, not after the running call
    assert pool.started == 2
    assert (await running)[0] == 200


async def test_a_pool_that_a_reload_replaces_does_not_grow_and_the_new_one_is_warmed_to_its_size(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_functions(tmp_path / "p", MISBEHAVE)
    client = await aiohttp_client(make_app(root, **{"functions.pool.max_instances": 4}))
    service = service_of(client)
    old = service.pools["misbehave"]
    old.grow_after = 0.0
    running = asyncio.ensure_future(call(client, "misbehave", {"mode": "sleep", "seconds": 1.0}))
    await until(lambda: old.state["busy"] == 1)
    (root / "functions" / "misbehave.py").write_text(FILES["misbehave.py"] + "\n# changed\n")
    reload = asyncio.ensure_future(reload_functions(client.server.app, ["misbehave"]))
    await asyncio.sleep(0)  # the reload runs up to its first start on the new code
    waiting = asyncio.ensure_future(call(client, "misbehave", {"mode": "ok"}))
    assert (await reload).outcome == {"misbehave": None}
    assert [(await running)[0], (await waiting)[0]] == [200, 200]
    assert old.started == 1  # the second call waited for the running one instead
    new = service.pools["misbehave"]
    assert new is not old and new.started == 1  # the old pool's size
    await until(lambda: old.total == 0)  # the old pool drained and is stopping its workers
