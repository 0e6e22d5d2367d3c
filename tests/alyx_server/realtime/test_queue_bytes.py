"""A client's send queue is bounded by bytes: slow readers of large documents are closed
with 1013, and the server's memory comes back once they are gone.

The attack of the report, from outside: a real `alyx dev` process, ten WebSocket clients
with a 4 KiB receive window that subscribe and then never read, and 400 public posts of
200 KB each written over REST. Bounded by message count only, the server queued 80 MB for
each of them (hundreds of MiB in all) and kept it. The server's resident memory is read
from /proc/<pid>/status before, during and after.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.alyx_cli.test_serve import Server, environment, start
from tests.alyx_server.realtime.support import WAIT, LiveClient

pytestmark = pytest.mark.slow

SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
      n:     { type: int, default: 0 }
      body:  { type: text, nullable: true }
    rules: { create: "true", read: "true" }
"""
SLOW_CLIENTS = 10
POSTS = 400
BODY = 200_000
MIB = 1024 * 1024
MARGIN = 60 * MIB  # resident memory after the attack: within this of the baseline
CLOSED = "send queue over realtime.max_queued_bytes: the client does not keep up"


def rss(pid: int) -> int:
    """The process's resident set size in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def small_receive_buffer(addr_info: Any) -> socket.socket:
    family, kind, proto, _canonname, _address = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    return sock


async def connections(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("alyx_realtime_connections "):
                return float(line.split()[1])
    raise AssertionError("no alyx_realtime_connections in /metrics")


async def post(http: aiohttp.ClientSession, url: str, **doc: object) -> None:
    async with http.post(url + "/api/collections/posts", json=doc) as response:
        assert response.status == 201, await response.text()


@pytest.fixture
def server(tmp_path: Path) -> Any:
    (tmp_path / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    # Warnings only: nothing reads the server's stderr pipe until the end, and a full pipe
    # would block the server on its access log.
    running: Server = start(tmp_path, "dev", "--no-watch", env=environment(ALYX_LOGGING_LEVEL="warning"))
    yield running
    if running.process.poll() is None:
        running.process.kill()
    running.process.communicate(timeout=30)


async def test_slow_clients_are_closed_by_bytes_and_memory_returns(server: Server) -> None:
    url, pid = server.url, server.process.pid
    async with aiohttp.ClientSession() as http:
        # Warm up the paths the attack takes (a reader of 200 KB deltas, the writes).
        warm = LiveClient(await http.ws_connect(url + "/api/realtime"))
        assert (await warm.receive())["type"] == "connected"
        await warm.subscribe({"collection": "posts", "filter": {"n": 0}})
        for i in range(20):
            await post(http, url, title=f"warm{i}", body="w" * BODY)
            await warm.until("delta")
        await warm.close()
        baseline = rss(pid)

        slow_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=small_receive_buffer))
        async with slow_http:
            slow = []
            for _ in range(SLOW_CLIENTS):
                live = LiveClient(await slow_http.ws_connect(url + "/api/realtime"))
                assert (await live.receive())["type"] == "connected"
                snapshot = await live.subscribe({"collection": "posts", "filter": {"n": 1}})
                assert snapshot["type"] == "snapshot"
                slow.append(live)
            peak, left = baseline, float(SLOW_CLIENTS)
            for i in range(POSTS):  # up to 80 MB of deltas for each client, which none reads
                await post(http, url, title=f"t{i}", n=1, body=chr(97 + i % 26) * BODY)
                if i % 10 == 9:
                    peak = max(peak, rss(pid))
                    left = await connections(http, url)
                    if left == 0:
                        break  # all closed: read their close frames before the close times out
            assert left == 0, (
                f"{left:.0f} of {SLOW_CLIENTS} clients that never read are still connected; "
                f"server memory went from {baseline // MIB} to {peak // MIB} MiB"
            )
            for live in slow:
                while True:
                    msg = await asyncio.wait_for(live.ws.receive(), WAIT)
                    if msg.type != WSMsgType.TEXT:
                        break
                assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1013, CLOSED)
        after = rss(pid)
        for _ in range(50):  # bounded: freed memory may take a moment to leave the process
            if after <= baseline + MARGIN:
                break
            await asyncio.sleep(0.1)
            after = rss(pid)
    report = f"baseline {baseline / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB, after {after / MIB:.0f} MiB"
    assert peak <= baseline + 2 * MARGIN, report
    assert after <= baseline + MARGIN, report
