"""Slow consumers: a client that stops reading is closed with 1013 and slows nobody."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from tests.alyx_server.realtime.support import WAIT, LiveClient

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def overrides() -> dict[str, object]:
    return {"realtime.send_queue": 8}


async def create(client: Client, **doc: object) -> None:
    resp = await client.post("/api/collections/posts", json=doc)
    assert resp.status == 201, await resp.text()


async def test_a_stalled_client_does_not_delay_others_and_is_closed_1013(
    client: Client,
) -> None:
    stalled = await LiveClient.connect(client)
    healthy = await LiveClient.connect(client)
    await stalled.subscribe({"collection": "posts"})
    await healthy.subscribe({"collection": "posts"})
    body = "x" * 200_000
    written = 0
    # The stalled client never reads: its socket fills, its queue fills, and the server
    # closes it while the healthy client goes on receiving every change.
    while written < 400:
        await create(client, title=f"t{written}", body=body)
        written += 1
        got = await healthy.sync()
        assert [len(m["payload"]["changes"]["inserts"]) for m in got] == [1]
        metrics = await (await client.get("/metrics")).text()
        if "alyx_realtime_connections 1.0" in metrics:
            break
    assert "alyx_realtime_connections 1.0" in metrics, "the stalled client was never closed"
    while True:
        msg = await asyncio.wait_for(stalled.ws.receive(), WAIT)
        if msg.type != WSMsgType.TEXT:
            break
    assert msg.type == WSMsgType.CLOSE
    assert msg.data == 1013
    assert msg.extra == "send queue full: the client does not keep up"
