"""Commit -> after-write hook function start: p50 and p95 over N writes.

Runs the real application in this process on a loopback port (aiohttp's TestServer) with
one Python function hooked on `posts` creates (`on:` in its manifest). Each create's
commit time is its `_alyx_changes.ts` (written by the change trigger inside the write's
transaction, millisecond resolution); the hook function notes `time.time()` as its first
statement and stores it in a `seen` document. The latency is the difference: the change
feed waking the hook, its read of the change and captured document, and the dispatch to
a warm worker. Writes are sent one at a time with a short pause (`--gap`), so the figure
is latency, not a queue's backlog. Target: p95 < 50 ms.

PocketBase's record hooks (pb_hooks/*.pb.js) run inside the request that writes, before
its response, so "commit to hook start" is not a comparable figure there; this script
measures Alyx only.

    .venv/bin/python bench/bench_hooks.py [--writes 1000] [--gap 0.005]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from alyx_server.app import create_app
from alyx_server.config import default_settings

SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
    rules: { create: "true", read: "true" }
  seen:
    fields:
      id:        { type: int, primary: true, default: auto }
      change_id: { type: int }
      started:   { type: float }
    rules: { read: "true" }
"""
HOOK = """\
import time

from alyx_functions import define_function


async def handler(event, ctx):
    started = time.time()
    await ctx.db.seen.create({"change_id": event["change_id"], "started": started})


hook = define_function(handler=handler)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(root: Path, writes: int, gap: float) -> list[float]:
    (root / "functions").mkdir(parents=True)
    (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    (root / "functions" / "hook.py").write_text(HOOK, encoding="utf-8")
    (root / "functions" / "hook.yaml").write_text("on: { collection: posts, events: [create] }\n")
    settings = default_settings(root, "dev", overrides={"functions.pool.min_warm": 1})
    server = TestServer(create_app(settings))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(writes):
                async with session.post(
                    server.make_url("/api/collections/posts"), json={"title": f"p{i}"}
                ) as r:
                    assert r.status == 201, await r.text()
                await asyncio.sleep(gap)
            db = root / "data" / "alyx.db"
            deadline = time.monotonic() + 120
            while True:
                with sqlite3.connect(db) as conn:
                    done = conn.execute("SELECT count(*) FROM seen").fetchone()[0]
                if done >= writes or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
    finally:
        await server.close()
    with sqlite3.connect(root / "data" / "alyx.db") as conn:
        rows = conn.execute(
            "SELECT c.ts, s.started FROM seen s JOIN _alyx_changes c ON c.id = s.change_id"
        ).fetchall()
    return [(started - datetime.fromisoformat(ts).timestamp()) * 1000 for ts, started in rows]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--gap", type=float, default=0.005, help="seconds between writes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alyx-bench-hooks-") as folder:
        latencies = asyncio.run(measure(Path(folder) / "project", args.writes, args.gap))
    shown = f"{len(latencies)} of {args.writes} writes"
    print(f"commit -> hook function start, {shown} (ms; the change's ts has 1 ms resolution)")
    print("| server | p50 | p95 | max |")
    print("|---|---|---|---|")
    print(
        f"| Alyx | {statistics.median(latencies):.1f} | {percentile(latencies, 0.95):.1f} "
        f"| {max(latencies):.1f} |"
    )
    print("| PocketBase | n/a: its record hooks run inside the writing request, before the response |||")


if __name__ == "__main__":
    main()
