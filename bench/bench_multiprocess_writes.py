"""Writes from several processes into one SQLite file: how their writers should meet.

    python bench/bench_multiprocess_writes.py [--seconds 3] [--processes 2 4] [--tasks 25]
        [--synchronous normal]

Every process runs `--tasks` concurrent tasks, each inserting one small document at a
time (one INSERT and its `_alyx_changes` row, like a REST create) through a group-commit
writer, for `--seconds`, on one fresh file per cell. Printed per cell: writes per second
(all processes together), p50 and p99 latency of one write (submit to acknowledgement),
failed writes (a "database is locked" after the 5 s busy timeout), writes per
transaction.

    single        one process with the same number of tasks as all the processes of the
                  row below it together: the baseline
    lock file     N processes, the real writer as the server runs it: writers take turns
                  through an flock on the database's write lock file, then BEGIN IMMEDIATE
    busy handler  N processes, the real writer without the lock file: BEGIN IMMEDIATE
                  waits in SQLite's busy handler (`busy_timeout`, sleeps of 1, 2, 5, ... up
                  to 100 ms between tries), as every Alyx process did before
    retry loop    N processes, the real writer with `busy_timeout = 0` and BEGIN IMMEDIATE
                  retried from Python after 0.1 ms, doubling to at most 2 ms
    socket        N processes hand their writes over a Unix socket (length-prefixed JSON
                  frames, many in flight per connection) to one writer process, which runs
                  them through its own group-commit writer and answers each once committed
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alyx_server.db import ChangeFeed, insert_doc
from alyx_server.db.checkpoint import Checkpointer
from alyx_server.db.connection import open_connection
from alyx_server.db.writer import WriteQueue
from alyx_server.schema.ddl import collection_sql
from alyx_server.schema.model import Collection, Default, Field, FieldType, Index
from alyx_server.tools.filelocks import FileLock
from alyx_server.tools.processes import run_dir

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
CHANGES_DDL = (
    "CREATE TABLE _alyx_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, "
    "operation TEXT NOT NULL, doc_id, changed_fields TEXT, ts TEXT NOT NULL)",
    "CREATE INDEX idx_alyx_changes_ts ON _alyx_changes (ts)",
)
MODES = ("single", "lock file", "busy handler", "retry loop", "socket")
BUSY_DEADLINE = 5.0  # seconds, as the busy timeout of every connection


def create_file(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for sql in (*CHANGES_DDL, *collection_sql(POSTS)):
        conn.execute(sql)
    conn.close()


class RetryWriteQueue(WriteQueue):
    """The real writer, BEGIN IMMEDIATE retried from Python on SQLITE_BUSY."""

    def _begin(self) -> None:
        conn = self._conn
        delay = 0.0001
        deadline = time.monotonic() + BUSY_DEADLINE
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)


def open_writer(
    path: Path, mode: str, synchronous: str, loop: asyncio.AbstractEventLoop
) -> tuple[WriteQueue, Checkpointer]:
    """A writer set up as `Database.open` sets it up, waiting for other processes per `mode`."""
    conn = open_connection(path, synchronous=synchronous)  # type: ignore[arg-type]
    feed = ChangeFeed(loop, high_water=0)
    checkpointer = Checkpointer(path, synchronous=synchronous)  # type: ignore[arg-type]
    lock = FileLock(run_dir(path) / "write.lock") if mode in ("single", "lock file", "socket") else None
    kind = WriteQueue
    if mode == "retry loop":
        conn.execute("PRAGMA busy_timeout = 0")
        kind = RetryWriteQueue
    writer = kind(conn, feed, loop, checkpointer=checkpointer, write_lock=lock)
    checkpointer.start()
    writer.start()
    return writer, checkpointer


async def close_writer(writer: WriteQueue, checkpointer: Checkpointer) -> None:
    writer.close()
    await asyncio.to_thread(writer.join)
    await asyncio.to_thread(checkpointer.close)


# -- the socket prototype ------------------------------------------------------------------------
def _frame(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message)
    return len(body).to_bytes(4, "big") + body


async def serve_writes(path: Path, socket_path: str, synchronous: str, ready: Any, stop: Any) -> None:
    """The writer process: answer each insert request once its group has committed."""
    loop = asyncio.get_running_loop()
    writer, checkpointer = open_writer(path, "socket", synchronous, loop)

    async def connection(reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        def answer(request: int, future: asyncio.Future[Any]) -> None:
            error = future.exception()
            if error is None:
                stream.write(_frame({"i": request, "ok": True, "r": future.result()}))
            else:
                stream.write(_frame({"i": request, "ok": False, "r": str(error)}))

        while True:
            try:
                header = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(header, "big"))
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            message = orjson.loads(body)
            future = writer.submit(functools.partial(insert_doc, collection=POSTS, data=message["d"]))
            future.add_done_callback(functools.partial(answer, message["i"]))
        stream.close()

    server = await asyncio.start_unix_server(connection, socket_path)
    ready.set()
    await asyncio.to_thread(stop.wait)
    server.close()
    await close_writer(writer, checkpointer)


class SocketWriter:
    """A worker's end of the socket: many requests in flight, answers matched by id."""

    def __init__(self, reader: asyncio.StreamReader, stream: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._stream = stream
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._task = asyncio.ensure_future(self._read())

    async def insert(self, data: dict[str, Any]) -> Any:
        self._next += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[self._next] = future
        self._stream.write(_frame({"i": self._next, "d": data}))
        return await future

    async def _read(self) -> None:
        while True:
            header = await self._reader.readexactly(4)
            message = orjson.loads(await self._reader.readexactly(int.from_bytes(header, "big")))
            future = self._pending.pop(message["i"])
            if message["ok"]:
                future.set_result(message["r"])
            else:
                future.set_exception(sqlite3.OperationalError(message["r"]))

    async def close(self) -> None:
        self._task.cancel()
        self._stream.close()


# -- one measuring process -------------------------------------------------------------------------
async def load(
    path: Path, mode: str, synchronous: str, tasks: int, seconds: float, socket_path: str, start: Any
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    if mode == "socket":
        reader, stream = await asyncio.open_unix_connection(socket_path)
        remote = SocketWriter(reader, stream)

        async def write(doc: dict[str, Any]) -> Any:
            return await remote.insert(doc)
    else:
        writer, checkpointer = open_writer(path, mode, synchronous, loop)

        async def write(doc: dict[str, Any]) -> Any:
            return await writer.submit(functools.partial(insert_doc, collection=POSTS, data=doc))

    latencies = array("d")
    failed = 0
    await asyncio.to_thread(start.wait)
    deadline = time.perf_counter() + seconds
    pid = os.getpid()

    async def task(t: int) -> None:
        nonlocal failed
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            begun = time.perf_counter()
            try:
                await write({"title": f"p{pid}-{t}-{i}", "author": f"u{t % 10}", "n": i})
            except sqlite3.Error:
                failed += 1
                continue
            latencies.append(time.perf_counter() - begun)

    began = time.perf_counter()
    await asyncio.gather(*(task(t) for t in range(tasks)))
    elapsed = time.perf_counter() - began
    groups = writes = 0
    if mode == "socket":
        await remote.close()
    else:
        stats = writer.stats
        groups, writes = stats.groups, stats.writes
        await close_writer(writer, checkpointer)
    return {
        "latencies": latencies.tobytes(),
        "failed": failed,
        "elapsed": elapsed,
        "groups": groups,
        "writes": writes,
    }


def _loader(args: tuple[Any, ...], results: Any) -> None:
    results.put(asyncio.run(load(*args)))


def _server(args: tuple[Any, ...]) -> None:
    asyncio.run(serve_writes(*args))


def run_cell(
    workdir: Path, cell: int, mode: str, processes: int, tasks: int, seconds: float, synchronous: str
) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    path = workdir / f"cell{cell}.db"
    create_file(path)
    socket_path = str(run_dir(path) / "writes.sock")
    start = ctx.Barrier(processes)
    results = ctx.Queue()
    server = None
    stop = ctx.Event()
    if mode == "socket":
        ready = ctx.Event()
        server = ctx.Process(target=_server, args=((path, socket_path, synchronous, ready, stop),))
        server.start()
        if not ready.wait(30):
            raise RuntimeError("the writer process did not start")
    args = (path, mode, synchronous, tasks, seconds, socket_path, start)
    children = [ctx.Process(target=_loader, args=(args, results)) for _ in range(processes)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=seconds + 120) for _ in children]
    for child in children:
        child.join()
    if server is not None:
        stop.set()
        server.join()
        groups = writes = 0
    else:
        groups = sum(o["groups"] for o in outcomes)
        writes = sum(o["writes"] for o in outcomes)
    latencies = array("d")
    for outcome in outcomes:
        latencies.frombytes(outcome["latencies"])
    ordered = sorted(latencies)
    quantiles = statistics.quantiles(ordered, n=100) if len(ordered) > 1 else [0.0] * 99
    conn = sqlite3.connect(path)
    stored = conn.execute("SELECT count(*) FROM posts").fetchone()[0]
    conn.close()
    if stored < len(ordered):
        raise RuntimeError(f"{mode}: {len(ordered)} writes acknowledged but {stored} stored")
    return {
        "rate": len(ordered) / max(o["elapsed"] for o in outcomes),
        "p50": quantiles[49] * 1000,
        "p99": quantiles[98] * 1000,
        "failed": sum(o["failed"] for o in outcomes),
        "per_txn": writes / groups if groups else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each cell")
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4], help="writing processes")
    parser.add_argument("--tasks", type=int, default=25, help="concurrent writes per process")
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"\n## Writes from several processes ({args.seconds:g} s per cell, "
        f"{args.tasks} tasks per process, synchronous={args.synchronous})\n"
    )
    print("| processes | how writers meet | writes/s | p50 ms | p99 ms | failed | writes per txn |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    cell = 0
    with tempfile.TemporaryDirectory(prefix="alyx-bench-") as tmp:
        for processes in args.processes:
            for mode in args.modes:
                cell += 1
                count = 1 if mode == "single" else processes
                tasks = args.tasks * processes if mode == "single" else args.tasks
                r = run_cell(Path(tmp), cell, mode, count, tasks, args.seconds, args.synchronous)
                label = f"{mode} ({tasks} tasks)" if mode == "single" else mode
                print(
                    f"| {processes} | {label} | {r['rate']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                    f"{r['failed']:,.0f} | {r['per_txn']:.1f} |",
                    flush=True,
                )
    print(f"\nload average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
