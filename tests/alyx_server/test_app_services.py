"""app.py builds every service when the application starts and stops each one on shutdown.

The real application of a functions project on aiohttp's test server: the realtime hub,
the credential watch, the function service and the auth service exist as soon as it
serves (before any connection), /health reports them live, and closing the server
stops every one of them: WebSocket clients get a going-away close, the function workers
exit, the password hasher and the database close, and no task or thread is left.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.api.functions import FUNCTIONS
from alyx_server.api.realtime import REALTIME
from alyx_server.api.runtime import RUNTIME
from alyx_server.errors import AlyxError
from tests.alyx_server.functions.projects import call, make_app, sign_up, write_functions
from tests.alyx_server.functions.sources import NOTES_PY, NOTES_YAML
from tests.alyx_server.realtime.support import WAIT, LiveClient

GOING_AWAY = 1001


def _children() -> set[int]:
    """The live (not zombie) child processes of this process."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            found.add(int(pid))
    return {pid for pid in found if _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _health(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/health")
    assert response.status == 200, await response.text()
    components: dict[str, Any] = (await response.json())["components"]
    return components


async def test_services_run_from_start_and_every_one_stops_on_shutdown(tmp_path: Path) -> None:
    root = write_functions(tmp_path / "project", {"notes.py": NOTES_PY, "notes.yaml": NOTES_YAML})
    app = make_app(root)
    before = _children()
    threads_before = set(threading.enumerate())
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        # Every service exists as soon as the application serves, before any connection.
        state = app[REALTIME]
        hub, watch = state.hub, state.watch
        assert hub is not None and watch is not None
        service = app[FUNCTIONS].service
        assert service is not None
        health = await _health(client)
        assert health["realtime"] == {"status": "ok", "connections": 0, "subscriptions": 0}
        assert health["functions"]["functions"] == 1

        user = await sign_up(client, "ada@example.com")
        live = await LiveClient.connect(client, headers=user.headers)
        assert (await live.subscribe({"collection": "notes"}))["type"] == "snapshot"
        status, body = await call(client, "notes", {"title": "hello"}, user)
        assert status == 200, body
        assert len(watch) == 1
        workers = _children() - before
        assert workers, "the invocation left a warm worker"
        health = await _health(client)
        assert health["realtime"] == {"status": "ok", "connections": 1, "subscriptions": 1}
        assert health["functions"]["workers"] == 1

        # The server alone stops; the WebSocket client reads on, and answers its close.
        stopping = asyncio.create_task(client.server.close())
        while True:
            msg = await asyncio.wait_for(live.ws.receive(), WAIT)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                break
        await asyncio.wait_for(stopping, WAIT)
        # It was told the server is going away.
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, GOING_AWAY), msg
        # Realtime: the hub and the watch are closed and no longer follow the change feed.
        assert state.hub is None and state.watch is None
        assert hub.clients == {}
        assert len(hub.index) == 0
        assert len(watch) == 0
        # Functions: the service is gone, its pools are empty, its worker processes exited.
        assert app[FUNCTIONS].service is None
        assert all(pool.total == 0 for pool in service.pools.values())
        assert not (_children() & workers)
        # The database is closed; nothing of the application still runs.
        try:
            _ = app[RUNTIME].db
        except AlyxError as e:
            assert e.status == 503
        else:
            raise AssertionError("the database is still attached after shutdown")
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        assert left == [], left
        # Auth: the password hasher's threads are gone (a closed hasher refuses work), and
        # so are the database's writer and readers.
        try:
            await app[AUTH_SERVICE].hasher.hash(b"another password")
        except RuntimeError:
            pass
        else:
            raise AssertionError("the password hasher still runs after shutdown")
        threads = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        assert [name for name in threads if not name.startswith("asyncio")] == [], threads
    finally:
        await client.close()
