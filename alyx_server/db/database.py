"""`Database`: the async facade over one SQLite file.

    reads   `await db.read(fn)`   fn(conn) on a small pool of reader threads (scans)
            `db.read_now(fn)`     fn(conn) right on the event-loop thread (point reads)
            `await db.read_small(fn)`  on the loop while fn stays within a budget of
                                  SQLite VM steps, else again on a reader thread (lists)
    writes  `await db.write(fn)`  fn(conn) on the writer thread, in its own savepoint,
                                  grouped with concurrent writes into one transaction
            `await db.transaction([fn, ...])`  several functions, one atomic unit
            `await db.run_exclusive(fn)`       fn(conn) alone on the writer, no group,
                                               no transaction (migrations run their own)
    feed    `db.feed.subscribe(cb)` / `async for e in db.feed.events()`

A point read by primary key takes tens of microseconds, less than the hop to a thread
and back, so `read_now` serves it without leaving the loop; anything that may scan
(counts, rule checks per row) goes to the pool so it never blocks the loop. Lists do
not know their cost in advance: `read_small` starts them on the loop with SQLite's
progress handler armed, and a query that runs past `LOOP_READ_STEPS` virtual-machine
steps is interrupted and run again on a reader thread. A page of 20 from an index with
its count takes a few hundred steps (about 60 µs); the budget bounds the time a list
can hold the loop to about a millisecond. docs/database.md gives the measurements.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from alyx_server.db.changes import ChangeFeed, ChangePoller, latest_change_id, prune_changes
from alyx_server.db.checkpoint import Checkpointer
from alyx_server.db.connection import Synchronous, open_connection
from alyx_server.db.notify import CommitSignal
from alyx_server.db.query import LOOP_CHECK_WORK, LoopWorkExceeded
from alyx_server.db.writer import GroupListener, WriteQueue, WriteStats
from alyx_server.errors import NotFound
from alyx_server.schema.model import Collection, Schema
from alyx_server.tools.filelocks import FileLock
from alyx_server.tools.processes import run_dir
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock, format_timestamp

__all__ = ["Database"]

T = TypeVar("T")
ConnFn = Callable[[sqlite3.Connection], T]

# SQLite virtual-machine steps a read may take on the loop before it moves to a thread:
# measured at 9 to 28 steps per microsecond for index searches and scans here, so about
# 0.3 to 1 ms. The progress handler is how SQLite itself offers to bound a statement;
# no library wraps it.
LOOP_READ_STEPS = 10_000


class _ReaderPool:
    """Reader threads, each with its own connection (opened lazily in that thread)."""

    def __init__(self, path: Path, size: int) -> None:
        self._path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="alyx-reader")

    def run(self, fn: ConnFn[T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_connection(self._path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return fn(conn)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()


class Database:
    """One SQLite file: reader connections, one writer thread, the change feed.

    Build it with `await Database.open(...)`; `await db.close()` finishes every queued
    write (each acknowledged write is committed) and closes the connections.
    """

    def __init__(
        self,
        path: Path,
        schema: Schema,
        *,
        loop: asyncio.AbstractEventLoop,
        writer: WriteQueue,
        feed: ChangeFeed,
        readers: _ReaderPool,
        loop_reader: sqlite3.Connection,
        checkpointer: Checkpointer | None = None,
        clock: Clock,
        changes_retention: float,
        poll_interval: float | None,
        commits: CommitSignal | None = None,
    ) -> None:
        self.path = path
        self._schema = schema
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._writer = writer
        self.feed = feed
        self._readers = readers
        self._loop_reader = loop_reader
        self.checkpointer = checkpointer
        self.clock = clock
        self.changes_retention = changes_retention
        self.poller = ChangePoller(
            feed,
            self.read,
            interval=poll_interval or 0.1,
            prune=self.prune_changes,
            prune_every=60.0,
        )
        if poll_interval is not None:
            self.poller.start()
        self.commits = commits
        if commits is not None:
            commits.listen(loop, self.catch_up)
        self._closed = False
        # Lists that started on the loop and ran past their step budget (see read_small).
        self.loop_reads_moved = 0

    @classmethod
    async def open(
        cls,
        path: str | Path,
        schema: Schema,
        *,
        synchronous: Synchronous = "normal",
        clock: Clock = SYSTEM_CLOCK,
        changes_retention: float = 86400.0,
        readers: int = 4,
        group_commit: bool = True,
        max_group: int = 256,
        poll_interval: float | None = 0.1,
        background_checkpoints: bool = True,
        write_lock: bool = True,
        announce: bool = True,
    ) -> Database:
        """Open (creating if needed) the file at `path`.

        `changes_retention` is in seconds; `poll_interval` (seconds) drives the poller that
        publishes other processes' writes and prunes old changes (None: no background
        task, call `poll_changes` / `prune_changes` yourself). `group_commit=False` runs
        one transaction per write (for comparison in benchmarks). `background_checkpoints`
        moves WAL checkpoints off the writer thread (see checkpoint.py); False leaves
        them to SQLite's automatic checkpoint on commit. `write_lock=False` leaves the
        writers of several processes to meet in SQLite's busy handler instead of taking
        turns through the lock file (see writer.py; for comparison in benchmarks).
        `announce` tells the other processes on the file about each commit and listens
        for theirs (notify.py); False leaves their changes to the poller.
        """
        loop = asyncio.get_running_loop()
        file = Path(path)
        conn = await asyncio.to_thread(open_connection, file, synchronous=synchronous)
        try:
            loop_reader = await asyncio.to_thread(open_connection, file, readonly=True)
        except BaseException:
            conn.close()
            raise
        feed = ChangeFeed(loop, high_water=latest_change_id(conn))
        checkpointer = Checkpointer(file, synchronous=synchronous) if background_checkpoints else None
        lock = FileLock(run_dir(file) / "write.lock") if write_lock else None
        commits = CommitSignal(file) if announce else None
        writer = WriteQueue(
            conn,
            feed,
            loop,
            group_commit=group_commit,
            max_group=max_group,
            checkpointer=checkpointer,
            write_lock=lock,
            announce=commits.committed if commits is not None else None,
        )
        if checkpointer is not None:
            checkpointer.start()
        writer.start()
        return cls(
            file,
            schema,
            loop=loop,
            writer=writer,
            feed=feed,
            readers=_ReaderPool(file, readers),
            loop_reader=loop_reader,
            checkpointer=checkpointer,
            clock=clock,
            changes_retention=changes_retention,
            poll_interval=poll_interval,
            commits=commits,
        )

    # -- schema ------------------------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        return self._schema

    def set_schema(self, schema: Schema) -> None:
        """Swap the live schema (after a migration); later reads and writes use it."""
        self._schema = schema

    def collection(self, name: str) -> Collection:
        """The collection called `name`, or NotFound COLLECTION_NOT_FOUND listing the known ones."""
        found = self._schema.get(name)
        if found is None:
            known = ", ".join(self._schema.names) or "(none)"
            raise NotFound(
                f"unknown collection {name!r}; collections are: {known}",
                code="COLLECTION_NOT_FOUND",
            )
        return found

    # -- reads ---------------------------------------------------------------------------------
    async def read(self, fn: ConnFn[T]) -> T:
        """Run `fn(conn)` on a reader thread (for anything that may scan)."""
        self._check_open()
        return await self._loop.run_in_executor(self._readers.executor, self._readers.run, fn)

    def read_now(self, fn: ConnFn[T]) -> T:
        """Run `fn(conn)` on the loop thread itself: for point reads by key only."""
        self._check_on_loop("read_now")
        return fn(self._loop_reader)

    def _check_on_loop(self, method: str) -> None:
        self._check_open()
        if threading.get_ident() != self._loop_thread:
            raise RuntimeError(f"{method} must be called on the event loop thread")

    async def read_small(self, fn: ConnFn[T], *, steps: int = LOOP_READ_STEPS) -> T:
        """Run `fn(conn)` on the loop if it finishes within `steps` VM steps, else on a thread.

        `fn` must only read: when it runs over its budget it is interrupted (its statement
        and read transaction end) and run again from the start on a reader thread. Row
        checks in Python have their own budget (`LOOP_CHECK_WORK`): one that runs out
        raises LoopWorkExceeded, which moves the read to a thread the same way.
        """
        self._check_on_loop("read_small")
        conn = self._loop_reader
        overran = False

        def stop() -> int:
            nonlocal overran
            overran = True
            return 1

        conn.set_progress_handler(stop, steps)
        work = LOOP_CHECK_WORK.set([0])
        try:
            result = fn(conn)
        except sqlite3.OperationalError:
            if not overran:
                raise
        except LoopWorkExceeded:
            overran = True
        else:
            if not overran:
                return result
        finally:
            LOOP_CHECK_WORK.reset(work)
            conn.set_progress_handler(None, 0)
            if conn.in_transaction:
                conn.rollback()
        self.loop_reads_moved += 1
        return await self.read(fn)

    # -- writes --------------------------------------------------------------------------------
    async def write(self, fn: ConnFn[T]) -> T:
        """Run `fn(conn)` on the writer in its own savepoint; returns once committed."""
        return await self._writer.submit(fn)

    async def transaction(self, fns: ConnFn[T] | Sequence[ConnFn[Any]]) -> Any:
        """Run one function, or several in order, as one atomic unit; all or nothing.

        With a sequence, returns the list of results; the first error is raised, with a
        note saying which function (by index) failed, and nothing is written.
        """
        if callable(fns):
            return await self.write(fns)
        steps = list(fns)

        def run_all(conn: sqlite3.Connection) -> list[Any]:
            results = []
            for index, step in enumerate(steps):
                try:
                    results.append(step(conn))
                except Exception as e:
                    e.add_note(f"operation {index} of the transaction failed; nothing was written")
                    raise
            return results

        return await self.write(run_all)

    async def run_exclusive(self, fn: ConnFn[T]) -> T:
        """Run `fn(conn)` alone on the writer connection, outside any transaction.

        For migrations: `fn` issues its own BEGIN/COMMIT and PRAGMA foreign_keys. Writes
        queued before it commit first; writes queued after it wait for it.
        """
        return await self._writer.submit(fn, exclusive=True)

    @property
    def stats(self) -> WriteStats:
        """Writer counters: groups (transactions), writes, max group size."""
        return self._writer.stats

    def add_group_listener(self, listener: GroupListener) -> None:
        """Observe every committed group: `listener(size, seconds)` on the writer thread."""
        self._writer.add_group_listener(listener)

    # -- change feed ---------------------------------------------------------------------------
    async def poll_changes(self) -> int:
        """Publish changes committed by other processes now (the poller does it periodically)."""
        return await self.poller.poll_once()

    def catch_up(self) -> None:
        """Publish now, on the loop thread, every change another process committed before
        this call; after it, no subscriber (a cache) holds what such a commit made stale.

        Costs one read of the shared commit counter when nothing new was committed
        elsewhere (notify.py); otherwise it reads the change log on the loop. Writers
        outside Alyx announce nothing: the poller finds theirs.
        """
        commits = self.commits
        if commits is None:
            return
        seen = commits.unseen()
        if seen is None or self._closed:
            return
        self.feed.collect_now(self._loop_reader)
        commits.seen(seen)

    async def prune_changes(self, now: datetime | None = None) -> int:
        """Delete published change rows older than `changes_retention`; returns the count.

        `now` (a datetime) defaults to the database clock.
        """
        cutoff = format_timestamp((now or self.clock.now()) - timedelta(seconds=self.changes_retention))
        feed = self.feed
        return await self.write(lambda conn: prune_changes(conn, before=cutoff, up_to_id=feed.high_water))

    # -- lifecycle -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the database is closed")

    async def close(self) -> None:
        """Stop the poller, commit every queued write, close every connection."""
        if self._closed:
            return
        self._closed = True
        await self.poller.stop()
        self._writer.close()
        await asyncio.to_thread(self._writer.join)
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.close)
        await asyncio.to_thread(self._readers.close)
        if self.commits is not None:
            self.commits.close()
        self._loop_reader.close()
        # Let the acknowledgements and events the writer scheduled last run.
        await asyncio.sleep(0)
