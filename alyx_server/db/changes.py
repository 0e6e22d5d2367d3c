"""The change feed: committed `_alyx_changes` rows published as `ChangeEvent`s, in id order.

Triggers on every collection table append a row to `_alyx_changes` for each insert,
update and delete, whoever writes (this server, the CLI, a sqlite3 shell). Three paths
read those rows and all go through `ChangeFeed.collect`:

- the writer thread, right after each COMMIT (in-process writes are published at once);
- `Database.catch_up` on the loop thread, when another process announced a commit
  (notify.py: its wake datagram, or the shared commit counter a request checks);
- the `ChangePoller`, every poll interval, on a reader connection (writers outside Alyx).

`collect` reads the rows above a shared high-water mark and advances it under a lock,
then queues the events for the event loop in that same order, so each change is
published exactly once, in id (= commit) order, whichever path saw it first. Ids come
from AUTOINCREMENT, so they never go backwards, even after pruning. The loop delivers
the queue in a callback; `catch_up` delivers it at once instead (`collect_now`), so
that a cache checked right after holds nothing a commit before the call made stale.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from alyx_server.schema.system_tables import CHANGE_DOCS_TABLE, CHANGES_TABLE, HOOK_CURSORS_TABLE

__all__ = [
    "ChangeEvent",
    "ChangeFeed",
    "ChangePoller",
    "EventStream",
    "Subscriber",
    "latest_change_id",
    "prune_changes",
]

log = logging.getLogger(__name__)

Operation = Literal["INSERT", "UPDATE", "DELETE"]
_SELECT = (
    f"SELECT id, collection, operation, doc_id, changed_fields FROM {CHANGES_TABLE} "
    "WHERE id > ? ORDER BY id LIMIT 10000"
)
_BATCH = 10000
_PRUNE = f"DELETE FROM {CHANGES_TABLE} WHERE ts < ? AND id <= ?"
# Changes an after-write hook has not handled yet are kept (functions/hooks.py), and the
# documents captured for them go with them.
_HOOKS_BOUND = f"SELECT min(change_id) FROM {HOOK_CURSORS_TABLE}"
_PRUNE_DOCS = (
    f"DELETE FROM {CHANGE_DOCS_TABLE} WHERE change_id < coalesce((SELECT min(id) FROM {CHANGES_TABLE}), ?)"
)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One committed change. `changed_fields` is None for INSERT and DELETE."""

    change_id: int
    collection: str
    op: Operation
    doc_id: Any
    changed_fields: tuple[str, ...] | None


Subscriber = Callable[[ChangeEvent], None]


def _event(row: tuple[Any, ...]) -> ChangeEvent:
    change_id, collection, op, doc_id, changed = row
    fields = tuple(orjson.loads(changed)) if changed is not None else None
    return ChangeEvent(change_id, collection, op, doc_id, fields)


def latest_change_id(conn: sqlite3.Connection) -> int:
    """The highest change id in the file (0 if none, or if the table does not exist yet)."""
    try:
        row = conn.execute(f"SELECT max(id) FROM {CHANGES_TABLE}").fetchone()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return 0
        raise
    return int(row[0] or 0)


def prune_changes(conn: sqlite3.Connection, *, before: str, up_to_id: int) -> int:
    """Delete change rows older than `before` (a stored timestamp) that were already published
    and that every after-write hook has handled."""
    try:
        bound = conn.execute(_HOOKS_BOUND).fetchone()[0]
    except sqlite3.OperationalError as e:
        if "no such table" not in str(e):
            raise
        bound = None
    if bound is not None:
        up_to_id = min(up_to_id, int(bound))
    try:
        cursor = conn.execute(_PRUNE, (before, up_to_id))
        if bound is not None or cursor.rowcount:
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute(_PRUNE_DOCS, (up_to_id + 1,))
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return 0
        raise
    return cursor.rowcount


class ChangeFeed:
    """Publishes change events to subscribers on the event loop thread, in commit order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, high_water: int = 0) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._high_water = high_water
        self._subscribers: tuple[Subscriber, ...] = ()
        # Batches read but not yet delivered, in id order; only the loop thread pops.
        self._queued: collections.deque[tuple[list[ChangeEvent], Callable[[], None] | None]] = (
            collections.deque()
        )
        self._delivering = False
        self.published = 0

    @property
    def high_water(self) -> int:
        """The id of the last change handed to the loop for publication."""
        return self._high_water

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` on the loop thread for every change; returns `unsubscribe`."""
        self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            self._subscribers = tuple(s for s in self._subscribers if s is not callback)

        return unsubscribe

    def events(self) -> EventStream:
        """Every change from now on (subscribed at once), as an async iterator; `close()` it."""
        return EventStream(self)

    def collect(self, conn: sqlite3.Connection, then: Callable[[], None] | None = None) -> int:
        """Read committed changes above the high-water mark and schedule their publication.

        Thread-safe; `conn` must not be inside a transaction that could hide commits.
        `then` runs on the loop right after these events are delivered (the writer uses
        it to acknowledge writes after their changes are published). Returns the count.
        """
        with self._lock:
            events: list[ChangeEvent] = []
            while True:
                try:
                    rows = conn.execute(_SELECT, (self._high_water,)).fetchall()
                except sqlite3.OperationalError as e:
                    if "no such table" not in str(e):
                        raise
                    rows = []
                if rows:
                    events.extend(_event(r) for r in rows)
                    self._high_water = rows[-1][0]
                if len(rows) < _BATCH:
                    break
            if events or then is not None:
                self._schedule(events, then)
            return len(events)

    def collect_now(self, conn: sqlite3.Connection) -> int:
        """`collect`, then deliver everything queued so far before returning (loop thread).

        Events the writer queued earlier are delivered first, so the order stays the
        commit order. Returns the count this call read.
        """
        count = self.collect(conn)
        self._deliver_queued()
        return count

    def _schedule(self, events: list[ChangeEvent], then: Callable[[], None] | None) -> None:
        # Under the lock: the queue holds batches in id order.
        self._queued.append((events, then))
        try:
            self._loop.call_soon_threadsafe(self._deliver_queued)
        except RuntimeError:
            log.warning("event loop closed: %d change events not delivered", len(events))

    def _deliver_queued(self) -> None:
        if self._delivering:
            return  # a subscriber caught up from inside a delivery: the outer loop goes on
        self._delivering = True
        try:
            queued = self._queued
            while queued:
                events, then = queued.popleft()
                self._deliver(events, then)
        finally:
            self._delivering = False

    def _deliver(self, events: list[ChangeEvent], then: Callable[[], None] | None) -> None:
        for event in events:
            for callback in self._subscribers:
                try:
                    callback(event)
                except Exception:
                    log.exception("subscriber %r failed on change %d", callback, event.change_id)
        self.published += len(events)
        if then is not None:
            then()


class EventStream:
    """An async iterator over change events, subscribed from the moment it is created."""

    def __init__(self, feed: ChangeFeed) -> None:
        self._queue: asyncio.Queue[ChangeEvent] = asyncio.Queue()
        self._unsubscribe = feed.subscribe(self._queue.put_nowait)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ChangeEvent:
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving events."""
        self._unsubscribe()


class ChangePoller:
    """Polls `_alyx_changes` for writes no process announced, and prunes old rows.

    Alyx's own processes announce their commits (notify.py), so what the poller finds
    first is a write from outside Alyx (a sqlite3 shell, a script), or one whose wake
    was lost.

    `read` runs a function on a reader connection (normally `Database.read`); `prune`
    deletes expired rows (normally `Database.prune_changes`) every `prune_every` seconds.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        read: Callable[[Callable[[sqlite3.Connection], int]], Awaitable[int]],
        *,
        interval: float,
        prune: Callable[[], Awaitable[int]] | None = None,
        prune_every: float = 60.0,
    ) -> None:
        self._feed = feed
        self._read = read
        self._interval = interval
        self._prune = prune
        self._prune_every = prune_every
        self._task: asyncio.Task[None] | None = None

    async def poll_once(self) -> int:
        """Publish whatever other processes committed since the last look; returns the count."""
        return await self._read(self._feed.collect)

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name="alyx-change-poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + self._prune_every
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll_once()
                if self._prune is not None and loop.time() >= next_prune:
                    next_prune = loop.time() + self._prune_every
                    await self._prune()
            except (sqlite3.Error, RuntimeError):
                log.exception("change poll failed; retrying in %.3fs", self._interval)
