"""The change pipeline: change feed -> index -> matcher -> live views -> coalesced deltas.

Events arrive from the database's `ChangeFeed` on the event loop, in commit order,
whether this process wrote them or the poller found them. They pile up while a tick
runs; each tick takes them all and:

1. groups them by document (an insert then an update is one change; the doc is read
   once, in its current state, however many subscriptions it concerns);
2. asks the index for candidate subscriptions, checks each one's compiled predicate
   (filter, `where`, read rule) on the doc in memory, and updates its live view;
3. re-runs the query of the views that cannot decide alone (a full window that lost a
   doc and must take the next one from the database), all in one reader call;
4. renders one `delta` per touched subscription and queues it on its client; live sets
   with the same changes share one encoded body (queued by reference behind each
   subscription's own prefix), so a slow subscriber's queue holds no copy of it.

Reading the doc's current state rather than replaying history makes every step
idempotent: a view converges on the database whatever the interleaving of snapshots,
re-runs and events. A subscription still waiting for its snapshot keeps the ids that
changed meanwhile and takes them in right after it.

Each tick holds the schema gate's shared side (tools/gate.py): while a deploy commits its
migrations and swaps the schema, no tick reads the new tables with the old schema; the
events wait and the next tick reads the docs as the new schema serves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from alyx_server.db import Database, ListQuery, get_doc, list_docs
from alyx_server.db.changes import ChangeEvent
from alyx_server.db.codec import codec_for
from alyx_server.db.query import Predicate
from alyx_server.realtime.index import CollectionRoutes, SubscriptionIndex
from alyx_server.realtime.subscriptions import Subscription
from alyx_server.realtime.windows import PendingDelta
from alyx_server.rules.lookups import READER
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import Collection
from alyx_server.tools.gate import Gate
from alyx_server.tools.timestamps import Clock

__all__ = ["ChangeFanout", "Expander", "PublicDoc", "window_query"]

log = logging.getLogger("alyx.realtime")

Expander = Callable[[sqlite3.Connection, Subscription, list[dict[str, Any]]], None]
"""Adds `expand` to docs (in place) as the subscription's caller may see them."""
Change = tuple[bool, tuple[str, ...] | None]
"""(existed before the tick, changed fields or None when unknown)."""


class PublicDoc:
    """A changed doc without its internal fields, JSON-encoded once for every subscriber."""

    __slots__ = ("_fragment", "doc")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self._fragment: orjson.Fragment | None = None

    @property
    def fragment(self) -> orjson.Fragment:
        if self._fragment is None:
            self._fragment = orjson.Fragment(orjson.dumps(self.doc))
        return self._fragment


def _public(collection: Collection, doc: dict[str, Any]) -> PublicDoc:
    codec = codec_for(collection)
    if len(codec.public_names) == len(doc):
        return PublicDoc(doc)
    return PublicDoc({n: doc[n] for n in codec.public_names})


def _fetch(collection: Collection, doc_id: Any) -> Callable[[sqlite3.Connection], dict[str, Any] | None]:
    """Read one doc by key, internal fields included (the read rule may use them)."""
    return lambda conn: get_doc(conn, collection, doc_id, internal=True)


def _merge(changes: dict[tuple[str, Any], Change], event: ChangeEvent) -> None:
    key = (event.collection, event.doc_id)
    known = changes.get(key)
    fields = event.changed_fields if event.op == "UPDATE" else None
    if known is None:
        changes[key] = (event.op != "INSERT", fields)
    elif known[1] is not None and fields is not None:
        changes[key] = (known[0], tuple(sorted({*known[1], *fields})))
    else:
        changes[key] = (known[0], None)


class ChangeFanout:
    """Turns committed changes into deltas; see the module docstring."""

    def __init__(
        self,
        db: Database,
        index: SubscriptionIndex,
        clock: Clock,
        expander: Expander | None,
        gate: Gate | None = None,
    ) -> None:
        self._db = db
        self._gate = Gate() if gate is None else gate
        self._index = index
        self._clock = clock
        self._expander = expander
        self._pending: list[ChangeEvent] = []
        self._backlogged: list[Subscription] = []
        self._task: asyncio.Task[None] | None = None
        self._received = 0
        self._processed = 0
        self._barriers: list[tuple[int, asyncio.Future[None]]] = []
        self.changes_seen = 0
        # Queries re-run because a collection a read rule looks up changed: at most one per
        # subscription per tick, however many of its changes the tick holds.
        self.lookup_reruns = 0

    # -- input ---------------------------------------------------------------------------
    def on_change(self, event: ChangeEvent) -> None:
        """The feed's subscriber (loop thread): queue the event for the next tick."""
        self._pending.append(event)
        self._received += 1
        self._kick()

    def take_backlog(self, sub: Subscription) -> None:
        """After its snapshot, let `sub` take in the docs that changed while it loaded."""
        if sub.backlog:
            self._backlogged.append(sub)
            self._kick()

    def _kick(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="alyx-realtime-fanout")

    async def barrier(self) -> None:
        """Wait until every change received so far has been turned into queued deltas."""
        target = self._received
        if self._processed >= target:
            return
        future = asyncio.get_running_loop().create_future()
        self._barriers.append((target, future))
        await future

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _target, future in self._barriers:
            future.cancel()
        self._barriers.clear()

    # -- ticks ---------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while self._pending or self._backlogged:
                events, self._pending = self._pending, []
                backlogged, self._backlogged = self._backlogged, []
                try:
                    async with self._gate.shared():
                        await self._tick(events, backlogged)
                except Exception:
                    log.exception("realtime: a tick of %d changes failed", len(events))
                self._processed += len(events)
                self._release_barriers()
        finally:
            self._task = None
            self._release_barriers(everything=True)

    def _release_barriers(self, everything: bool = False) -> None:
        keep = []
        for target, future in self._barriers:
            if everything or target <= self._processed:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._barriers = keep

    async def _tick(self, events: list[ChangeEvent], backlogged: list[Subscription]) -> None:
        changes: dict[tuple[str, Any], Change] = {}
        for event in events:
            _merge(changes, event)
        self.changes_seen += len(changes)
        touched: list[Subscription] = []
        resync: list[Subscription] = []
        db = self._db
        # Read rules with lookups (get, exists) read other docs: through the loop's reader.
        token = READER.set(db.read_now)
        try:
            self._changes(changes, touched, resync)
            for sub in backlogged:
                self._take_backlog(sub, touched, resync)
        finally:
            READER.reset(token)
        live = self._dependents({name for name, _ in changes}, resync)
        if resync:
            await self._resync(resync, touched)
        if live:
            await self._follow(live, touched)
        await self._emit(touched)

    def _changes(
        self, changes: dict[tuple[str, Any], Change], touched: list[Subscription], resync: list[Subscription]
    ) -> None:
        db = self._db
        for (name, doc_id), (existed, fields) in changes.items():
            routes = self._index.find(name)
            collection = db.schema.get(name) if routes is not None else None
            if routes is None or collection is None:
                continue
            doc = db.read_now(_fetch(collection, doc_id))
            cands = routes.candidates(doc_id, doc, existed, fields)
            public = _public(collection, doc) if doc is not None and cands else None
            # One evaluation budget per connection and changed doc, whatever the number
            # of its subscriptions: refilled here, charged by their where and read checks.
            for sub in cands:
                budget = sub.access.budget
                if budget is not None:
                    budget[0] = budget[1]
            for sub in cands:
                self._apply(routes, sub, doc_id, doc, public, existed, fields, touched, resync)

    # -- lookups -------------------------------------------------------------------------
    def _dependents(self, changed: set[str], resync: list[Subscription]) -> list[Subscription]:
        """Subscriptions whose read rule looks up a changed collection: windows join
        `resync` (the query re-run and diffed); live sets are returned for `_follow`.

        Asked once per tick with the set of changed collections, so a burst of changes
        (a thousand memberships inserted in one batch) re-runs each dependent query once,
        not once per change; the re-runs are reads like any resync (`read_small` for
        windows: on the loop within its step budget, else on a reader thread)."""
        live: list[Subscription] = []
        for sub in self._index.dependents(changed):
            if not sub.active or not sub.ready:
                continue  # a snapshot still loading reads the new state itself
            if sub.view.limit is not None:
                if not sub.stale:
                    sub.stale = True
                    resync.append(sub)
                    self.lookup_reruns += 1
            else:
                live.append(sub)
                self.lookup_reruns += 1
        return live

    async def _follow(self, subs: list[Subscription], touched: list[Subscription]) -> None:
        """Live sets whose read rule's lookups changed: held docs no longer readable leave
        (deletes), docs that became readable enter (inserts, up to the page size)."""
        epochs = [sub.epoch for sub in subs]

        def run(conn: sqlite3.Connection) -> list[tuple[set[Any], list[dict[str, Any]], int]]:
            return [_live_state(conn, sub) for sub in subs]

        results = await self._db.read(run)
        for sub, epoch, (kept, entered, total) in zip(subs, epochs, results, strict=True):
            if not sub.active or sub.epoch != epoch:
                continue
            view = sub.view
            pending = sub.pending_delta()
            for doc_id in list(view.held):
                if doc_id not in kept:
                    pending.touch(view, doc_id, None)
                    view.apply(doc_id, None, True, False)
            pk = sub.query.collection.primary.name
            for doc in entered:
                pending.touch(view, doc[pk], PublicDoc(doc))
                view.apply(doc[pk], doc, False, False)
            view.total = max(total, len(view.held))
            self._index.routes(sub.query.collection.name).refresh(sub)
            if sub not in touched:
                touched.append(sub)

    def _apply(
        self,
        routes: CollectionRoutes,
        sub: Subscription,
        doc_id: Any,
        doc: dict[str, Any] | None,
        public: PublicDoc | None,
        existed: bool,
        fields: tuple[str, ...] | None,
        touched: list[Subscription],
        resync: list[Subscription],
    ) -> None:
        # Runs once per candidate subscription per changed doc: kept to plain attribute
        # reads and calls on the common path.
        if not sub.active or sub.client.expired:
            return
        if not sub.ready:
            sub.backlog.add(doc_id)
            return
        matches = doc is not None and sub.matches(doc)
        view = sub.view
        pending = sub.pending
        if pending is None:
            pending = sub.pending = PendingDelta(view)
            touched.append(sub)
        pending.touch(view, doc_id, public if matches else None)
        if sub.stale:
            return
        was_incomplete = view.total > len(view.held)
        if view.apply(doc_id, doc if matches else None, existed, sub.unchanged_by(fields)):
            sub.stale = True
            resync.append(sub)
        if view.evicted:
            pending.evicted(view)
        if was_incomplete != (view.total > len(view.held)):
            routes.refresh(sub)

    def _take_backlog(
        self, sub: Subscription, touched: list[Subscription], resync: list[Subscription]
    ) -> None:
        ids, sub.backlog = sub.backlog, set()
        collection = sub.query.collection
        routes = self._index.routes(collection.name)
        budget = sub.access.budget
        for doc_id in ids:
            if budget is not None:
                budget[0] = budget[1]
            doc = self._db.read_now(_fetch(collection, doc_id))
            public = _public(collection, doc) if doc is not None else None
            self._apply(routes, sub, doc_id, doc, public, True, None, touched, resync)

    # -- re-running queries --------------------------------------------------------------
    async def _resync(self, subs: list[Subscription], touched: list[Subscription]) -> None:
        epochs = [sub.epoch for sub in subs]

        def run(conn: sqlite3.Connection) -> list[tuple[list[dict[str, Any]], int]]:
            return [window_query(conn, sub, count_only=sub.view.limit is None) for sub in subs]

        results = await self._db.read_small(run)
        for sub, epoch, (docs, total) in zip(subs, epochs, results, strict=True):
            if not sub.active or sub.epoch != epoch:
                continue
            sub.stale = False
            view = sub.view
            if view.limit is None:
                view.total = max(total, len(view.held))
            else:
                pending = sub.pending_delta()
                pk = sub.query.collection.primary.name
                fresh = {doc[pk]: doc for doc in docs}
                for doc_id in list(view.held):
                    if doc_id not in fresh:
                        pending.touch(view, doc_id, None)
                for doc_id, doc in fresh.items():
                    if doc_id in pending.start or doc_id not in view.held:
                        pending.touch(view, doc_id, PublicDoc(doc))
                view.load(docs, total, pk)
            self._index.routes(sub.query.collection.name).refresh(sub)
            if sub.pending is not None and sub not in touched:
                touched.append(sub)

    # -- output --------------------------------------------------------------------------
    async def _emit(self, touched: list[Subscription]) -> None:
        now = self._clock.now().timestamp()
        expanding = [s for s in touched if s.query.expand and s.pending is not None and s.pending.docs]
        expanded: dict[int, dict[Any, dict[str, Any]]] = {}
        if expanding and self._expander is not None:
            expanded = await self._db.read(lambda conn: self._expand(conn, expanding))
        shared: dict[tuple[Any, ...], bytes] = {}
        for sub in touched:
            pending, sub.pending = sub.pending, None
            client = sub.client
            if pending is None or not sub.active or client.closing or client.check_expiry(now):
                continue
            payload = pending.render(sub.view)
            if payload is None:
                continue
            mine = expanded.get(id(sub)) if expanded else None
            if mine is None and "order" not in payload:
                client.send("delta", sub.frame_prefix, _shared_body(shared, payload))
                continue
            changes = payload["changes"]
            for kind in ("inserts", "updates"):
                if kind in changes:
                    docs: list[PublicDoc] = changes[kind]
                    changes[kind] = [mine[id(d)] if mine is not None else d.fragment for d in docs]
            payload["subscription_id"] = sub.id
            client.message("delta", payload)

    def _expand(
        self, conn: sqlite3.Connection, subs: list[Subscription]
    ) -> dict[int, dict[Any, dict[str, Any]]]:
        assert self._expander is not None
        out: dict[int, dict[Any, dict[str, Any]]] = {}
        for sub in subs:
            assert sub.pending is not None
            copies = {id(d): dict(d.doc) for d in sub.pending.docs.values()}
            self._expander(conn, sub, list(copies.values()))
            out[id(sub)] = copies
        return out


def _shared_body(shared: dict[tuple[Any, ...], bytes], payload: dict[str, Any]) -> bytes:
    """The delta frame after its subscription id (`Subscription.frame_prefix`), encoded once
    per tick for every live set with the same changes."""
    changes = payload["changes"]
    key = (
        tuple(map(id, changes.get("inserts", ()))),
        tuple(map(id, changes.get("updates", ()))),
        tuple(changes.get("deletes", ())),
        payload.get("total"),
    )
    body = shared.get(key)
    if body is None:
        for kind in ("inserts", "updates"):
            if kind in changes:
                changes[kind] = [d.fragment for d in changes[kind]]
        body = shared[key] = orjson.dumps(payload)[1:] + b"}"
    return body


def _live_state(conn: sqlite3.Connection, sub: Subscription) -> tuple[set[Any], list[dict[str, Any]], int]:
    """A live set's held ids that still match, the matching docs it does not hold (up to
    its page size), and the number that match."""
    q = sub.query
    pk = q.collection.primary.name
    held = list(sub.view.held)
    kept: set[Any] = set()
    for start in range(0, len(held), 500):
        part = held[start : start + 500]
        inside = Predicate(f"{quote(pk)} IN ({', '.join('?' * len(part))})", tuple(part))
        query = ListQuery(q.collection, predicates=[*sub.predicates, inside], limit=len(part))
        kept.update(doc[pk] for doc in list_docs(conn, query).docs)
    outside = [Predicate(f"{quote(pk)} NOT IN ({', '.join('?' * len(held))})", tuple(held))] if held else []
    room = max(q.page_size - len(kept), 0)
    query = ListQuery(q.collection, predicates=[*sub.predicates, *outside], sort=q.sort, limit=room)
    entered = list_docs(conn, query).docs if room else []
    counted = ListQuery(q.collection, predicates=sub.predicates, limit=0, with_total=True)
    return kept, entered, list_docs(conn, counted).total or 0


def window_query(
    conn: sqlite3.Connection, sub: Subscription, *, count_only: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """The subscription's query now: its first page of docs (none if `count_only`) and the total."""
    q = sub.query
    limit = 0 if count_only else q.page_size
    query = ListQuery(q.collection, predicates=sub.predicates, sort=q.sort, limit=limit, with_total=True)
    result = list_docs(conn, query)
    return result.docs, result.total or 0
