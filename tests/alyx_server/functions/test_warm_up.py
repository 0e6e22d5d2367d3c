"""A new worker warms up before it says it is ready: its executor runs its own invoke path
against the internal API's `ping`, never the function's handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from alyx_server.api.pipeline import HTTP_POLICY
from alyx_server.functions.backend import ProcessBackend
from tests.alyx_server.functions.projects import (
    call,
    make_app,
    service_of,
    sign_up,
    table_rows,
    write_functions,
)
from tests.alyx_server.functions.sources import FILES

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

NOTES = {
    "notes.py": FILES["notes.py"],
    "notes.yaml": FILES["notes.yaml"],
    "notes_node/index.mjs": FILES["notes_node/index.mjs"],
    "notes_node.yaml": FILES["notes_node.yaml"],
}


@pytest.mark.parametrize("name", ["notes", "notes_node"])
async def test_a_started_worker_is_warm_and_the_handler_did_not_run(
    tmp_path: Path, aiohttp_client: ClientFactory, name: str
) -> None:
    root = write_functions(tmp_path / "p", NOTES)
    client = await aiohttp_client(make_app(root, **{"functions.pool.min_warm": 2}))
    workers = service_of(client).pools[name].workers
    assert len(workers) == 2
    assert all(worker.warmed for worker in workers)
    # The warm-up ran the executor's own handler: the function's (it creates a note) did not.
    assert table_rows(client, "SELECT COUNT(*) FROM notes") == [(0,)]
    user = await sign_up(client, "warm@example.com")
    status, body = await call(client, name, {"title": "first"}, user)
    assert status == 200 and body["success"] is True, body
    assert body["logs"][0]["message"].startswith("created")  # no warm-up line leaks into a call
    assert len(body["logs"]) == 1
    assert table_rows(client, "SELECT COUNT(*) FROM notes") == [(1,)]


async def test_a_worker_started_while_a_deploy_holds_the_schema_gate_still_warms_up(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_functions(tmp_path / "p", NOTES)
    client = await aiohttp_client(make_app(root, **{"functions.pool.min_warm": 1}))
    pool = service_of(client).pools["notes_node"]
    async with client.app[HTTP_POLICY].gate.exclusive(5.0):
        await pool.warm(2)
    assert len(pool.workers) == 2
    assert all(worker.warmed for worker in pool.workers)


async def test_ping_answers_without_a_token(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    root = write_functions(tmp_path / "p", NOTES)
    client = await aiohttp_client(make_app(root))
    backend = service_of(client).backend
    assert isinstance(backend, ProcessBackend)
    connector = aiohttp.UnixConnector(path=str(backend.sandbox.socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post("http://alyx/internal/v1/ping", json={}) as response:
            assert (response.status, await response.json()) == (200, {"ok": True})
        async with session.post("http://alyx/internal/v1/db/exec", json={}) as response:
            assert (response.status, (await response.json())["code"]) == (401, "INVALID_TOKEN")
