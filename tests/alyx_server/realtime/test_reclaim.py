"""A burst of closed realtime connections is followed by one memory reclaim (tools/reclaim.py).

The reclaim (a full collection and glibc's `malloc_trim`) runs once at least `minimum`
connections have closed and none for `quiet` seconds: once per burst, never per connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from alyx_server.api.realtime import REALTIME
from alyx_server.tools.reclaim import Reclaimer, reclaim_memory


async def _until(check: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition was not met in time")


async def test_a_burst_of_closed_connections_is_reclaimed_once(
    app: web.Application, client: TestClient[Any, Any]
) -> None:
    hub, _watch = app[REALTIME].live()
    runs: list[int] = []
    hub.reclaimer = Reclaimer(minimum=3, quiet=0.05, reclaim=lambda: runs.append(len(hub.clients)))
    sockets = [await client.ws_connect("/api/realtime") for _ in range(5)]
    for ws in sockets[:2]:
        await ws.close()
    await _until(lambda: len(hub.clients) == 3)
    await asyncio.sleep(0.2)
    assert runs == []  # 2 closed: under the minimum
    for ws in sockets[2:]:
        await ws.close()
    await _until(lambda: bool(runs))
    await asyncio.sleep(0.2)
    assert runs == [0]  # once, after the last of the burst closed
    assert hub.reclaimer.runs == 1


async def test_nothing_is_reclaimed_after_the_server_stops() -> None:
    runs: list[None] = []
    reclaimer = Reclaimer(minimum=1, quiet=0.01, reclaim=lambda: runs.append(None))
    reclaimer.closed()
    reclaimer.cancel()
    reclaimer.closed()
    await asyncio.sleep(0.1)
    assert runs == []


def test_reclaim_memory_runs_without_an_event_loop() -> None:
    reclaim_memory()
    Reclaimer(minimum=1).closed()  # no running loop: nothing is scheduled
