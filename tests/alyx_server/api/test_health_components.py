"""`/health` reports the live realtime hub and function service, not fixed values.

The real application on a real port with a functions project: a WebSocket client
subscribes, a function is invoked (so a worker runs), and a function whose manifest is
broken is counted as failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.alyx_server.functions.projects import call, make_app, sign_up, write_functions
from tests.alyx_server.functions.sources import NOTES_PY, NOTES_YAML
from tests.alyx_server.realtime.support import LiveClient

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

FILES = {
    "notes.py": NOTES_PY,
    "notes.yaml": NOTES_YAML,
    "broken.py": NOTES_PY,
    "broken.yaml": "timeout: forever\n",
}


async def components(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/health")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = (await response.json())["components"]
    return body


async def test_health_counts_connections_subscriptions_and_functions(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_functions(tmp_path / "project", FILES)
    client = await aiohttp_client(make_app(root))

    before = await components(client)
    assert before["realtime"] == {"status": "ok", "connections": 0, "subscriptions": 0}
    assert before["functions"] == {
        "status": "degraded",
        "backend": "process",
        "functions": 1,
        "failed": 1,
        "workers": 0,
    }

    first = await LiveClient.connect(client)
    second = await LiveClient.connect(client)
    snapshot = await first.subscribe({"collection": "notes"})
    assert snapshot["type"] == "snapshot", snapshot
    assert (await first.subscribe({"collection": "notes", "sort": "-title"}))["type"] == "snapshot"
    user = await sign_up(client, "ada@example.com")
    status, body = await call(client, "notes", {"title": "hello"}, user)
    assert status == 200, body

    live = await components(client)
    assert live["realtime"] == {"status": "ok", "connections": 2, "subscriptions": 2}
    assert live["functions"]["workers"] == 1
    assert live["functions"]["functions"] == 1

    await first.ws.close()
    await second.ws.close()
    for _ in range(200):  # each request lets the server finish closing the sockets
        after = await components(client)
        if after["realtime"]["connections"] == 0:
            break
    assert after["realtime"] == {"status": "ok", "connections": 0, "subscriptions": 0}


async def test_health_without_functions_reports_none_served(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_functions(tmp_path / "project", {})
    client = await aiohttp_client(make_app(root))

    functions = (await components(client))["functions"]

    assert functions == {"status": "ok", "backend": "process", "functions": 0, "failed": 0, "workers": 0}
