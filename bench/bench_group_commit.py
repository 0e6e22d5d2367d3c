"""Group commit vs one transaction per write, and point reads on the loop vs a thread.

    python bench/bench_group_commit.py [--seconds 1.0]

Writes: inserts per second through `Database.write(insert_doc)` with 1, 10 and 100
concurrent writer tasks, under `synchronous=normal` and `full`, with group commit on
and off (one transaction per write). Each cell uses a fresh file with the change
triggers in place, so the figures include the change feed's cost.

Reads: a point read by primary key and a 20-row list with a count, run through
`read_now` (on the event-loop thread) and `read` (the reader thread pool), one at a
time (latency) and from 50 concurrent tasks (throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alyx_server.db import Database, ListQuery, get_doc, insert_doc, list_docs, parse_filter
from alyx_server.schema.ddl import collection_sql
from alyx_server.schema.model import Collection, Default, Field, FieldType, Index, Schema

POSTS = Collection(
    "posts",
    (
        Field("id", FieldType.UUID, primary=True, default=Default("auto")),
        Field("title", FieldType.STRING),
        Field("author", FieldType.STRING),
        Field("n", FieldType.INT),
        Field("published", FieldType.BOOL, default=Default("literal", False)),
        Field("created_at", FieldType.TIMESTAMP, default=Default("now")),
    ),
    indexes=(Index("idx_posts_author_n", ("author", "n")),),
)
SCHEMA = Schema((POSTS,))
CHANGES_DDL = (
    "CREATE TABLE _alyx_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, "
    "operation TEXT NOT NULL, doc_id, changed_fields TEXT, ts TEXT NOT NULL)",
    "CREATE INDEX idx_alyx_changes_ts ON _alyx_changes (ts)",
)


def create_file(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for sql in (*CHANGES_DDL, *collection_sql(POSTS)):
        conn.execute(sql)
    conn.close()


async def measure_writes(
    path: Path, synchronous: str, group: bool, writers: int, seconds: float
) -> tuple[float, float]:
    """(inserts per second, mean writes per transaction)."""
    create_file(path)
    db = await Database.open(path, SCHEMA, synchronous=synchronous, group_commit=group, poll_interval=None)  # type: ignore[arg-type]
    done = 0
    deadline = time.perf_counter() + seconds

    async def writer(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            doc = {"title": f"t{w}-{i}", "author": f"u{w % 10}", "n": i}
            await db.write(functools.partial(insert_doc, collection=POSTS, data=doc))
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    stats = db.stats
    await db.close()
    return done / elapsed, stats.writes / max(stats.groups, 1)


async def bench_writes(workdir: Path, seconds: float) -> None:
    print(f"\n## Group commit: inserts/s ({seconds:g} s per cell)\n")
    print("| synchronous | writers | one txn per write | group commit | ratio | writes per txn |")
    print("|---|---:|---:|---:|---:|---:|")
    cell = 0
    for synchronous in ("normal", "full"):
        for writers in (1, 10, 100):
            rates = []
            for group in (False, True):
                cell += 1
                rate, per_txn = await measure_writes(
                    workdir / f"w{cell}.db", synchronous, group, writers, seconds
                )
                rates.append(rate)
            print(
                f"| {synchronous} | {writers} | {rates[0]:,.0f} | {rates[1]:,.0f} | "
                f"{rates[1] / rates[0]:.1f}x | {per_txn:.1f} |"
            )


async def _time_sequential(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    """Mean microseconds per call, one call at a time."""
    started = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - started) / n * 1e6


async def _throughput(fn: Callable[[], Awaitable[Any]], n: int, tasks: int = 50) -> float:
    """Calls per second from `tasks` concurrent tasks."""
    per_task = n // tasks

    async def run() -> None:
        for _ in range(per_task):
            await fn()

    started = time.perf_counter()
    await asyncio.gather(*(run() for _ in range(tasks)))
    return per_task * tasks / (time.perf_counter() - started)


async def bench_reads(workdir: Path, rows: int = 10_000) -> None:
    path = workdir / "reads.db"
    create_file(path)
    db = await Database.open(path, SCHEMA, poll_interval=None)
    docs = [{"title": f"t{i}", "author": f"u{i % 10}", "n": i, "published": i % 2 == 0} for i in range(rows)]
    ids = await db.write(lambda c: [insert_doc(c, POSTS, d)["id"] for d in docs])
    query = ListQuery(POSTS, [parse_filter(POSTS, "author:eq:u7")], sort=[("n", True)], limit=20)

    async def point_now() -> Any:
        return db.read_now(lambda c: get_doc(c, POSTS, ids[1234]))

    async def point_pool() -> Any:
        return await db.read(lambda c: get_doc(c, POSTS, ids[1234]))

    async def list_now() -> Any:
        return db.read_now(lambda c: list_docs(c, query))

    async def list_pool() -> Any:
        return await db.read(lambda c: list_docs(c, query))

    print(f"\n## Reads ({rows:,} rows)\n")
    print("| read | path | µs per call (one at a time) | calls/s (50 tasks) |")
    print("|---|---|---:|---:|")
    for label, now, pool, n in (
        ("point by id", point_now, point_pool, 20_000),
        ("list 20 + count", list_now, list_pool, 4_000),
    ):
        for path_name, fn in (("read_now (loop)", now), ("read (pool)", pool)):
            await fn()
            latency = statistics.median([await _time_sequential(fn, n // 5) for _ in range(3)])
            rate = await _throughput(fn, n)
            print(f"| {label} | {path_name} | {latency:,.0f} | {rate:,.0f} |")
    await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of each write cell")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}"
    )
    with tempfile.TemporaryDirectory(prefix="alyx-bench-") as tmp:
        await bench_writes(Path(tmp), args.seconds)
        await bench_reads(Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
