"""What the cross-process commit signals (alyx_server/db/notify.py) cost.

    .venv/bin/python bench/bench_commit_signal.py [--rounds 200000]

Prints, side by side:
- the request path: `Database.catch_up()` when nothing was committed elsewhere (one
  read of the shared counter), against `PRAGMA data_version` on the same connection
  (the other exact check), and the catch-up after a sibling committed one row;
- the writer path, per committed group: `CommitSignal.committed()` with 0, 1 and 3
  siblings listening (counter bump under flock, a stat of the run directory, a send
  per sibling), beside a group commit of one small write measured in the same run;
- the delay from the start of a write in one process to its event in the other's feed
  (the commit included), with the poller off.
Figures from a busy machine are noisy: rerun on a quiet one before quoting them.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alyx_server.db import Database
from alyx_server.db.notify import CommitSignal
from alyx_server.schema.model import Schema

# The change log and one table whose trigger logs its inserts, as the migrations make them.
SETUP = [
    "CREATE TABLE IF NOT EXISTS _alyx_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "collection TEXT NOT NULL, operation TEXT NOT NULL, doc_id, changed_fields TEXT, ts TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, title TEXT)",
    "CREATE TRIGGER IF NOT EXISTS notes_insert AFTER INSERT ON notes BEGIN "
    "INSERT INTO _alyx_changes (collection, operation, doc_id, ts) "
    "VALUES ('notes', 'INSERT', NEW.id, datetime('now')); END",
]


def per_call(fn: Callable[[], object], rounds: int) -> float:
    """Microseconds per call of `fn()`."""
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - started) / rounds * 1e6


async def open_db(path: Path, **kw: object) -> Database:
    db = await Database.open(path, Schema(), poll_interval=None, **kw)  # type: ignore[arg-type,unused-ignore]

    def setup(conn: sqlite3.Connection) -> None:
        for statement in SETUP:
            conn.execute(statement)

    await db.write(setup)
    return db


def insert(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO notes (title) VALUES ('x')")


def sibling(path: str, ready: object, stop: object) -> None:
    """A second process with its own Database: it only listens."""

    async def main() -> None:
        db = await Database.open(Path(path), Schema(), poll_interval=None)
        ready.set()  # type: ignore[attr-defined]
        while not stop.is_set():  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
        await db.close()

    asyncio.run(main())


async def request_path(path: Path, rounds: int) -> None:
    db = await open_db(path)
    other = await Database.open(path, Schema(), poll_interval=None)
    try:
        db.catch_up()
        quiet = per_call(db.catch_up, rounds)
        conn = db._loop_reader  # the connection catch_up would read with
        pragma = per_call(lambda: conn.execute("PRAGMA data_version").fetchone(), rounds)
        samples = []
        for _ in range(min(rounds, 2000) // 10):
            await other.write(insert)
            started = time.perf_counter()
            db.catch_up()
            samples.append((time.perf_counter() - started) * 1e6)
        print("request path, per authenticated request (µs):")
        print(f"  catch_up, nothing committed elsewhere  {quiet:8.2f}")
        print(f"  PRAGMA data_version (for comparison)   {pragma:8.2f}")
        print(f"  catch_up after a sibling's commit      {statistics.median(samples):8.2f} (median)")
    finally:
        await other.close()
        await db.close()


async def writer_path(path: Path, rounds: int) -> None:
    db = await open_db(path, announce=False)
    try:
        started = time.perf_counter()
        n = min(rounds, 5000) // 5
        for _ in range(n):
            await db.write(insert)
        group = (time.perf_counter() - started) / n * 1e6
    finally:
        await db.close()
    print("writer path, per committed group (µs):")
    print(f"  one small write, committed and acknowledged  {group:8.2f}")
    context = multiprocessing.get_context("spawn")
    for count in (0, 1, 3):
        stop = context.Event()
        children = []
        for _ in range(count):
            ready = context.Event()
            child = context.Process(target=sibling, args=(str(path), ready, stop))
            child.start()
            ready.wait(60)
            children.append(child)
        signal = CommitSignal(path)
        try:
            signal.committed()
            cost = per_call(signal.committed, min(rounds, 50_000))
        finally:
            signal.close()
            stop.set()
            for child in children:
                child.join(60)
        print(f"  committed() with {count} sibling(s)              {cost:8.2f}")


async def wake_delay(path: Path) -> None:
    db = await open_db(path)
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    child = context.Process(target=_writer_child, args=(str(path), ready, stop))
    seen: list[float] = []
    db.feed.subscribe(lambda event: seen.append(time.time()))
    child.start()
    try:
        await asyncio.to_thread(ready.wait, 60)
        end = time.monotonic() + 30
        while len(seen) < 200 and time.monotonic() < end:
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.to_thread(child.join, 60)
        await db.close()
    stamps = [float(line) for line in (path.parent / "stamps").read_text().split()]
    delays = sorted((s - c) * 1e3 for s, c in zip(seen, stamps, strict=False))
    if delays:
        p50, p95 = delays[len(delays) // 2], delays[int(len(delays) * 0.95)]
        print(
            f"write started in one process -> its event in the other (poller off): "
            f"p50 {p50:.3f} ms, p95 {p95:.3f} ms"
        )


def _writer_child(path: str, ready: object, stop: object) -> None:
    async def main() -> None:
        db = await Database.open(Path(path), Schema(), poll_interval=None)
        ready.set()  # type: ignore[attr-defined]
        stamps = []
        for _ in range(200):
            stamps.append(time.time())  # before the write: the delay includes its commit
            await db.write(insert)
            await asyncio.sleep(0.005)
        Path(path).with_name("stamps").write_text("\n".join(map(repr, stamps)))
        await db.close()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(request_path(Path(folder) / "a.db", args.rounds))
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(writer_path(Path(folder) / "b.db", args.rounds))
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(wake_delay(Path(folder) / "c.db"))
    print(f"(pid {os.getpid()}; a shared, busy machine gives noisy figures: rerun when quiet)")


if __name__ == "__main__":
    main()
