"""Alyx realtime (WebSocket) and PocketBase realtime (SSE), side by side, one client harness.

    .venv/bin/python bench/bench_realtime.py [--clients 1000] [--writes 100] [--gap-ms 50]

The servers come from http_vs_pocketbase.py (same set-up, same 10,000 posts). Three runs:

1. fan-out latency: `--clients` clients subscribe to `posts` with a filter
   (`author = 'rt'`); `--writes` posts matching it are created `--gap-ms` apart; the
   latency of each (write, client) pair runs from the start of the write request to the
   client's receipt. p50, p95, p99 and delivered messages per second, for both servers,
   in one client process (asyncio), one after the other.
2. indexed matching (Alyx): 100, 1,000 and 10,000 subscriptions with distinct equality
   filters spread over 100 connections; `--cpu-writes` writes each concerning one
   subscription; the server's CPU time (utime + stime from /proc) per change.
3. memory per idle connection: the server's RSS with no client and with `--clients`
   idle clients, for both servers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import sys
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_vs_pocketbase import (
    WORK,
    Target,
    ensure_pocketbase,
    free_port,
    sample_docs,
    scaffold_alyx,
    start_alyx,
    start_pocketbase,
)

__all__ = ["main"]

RT_AUTHOR = "rt"
Receipt = Callable[[int, float], None]


# ---------------------------------------------------------------- clients of each server


async def alyx_client(
    session: aiohttp.ClientSession, base: str, filters: list[dict[str, Any]], got: Receipt
) -> Any:
    """A WebSocket with one subscription per filter; every delta insert calls got(n, t)."""
    ws = await session.ws_connect(base.replace("http", "ws", 1) + "/api/realtime", max_msg_size=0)
    hello = await ws.receive_json()
    assert hello["type"] == "connected", hello
    for i, flt in enumerate(filters):
        await ws.send_json({"id": i, "type": "subscribe", "payload": {"collection": "posts", "filter": flt}})
        while (await ws.receive_json())["type"] != "snapshot":
            pass

    async def read() -> None:
        async for msg in ws:
            now = time.perf_counter()
            data = orjson.loads(msg.data)
            if data["type"] == "delta":
                for doc in data["payload"]["changes"].get("inserts", ()):
                    got(doc["n"], now)

    return ws, asyncio.ensure_future(read())


async def pocketbase_client(
    session: aiohttp.ClientSession, base: str, filters: list[str], got: Receipt
) -> Any:
    """An SSE stream with one `posts/*` subscription per filter; every create calls got(n, t)."""
    resp = await session.get(base + "/api/realtime", timeout=aiohttp.ClientTimeout(total=None))
    client_id = None
    while client_id is None:
        line = (await resp.content.readline()).decode()
        if line.startswith("data:"):
            client_id = json.loads(line[5:])["clientId"]
    topics = ["posts/*?options=" + urllib.parse.quote(json.dumps({"query": {"filter": f}})) for f in filters]
    async with session.post(
        base + "/api/realtime", json={"clientId": client_id, "subscriptions": topics}
    ) as r:
        if r.status >= 300:
            raise RuntimeError(f"PocketBase subscribe: {r.status} {await r.text()}")

    async def read() -> None:
        async for raw in resp.content:
            now = time.perf_counter()
            line = raw.decode()
            if line.startswith("data:"):
                data = orjson.loads(line[5:])
                if data.get("action") == "create":
                    got(data["record"]["n"], now)

    return resp, asyncio.ensure_future(read())


# ---------------------------------------------------------------- run 1: fan-out latency


async def fanout(
    label: str, base: str, create_path: str, args: argparse.Namespace, *, bases: Sequence[str] = ()
) -> dict[str, Any]:
    """The fan-out run against one server. With `bases` (several processes of one server,
    each on its own port), the clients are spread over them in turn, and so are the writes."""
    spread = list(bases) or [base]
    opened_count = [0]
    starts: dict[int, float] = {}
    latencies: list[float] = []
    receipts = [0.0]

    def got(n: int, now: float) -> None:
        start = starts.get(n)
        if start is not None:
            latencies.append((now - start) * 1000)
            receipts[0] = max(receipts[0], now)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        opened: list[Any] = []
        gate = asyncio.Semaphore(50)

        async def open_one() -> None:
            async with gate:
                url = spread[opened_count[0] % len(spread)]
                opened_count[0] += 1
                if label == "Alyx":
                    opened.append(await alyx_client(session, url, [{"author": RT_AUTHOR}], got))
                else:
                    opened.append(await pocketbase_client(session, url, [f"author='{RT_AUTHOR}'"], got))

        await asyncio.gather(*(open_one() for _ in range(args.clients)))
        await asyncio.sleep(1.0)
        # The client process holds 1,000 connections' objects; with Python's default
        # collector thresholds its own collections stall every client's reads (the same
        # setting for both servers; the Alyx server tunes itself the same way).
        gc.collect()
        gc.freeze()
        threshold = gc.get_threshold()
        gc.set_threshold(10_000, 20, 100)
        first = time.perf_counter()
        writes = []
        for i in range(args.writes):
            n = 1_000_000 + i
            body = {"title": f"live {i}", "author": RT_AUTHOR, "n": n, "published": True}
            starts[n] = time.perf_counter()
            url = spread[i % len(spread)] + create_path
            writes.append(asyncio.ensure_future(session.post(url, json=body)))
            await asyncio.sleep(args.gap_ms / 1000)
        for resp in await asyncio.gather(*writes):
            if resp.status >= 300:
                raise RuntimeError(f"{label} write: {resp.status} {await resp.text()}")
            resp.release()
        expected = args.clients * args.writes
        deadline = time.perf_counter() + 30
        while len(latencies) < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        gc.set_threshold(*threshold)
        gc.unfreeze()
        for conn, reader in opened:
            reader.cancel()
            conn.close() if not asyncio.iscoroutinefunction(conn.close) else await conn.close()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "delivered": len(latencies),
        "expected": expected,
        "p50_ms": round(q[49], 1),
        "p95_ms": round(q[94], 1),
        "p99_ms": round(q[98], 1),
        "msgs_per_s": round(len(latencies) / max(receipts[0] - first, 1e-9)),
    }


# ---------------------------------------------------------------- run 2: CPU per change


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_change(target: Target, subs: int, args: argparse.Namespace) -> float:
    base = target.server.base_url
    counter = [0]

    def got(n: int, now: float) -> None:
        counter[0] += 1

    per_conn = subs // 100
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        opened = []
        for c in range(100):
            filters = [{"author": f"a{subs}-{c}-{k}"} for k in range(per_conn)]
            opened.append(await alyx_client(session, base, filters, got))
        await asyncio.sleep(0.5)
        before = cpu_seconds(target.server.process.pid)
        for i in range(args.cpu_writes):
            author = f"a{subs}-{i % 100}-{(i * 7) % per_conn}"
            body = {"title": "cpu", "author": author, "n": 2_000_000 + i}
            async with session.post(base + target.create_path, json=body) as resp:
                resp.raise_for_status()
        while counter[0] < args.cpu_writes:
            await asyncio.sleep(0.01)
        spent = cpu_seconds(target.server.process.pid) - before
        for ws, reader in opened:
            reader.cancel()
            await ws.close()
    return float(spent / args.cpu_writes * 1e6)


# ---------------------------------------------------------------- run 3: idle memory


async def idle_memory(label: str, target: Target, clients: int) -> float:
    await asyncio.sleep(1.0)
    before = target.server.rss_mib()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        opened: list[aiohttp.ClientWebSocketResponse | aiohttp.ClientResponse] = []
        for _ in range(clients):
            if label == "Alyx":
                ws = await session.ws_connect(
                    target.server.base_url.replace("http", "ws", 1) + "/api/realtime"
                )
                await ws.receive()
                opened.append(ws)
            else:
                resp = await session.get(target.server.base_url + "/api/realtime")
                await resp.content.readline()
                opened.append(resp)
        await asyncio.sleep(1.0)
        after = target.server.rss_mib()
        for conn in opened:
            if isinstance(conn, aiohttp.ClientWebSocketResponse):
                await conn.close()
            else:
                conn.close()
    return (after - before) * 1024 / clients


# ---------------------------------------------------------------- report


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    a, p = results["fanout"]["Alyx"], results["fanout"]["PocketBase"]
    lines = [
        f"Fan-out: {args.clients} clients, filter author = '{RT_AUTHOR}', "
        f"{args.writes} writes {args.gap_ms} ms apart",
        "",
        "| server | delivered | p50 | p95 | p99 | msgs/s |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in (("Alyx (WebSocket)", a), ("PocketBase (SSE)", p)):
        lines.append(
            f"| {label} | {r['delivered']:,}/{r['expected']:,} | {r['p50_ms']} ms | {r['p95_ms']} ms "
            f"| {r['p99_ms']} ms | {r['msgs_per_s']:,} |"
        )
    lines += ["", "CPU time of the Alyx server per change (one subscription concerned), 100 connections:", ""]
    lines += ["| subscriptions | CPU per change |", "|---|---|"]
    for subs, micro in results["cpu"].items():
        lines.append(f"| {int(subs):,} | {micro:.0f} µs |")
    cpu = list(results["cpu"].values())
    lines += ["", f"ratio 10,000 / 100: {cpu[-1] / cpu[0]:.2f}"]
    lines += ["", f"Memory per idle connection ({args.clients} connections):", ""]
    for label, kib in results["memory"].items():
        lines.append(f"- {label}: {kib:.1f} KiB")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--gap-ms", type=int, default=50)
    parser.add_argument("--cpu-writes", type=int, default=300)
    parser.add_argument("--skip-pocketbase", action="store_true")
    return parser.parse_args(argv)


def run(step: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(step())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    docs = sample_docs()
    results: dict[str, Any] = {"fanout": {}, "cpu": {}, "memory": {}}
    with ExitStack() as servers:
        port = free_port()
        alyx = start_alyx("Alyx", scaffold_alyx(port), port, docs)
        servers.callback(alyx.server.stop)
        results["memory"]["Alyx"] = run(lambda: idle_memory("Alyx", alyx, args.clients))
        results["fanout"]["Alyx"] = run(lambda: fanout("Alyx", alyx.server.base_url, alyx.create_path, args))
        print("Alyx fan-out:", results["fanout"]["Alyx"], flush=True)
        for subs in (100, 1000, 10_000):
            results["cpu"][subs] = run(lambda s=subs: cpu_per_change(alyx, s, args))  # type: ignore[misc]
            print(f"Alyx CPU per change with {subs} subscriptions: {results['cpu'][subs]:.0f} µs", flush=True)
        alyx.server.stop()
        if not args.skip_pocketbase:
            pb = start_pocketbase(ensure_pocketbase(), docs)
            servers.callback(pb.server.stop)
            results["memory"]["PocketBase"] = run(lambda: idle_memory("PocketBase", pb, args.clients))
            results["fanout"]["PocketBase"] = run(
                lambda: fanout("PocketBase", pb.server.base_url, pb.create_path, args)
            )
            print("PocketBase fan-out:", results["fanout"]["PocketBase"], flush=True)
    out = WORK / f"realtime-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    if "PocketBase" in results["fanout"]:
        print()
        print(report(results, args))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
