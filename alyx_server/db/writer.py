"""The single writer thread: every write to the database goes through one `WriteQueue`.

SQLite allows one writer at a time, and a commit costs a WAL append plus, under
`synchronous=full`, an fsync. The writer takes the first queued write, drains whatever
else is already queued (up to `max_group`), and runs them as one group:

    BEGIN IMMEDIATE
      SAVEPOINT / fn(conn) / RELEASE            for each write
      (ROLLBACK TO + RELEASE when fn raises: only that write fails)
    COMMIT
    publish the group's change events, then acknowledge every write

so N concurrent writes share one commit (group commit) and a failing write does not
fail its neighbours. The writes submitted during one turn of the event loop reach the
writer together, in one queue item handed over at the end of that turn: one wake of the
writer thread per turn instead of one per write, and the requests a turn parsed commit
in the same group (a refresh's CPU, docs/benchmarks.md). The writer also notes whether
the group appended to the change log (`_alyx_changes`' AUTOINCREMENT counter, read after
BEGIN and before COMMIT): only such a group is announced to the other processes on the
file (`announce`, db/notify.py), since they have nothing to catch up on after the others
(a refresh rotating a session, a rate limit counted). A write is acknowledged only after
COMMIT returned, i.e. once it is as durable as `synchronous` makes it. If BEGIN or
COMMIT fails, the whole group fails with that error. Exclusive jobs (migrations) run
alone, outside any group, and manage their own transaction.

Several processes on one file (`alyx serve --workers N`, or two servers started by
hand) each have their own writer, and SQLite lets one of them write at a time. Their
writers take turns through the database's write lock file (`write_lock`, an flock in
the run directory, see tools/filelocks.py): a writer holds it from before `BEGIN
IMMEDIATE` to after `COMMIT`, and a writer waiting for it sleeps in the kernel and
starts the moment the other releases it. Without it, `BEGIN IMMEDIATE` meets the other
process's transaction and SQLite's busy handler sleeps 1, 2, 5, ... up to 100 ms between
tries; docs/benchmarks.md ("Writes from several processes") compares both, and one
writer process fed over a Unix socket. While a process waits, its queue fills, so the
next group is bigger: the processes share the commits as one writer's tasks do. The
busy timeout stays as the backstop for writers outside Alyx (the CLI, a sqlite3 shell),
which do not take the lock file.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from alyx_server.db.changes import ChangeFeed
from alyx_server.db.checkpoint import LOG_SIZE_LIMIT, Checkpointer
from alyx_server.errors import AlyxError
from alyx_server.schema.system_tables import CHANGES_TABLE
from alyx_server.tools.filelocks import FileLock

__all__ = ["GroupListener", "WriteQueue", "WriteStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")
GroupListener = Callable[[int, float], None]
Outcome = tuple["asyncio.Future[Any]", bool, Any]
_SAVEPOINT = "alyx_write"
_CHANGE_LOG_END = f"SELECT seq FROM sqlite_sequence WHERE name = '{CHANGES_TABLE}'"


@dataclass(slots=True)
class WriteStats:
    """Counters of the writer: transactions (groups), writes, and how big groups get."""

    groups: int = 0
    writes: int = 0
    failed_writes: int = 0
    failed_groups: int = 0
    max_group_size: int = 0
    exclusive: int = 0


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    exclusive: bool = False


_STOP = object()


def _refusal(error: sqlite3.Error) -> Exception:
    """What the writes of a group that could not begin fail with.

    Alyx's own writers take turns (see the module docstring), so a write lock still held
    after the busy timeout belongs to a writer outside the server: a 503 saying so.
    """
    if getattr(error, "sqlite_errorcode", 0) & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return error
    refusal = AlyxError(
        "the database is locked by a process outside this server (an alyx command or a sqlite3 "
        "shell holding a write transaction); try again when it has finished",
        code="UNAVAILABLE",
        status=503,
    )
    refusal.__cause__ = error
    return refusal


def _settle(outcomes: list[Outcome]) -> None:
    """Resolve futures on the loop thread (a caller that gave up is skipped)."""
    for future, ok, value in outcomes:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class WriteQueue:
    """Owns the writer connection and the thread that runs every write on it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        feed: ChangeFeed,
        loop: asyncio.AbstractEventLoop,
        *,
        group_commit: bool = True,
        max_group: int = 256,
        checkpointer: Checkpointer | None = None,
        write_lock: FileLock | None = None,
        announce: Callable[[], None] | None = None,
    ) -> None:
        self._conn = conn
        self._announce = announce
        self._write_lock = write_lock
        self._checkpointer = checkpointer
        if checkpointer is not None:
            # Checkpoints run on the checkpointer's thread (see checkpoint.py).
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            # The log is truncated to this when it starts over, so its size tells other
            # processes how long it is (see checkpoint.py).
            conn.execute(f"PRAGMA journal_size_limit = {LOG_SIZE_LIMIT}")
        # Savepoint journals in memory: with the default (a temporary file) every write's
        # savepoint wrote its pages to a file that was created and deleted per group.
        conn.execute("PRAGMA temp_store = MEMORY")
        self._feed = feed
        self._loop = loop
        self._group_commit = group_commit
        self._max_group = max_group if group_commit else 1
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: list[_Job] = []
        self._closed = False
        self._stats = WriteStats()
        self._listeners: list[GroupListener] = []
        self._thread = threading.Thread(target=self._run, name="alyx-writer", daemon=True)

    @property
    def stats(self) -> WriteStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    def add_group_listener(self, listener: GroupListener) -> None:
        """Call `listener(group_size, seconds)` on the writer thread after each commit."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T], *, exclusive: bool = False) -> asyncio.Future[T]:
        """Queue `fn(conn)` for the writer; must be called on the loop thread."""
        if self._closed:
            raise RuntimeError("the database is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        pending = self._pending
        if not pending:
            self._loop.call_soon(self._hand_over)
        pending.append(_Job(fn, future, exclusive))
        return future

    def _hand_over(self) -> None:
        """Pass the writes submitted since the last call to the writer thread, in one item."""
        if self._pending:
            jobs, self._pending = self._pending, []
            self._queue.put(jobs)

    def close(self) -> None:
        """Refuse new writes; the thread finishes every queued one, then stops."""
        if not self._closed:
            self._closed = True
            self._hand_over()
            self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        waiting: collections.deque[_Job] = collections.deque()
        stopping = False
        while True:
            if not waiting:
                if stopping:
                    break
                item = self._queue.get()
                if item is _STOP:
                    break
                waiting.extend(item)
            job = waiting.popleft()
            if job.exclusive:
                self._guard([job], self._run_exclusive)
                continue
            group = [job]
            while len(group) < self._max_group:
                if not waiting:
                    if stopping:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    waiting.extend(item)
                if waiting[0].exclusive:
                    break
                group.append(waiting.popleft())
            self._guard(group, self._run_group)
        self._conn.close()
        if self._write_lock is not None:
            self._write_lock.close()

    def _guard(self, jobs: list[_Job], run: Callable[[list[_Job]], None]) -> None:
        """Run a group; an unexpected failure fails its writes instead of the thread."""
        try:
            run(jobs)
        except Exception as e:
            log.exception("writer failed on a group of %d writes", len(jobs))
            self._publish([(j.future, False, e) for j in jobs])

    def _run_group(self, group: list[_Job]) -> None:
        conn = self._conn
        group = [j for j in group if not j.future.cancelled()]
        if not group:
            return
        self._take_turn()
        try:
            started = time.perf_counter()
            try:
                self._begin()
            except sqlite3.Error as e:
                self._failed_group(group, _refusal(e))
                return
            try:
                logged_from = self._change_log_end() if self._announce is not None else None
                outcomes = [self._run_one(job) for job in group]
                logged = logged_from is None or self._change_log_end() != logged_from
                conn.execute("COMMIT")
            except Exception as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._failed_group(group, e)
                return
        finally:
            self._end_turn()
        self._count(outcomes, time.perf_counter() - started)
        if logged and self._announce is not None:
            self._announce_commit()
        self._publish(outcomes)
        self._committed()

    def _change_log_end(self) -> int | None:
        """The change log's AUTOINCREMENT counter (None before the log's first row)."""
        try:
            row = self._conn.execute(_CHANGE_LOG_END).fetchone()
        except sqlite3.OperationalError:
            return None  # no sqlite_sequence yet: the log was never written
        return int(row[0]) if row is not None else None

    def _announce_commit(self) -> None:
        assert self._announce is not None
        try:
            self._announce()
        except Exception:
            log.exception("announcing a commit to the other processes failed; their poller will find it")

    def _take_turn(self) -> None:
        """Wait for the other processes' writers to finish (see the module docstring)."""
        if self._write_lock is not None:
            self._write_lock.acquire()

    def _end_turn(self) -> None:
        if self._write_lock is not None:
            self._write_lock.release()

    def _begin(self) -> None:
        """Start the group's transaction (a subclass may wait for the write lock its own way)."""
        self._conn.execute("BEGIN IMMEDIATE")

    def _committed(self) -> None:
        checkpointer = self._checkpointer
        if checkpointer is None:
            return
        if checkpointer.behind:
            # The background thread fell behind: bound the log here, as SQLite would.
            checkpointer.checkpoint(self._conn)
        checkpointer.nudge()

    def _run_one(self, job: _Job) -> Outcome:
        conn = self._conn
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            value = job.fn(conn)
        except Exception as e:
            conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
            conn.execute(f"RELEASE {_SAVEPOINT}")
            return (job.future, False, e)
        conn.execute(f"RELEASE {_SAVEPOINT}")
        return (job.future, True, value)

    def _run_exclusive(self, jobs: list[_Job]) -> None:
        (job,) = jobs
        conn = self._conn
        outcome: Outcome
        self._take_turn()
        try:
            try:
                outcome = (job.future, True, job.fn(conn))
            except Exception as e:
                outcome = (job.future, False, e)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
                if outcome[1]:
                    outcome = (
                        job.future,
                        False,
                        RuntimeError("an exclusive job left its transaction open"),
                    )
        finally:
            self._end_turn()
        self._stats.exclusive += 1
        self._publish([outcome])
        self._committed()

    def _failed_group(self, group: list[_Job], error: Exception) -> None:
        log.error("a group of %d writes failed to commit: %s", len(group), error)
        self._stats.failed_groups += 1
        self._stats.failed_writes += len(group)
        self._publish([(j.future, False, error) for j in group])

    def _count(self, outcomes: list[Outcome], seconds: float) -> None:
        stats = self._stats
        size = len(outcomes)
        stats.groups += 1
        stats.writes += size
        stats.failed_writes += sum(1 for _f, ok, _v in outcomes if not ok)
        stats.max_group_size = max(stats.max_group_size, size)
        for listener in self._listeners:
            try:
                listener(size, seconds)
            except Exception:
                log.exception("group listener %r failed", listener)

    def _publish(self, outcomes: list[Outcome]) -> None:
        """Publish committed changes, then acknowledge the writes, in one loop callback."""
        settle = functools.partial(_settle, outcomes)
        try:
            self._feed.collect(self._conn, then=settle)
        except sqlite3.Error:
            log.exception("reading committed changes failed; acknowledging writes anyway")
            try:
                self._loop.call_soon_threadsafe(settle)
            except RuntimeError:
                log.warning("event loop closed: %d write acknowledgements dropped", len(outcomes))
