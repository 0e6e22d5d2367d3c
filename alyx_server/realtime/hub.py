"""`RealtimeHub`: the connections of one server, their subscriptions, and the fan-out.

The hub knows nothing of HTTP. The WebSocket handler authenticates, turns frames into
`ClientMessage`s and hands them here:

    connect(transport, access)   a Client (`connected` already queued), or HubFull
    handle(client, message)      subscribe, unsubscribe, ping; errors are raised
    reauth(client, access)       a new caller: every subscription is re-bound and gets
                                 a fresh snapshot
    revoke(client, error)        the caller's credential was revoked: every subscription
                                 is dropped and new ones refused until a `reauth`
    revalidate(collections)      after a schema change: subscriptions on those collections
                                 are checked again and re-snapshotted, or get an error
    disconnect(client)           subscriptions and tasks freed

It subscribes to the database's change feed once, at creation; `ChangeFanout` turns the
changes into deltas. A `pong` is queued only after the deltas of every change the hub
had received when the ping arrived, so a client can use ping as a barrier.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sqlite3
import uuid
from collections.abc import Iterable
from typing import Any

from alyx_server.config.settings import RealtimeSettings
from alyx_server.db import Database
from alyx_server.errors import AlyxError
from alyx_server.metrics import Metrics
from alyx_server.realtime.clients import Client, Transport
from alyx_server.realtime.fanout import ChangeFanout, Expander, window_query
from alyx_server.realtime.index import SubscriptionIndex
from alyx_server.realtime.protocol import (
    ClientMessage,
    RealtimeError,
    SubscribeRequest,
    error_code,
    error_message,
    parse_subscribe,
    parse_unsubscribe,
)
from alyx_server.realtime.subscriptions import (
    FILTER_OPERATORS,
    Access,
    LiveQuery,
    Subscription,
    WhereCompiler,
    live_query,
)
from alyx_server.tools.gate import Gate
from alyx_server.tools.processes import worker_name
from alyx_server.tools.reclaim import Reclaimer
from alyx_server.tools.timestamps import Clock

__all__ = ["CLOSE_GOING_AWAY", "HubFull", "RealtimeHub"]

log = logging.getLogger("alyx.realtime")

CLOSE_GOING_AWAY = 1001


class HubFull(AlyxError):
    """`realtime.max_connections` connections are open already."""

    status = 503
    code = "REALTIME_FULL"


class RealtimeHub:
    """See the module docstring."""

    def __init__(
        self,
        db: Database,
        settings: RealtimeSettings,
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        compile_where: WhereCompiler | None = None,
        expander: Expander | None = None,
        gate: Gate | None = None,
    ) -> None:
        # The schema gate (tools/gate.py): subscribe and reauth snapshots and fan-out
        # ticks hold its shared side, so none runs the old schema against new tables.
        self._gate = gate = Gate() if gate is None else gate
        self._db = db
        self.settings = settings
        self._clock = clock
        self._metrics = metrics
        self._compile_where = compile_where
        self._expander = expander
        self.index = SubscriptionIndex()
        self.fanout = ChangeFanout(db, self.index, clock, expander, gate)
        self._unsubscribe_feed = db.feed.subscribe(self.fanout.on_change)
        self.clients: dict[str, Client] = {}
        self._serial = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]
        self._worker = worker_name()
        self._sent: dict[str, Any] = {}
        self._revoked: dict[str, RealtimeError] = {}
        # The memory a burst of closed connections leaves, given back once it is over.
        self.reclaimer = Reclaimer()

    # -- metrics -------------------------------------------------------------------------
    def _counted(self, kind: str) -> None:
        if self._metrics is None:
            return
        child = self._sent.get(kind)
        if child is None:
            child = self._sent[kind] = self._metrics.realtime_messages.labels(kind)
        child.inc()

    def _gauges(self) -> None:
        if self._metrics is not None:
            self._metrics.realtime_connections.set(len(self.clients))
            self._metrics.realtime_subscriptions.set(len(self.index))

    # -- connections ---------------------------------------------------------------------
    @property
    def full(self) -> bool:
        return len(self.clients) >= self.settings.max_connections

    def connect(self, transport: Transport, access: Access, *, expires_at: float | None = None) -> Client:
        """Register a connection and queue its `connected` message."""
        if self.full:
            raise HubFull(
                f"the server holds its maximum of {self.settings.max_connections} realtime connections; "
                "try again later"
            )
        client_id = f"{self._prefix}-{next(self._serial)}"
        client = Client(
            client_id, transport, access, expires_at=expires_at,
            limit=self.settings.send_queue, max_bytes=self.settings.max_queued_bytes,
            counted=self._counted, closed=self._forget,
        )  # fmt: skip
        self.clients[client_id] = client
        client.start()
        client.message("connected", {"client_id": client_id, "worker": self._worker})
        self._gauges()
        return client

    async def disconnect(self, client: Client) -> None:
        """Forget the client: its subscriptions leave the index, its writer stops."""
        self._forget(client)
        await client.stop()

    def _forget(self, client: Client) -> None:
        """Drop the client's subscriptions and the client (closing or gone)."""
        for sub in list(client.subs.values()):
            self._drop(sub)
        if self.clients.pop(client.id, None) is not None:
            self.reclaimer.closed()
        self._revoked.pop(client.id, None)
        self._gauges()

    async def close(self) -> None:
        """Stop the fan-out and close every connection (server shutdown)."""
        self._unsubscribe_feed()
        self.reclaimer.cancel()
        await self.fanout.stop()
        for client in list(self.clients.values()):
            client.close(CLOSE_GOING_AWAY, "server shutting down")

    # -- messages ------------------------------------------------------------------------
    async def handle(self, client: Client, message: ClientMessage) -> None:
        """Run one client message (not `auth`, which the handler authenticates first)."""
        if message.type == "subscribe":
            async with self._gate.shared():
                await self.subscribe(client, message)
        elif message.type == "unsubscribe":
            self.unsubscribe(client, message)
        elif message.type == "ping":
            await self.fanout.barrier()
            client.check_expiry(self._clock.now().timestamp())
            client.message("pong", {}, message.id)

    async def subscribe(self, client: Client, message: ClientMessage) -> None:
        request = parse_subscribe(message)
        refusal = self._revoked.get(client.id)
        if refusal is not None:
            raise refusal
        if client.check_expiry(self._clock.now().timestamp()):
            raise RealtimeError("TOKEN_EXPIRED", "the access token has expired; send auth with a fresh token")
        limit = self.settings.max_subscriptions_per_client
        if len(client.subs) >= limit:
            raise RealtimeError(
                "SUBSCRIPTION_LIMIT",
                f"a connection may hold {limit} subscriptions; unsubscribe from one first",
            )
        collection = self._db.collection(request.collection)
        query = live_query(collection, request, self._compile_where)
        assert message.id is not None
        holders = self.index.routes(collection.name).holders
        sub = Subscription(client.next_subscription_id(), client, message.id, query, client.access, holders)
        client.subs[sub.id] = sub
        self.index.add(sub)
        self._gauges()
        try:
            await self._snapshot(sub)
        except Exception:
            self._drop(sub)
            self._gauges()
            raise

    def unsubscribe(self, client: Client, message: ClientMessage) -> None:
        sub_id = parse_unsubscribe(message)
        sub = client.subs.get(sub_id)
        if sub is None:
            raise RealtimeError("INVALID_PAYLOAD", f"no subscription {sub_id!r} on this connection")
        self._drop(sub)
        self._gauges()
        client.message("unsubscribed", {"subscription_id": sub_id}, message.id)

    async def reauth(self, client: Client, access: Access, *, expires_at: float | None) -> None:
        """Swap in a new caller; every subscription gets a fresh snapshot as that caller."""
        async with self._gate.shared():
            await self._reauth(client, access, expires_at=expires_at)

    async def _reauth(self, client: Client, access: Access, *, expires_at: float | None) -> None:
        client.access = access
        client.expires_at = expires_at
        client.expired = False
        self._revoked.pop(client.id, None)
        for sub in list(client.subs.values()):
            self.index.remove(sub)
            try:
                sub.bind(access)
            except AlyxError as e:
                self._drop(sub, indexed=False)
                client.send("error", error_message(e, sub.message_id))
                continue
            self.index.add(sub)
            try:
                await self._snapshot(sub)
            except AlyxError as e:
                self._drop(sub)
                client.send("error", error_message(e, sub.message_id))
        self._gauges()

    def revoke(self, client: Client, error: AlyxError) -> int:
        """The client's credential no longer holds (logged out, revoked, account disabled
        or deleted): one `error` with `error`'s code, every subscription dropped (each gets
        the error too, echoing its subscribe id), new subscriptions refused with that code
        until `reauth` brings a valid caller. Returns how many subscriptions were dropped."""
        code = error_code(error)
        reason = error.message.rstrip(".")
        notice = RealtimeError(
            code,
            f"{reason}. The subscriptions of this connection were dropped: "
            "send auth with a valid token, then subscribe again",
        )
        self._revoked[client.id] = RealtimeError(
            code, f"{reason}. Send auth with a valid token before subscribing again"
        )
        client.access = dataclasses.replace(client.access, auth=None)
        client.expires_at = None
        client.expired = False
        client.send("error", error_message(notice))
        subs = list(client.subs.values())
        for sub in subs:
            self._drop(sub)
            client.send("error", error_message(notice, sub.message_id))
        self._gauges()
        return len(subs)

    async def revalidate(self, collections: Iterable[str]) -> int:
        """After a schema change: check each subscription on `collections` again against
        the live schema and send it a fresh snapshot; one no longer valid (its collection
        or a field it names is gone) gets an `error` and is dropped. Returns how many were."""
        names = set(collections)
        dropped = 0
        for client in list(self.clients.values()):
            for sub in [s for s in client.subs.values() if s.query.collection.name in names]:
                self.index.remove(sub)
                try:
                    collection = self._db.collection(sub.query.collection.name)
                    sub.query = live_query(collection, _request_of(sub.query), self._compile_where)
                    sub.bind(sub.access)
                    self.index.add(sub)
                except AlyxError as e:
                    self._drop(sub, indexed=False)
                    client.send("error", error_message(e, sub.message_id))
                    dropped += 1
                    continue
                try:
                    await self._snapshot(sub)
                except AlyxError as e:
                    self._drop(sub)
                    client.send("error", error_message(e, sub.message_id))
                    dropped += 1
        self._gauges()
        return dropped

    def _drop(self, sub: Subscription, *, indexed: bool = True) -> None:
        sub.active = False
        sub.client.subs.pop(sub.id, None)
        if indexed:
            self.index.remove(sub)
        sub.view.clear()
        sub.pending = None
        sub.backlog.clear()

    # -- snapshots -----------------------------------------------------------------------
    async def _snapshot(self, sub: Subscription) -> None:
        """Load the subscription's query and send it; changes meanwhile go to its backlog."""
        sub.epoch += 1
        epoch = sub.epoch
        sub.ready = False
        sub.stale = False
        sub.pending = None
        sub.view.clear()
        expander = self._expander if sub.query.expand else None

        def run(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
            own = not conn.in_transaction
            if own:
                conn.execute("BEGIN")  # page, count and expansions read one snapshot
            try:
                docs, total = window_query(conn, sub)
                shown = [dict(d) for d in docs]
                if expander is not None:
                    expander(conn, sub, shown)
                return docs, total, shown
            finally:
                if own:
                    conn.execute("COMMIT")

        docs, total, shown = await self._db.read_small(run)
        if not sub.active or sub.epoch != epoch:
            return
        primary = sub.query.collection.primary.name
        sub.view.load(docs, total, primary)
        sub.ready = True
        self.index.routes(sub.query.collection.name).refresh(sub)
        payload: dict[str, Any] = {"subscription_id": sub.id, "docs": shown, "total": sub.view.total}
        if sub.view.windowed:
            payload["order"] = list(sub.view.ids)
        sub.client.message("snapshot", payload, sub.message_id)
        self.fanout.take_backlog(sub)


_OPERATORS = {db_op: op for op, db_op in FILTER_OPERATORS.items()}


def _request_of(query: LiveQuery) -> SubscribeRequest:
    """The subscribe request a live query was built from (to check it against a new schema)."""
    filters: dict[str, dict[str, Any]] = {}
    for cond in query.conditions:
        if cond.op in ("is_null", "not_null"):
            filters.setdefault(cond.field, {})["$exists"] = cond.op == "not_null"
        else:
            filters.setdefault(cond.field, {})[_OPERATORS[cond.op]] = cond.value
    sort = tuple(f"-{name}" if desc else name for name, desc in query.sort)
    where = query.where.text if query.where is not None else None
    return SubscribeRequest(query.collection.name, filters, where, sort, query.limit, query.expand)
