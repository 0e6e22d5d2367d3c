"""The dashboard's admin API (SPEC §12): a live event stream, the schema and statistics.

    GET /api/admin/events   WebSocket; every message is {"type", "payload"}, and every
                            payload names the `worker` it comes from:
        hello        {version, mode, recent: [reload events so far]}    first, once
        request      {id, time, method, path, status, duration_ms, ip, user}
        change       {time, change_id, collection, op, doc_id, changed_fields}
        realtime     {connections, subscriptions, clients: [{id, user, ip, subscriptions}]}
                     at once, then whenever it differs (checked every second)
        invocation   {time, function, status, success, duration_ms, logs, error}
        reload       {what, ok, summary, time}   schema, functions or alyx.yaml reloaded
        dropped      {count}   events this listener missed because it read too slowly
        worker       {pid, state: "joined" | "left"}   a sibling worker's stream opened or ended
    GET /api/admin/schema   {schema, checksum, collections: [{name, fields, indexes, rules}]}
    GET /api/admin/stats    {version, mode, phase, uptime, requests, realtime, functions, database,
                             worker, workers: [worker_state of each worker]}

Admin users and admin tokens only: anonymous callers get 401, other users 403 (tokens
need the `events`, `schema` or `stats` permission). The WebSocket also takes `?token=`,
which the access log redacts, and the admin UI's session cookie (`BROWSER_AUTH`), only
from a page of the server's own origin.

`AdminEvents` costs a request two counter increments while nobody listens; with a
listener, each event is encoded once and queued per listener, and a listener that falls
1000 events behind loses the overflow (told by a `dropped` event) rather than slowing
the server.

Across workers (several processes on one database): while a dashboard listens on this
worker, `AdminEvents.relay` (a `PeerFollower`, wired by api/peer_app.py) follows every
sibling's own events through its peer socket and hands them, as they are, to this
worker's dashboards. A sibling streams its requests, invocations, reloads and realtime
summaries but not its changes: every worker's change feed sees every committed change,
so the watched worker's own `change` events already show each one once. `worker_states`
is each worker's `worker_state`, this one's and its siblings' (asked through the sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from alyx_server import __version__
from alyx_server.api.auth import AUTH_SERVICE, caller
from alyx_server.api.functions import FUNCTIONS
from alyx_server.api.peers import Peer, PeerFollower, Peers
from alyx_server.api.pipeline import CLIENT_IP, REQUEST_ID, json_response, redact_query
from alyx_server.api.realtime import REALTIME
from alyx_server.api.runtime import RUNTIME
from alyx_server.auth import AuthContext
from alyx_server.auth.admin_users import require_admin
from alyx_server.db import Database
from alyx_server.db.changes import ChangeEvent
from alyx_server.errors import AlyxError
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import Schema
from alyx_server.tools.processes import worker_name
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock, now_timestamp

__all__ = [
    "ADMIN_EVENTS",
    "BROWSER_AUTH",
    "PEERS",
    "PEER_EVENTS_PATH",
    "PEER_STATE_PATH",
    "QUEUE_LIMIT",
    "AdminEvents",
    "EventListener",
    "add_routes",
    "pump_events",
    "realtime_summary",
    "schema_summary",
    "stats_report",
    "worker_state",
    "worker_states",
]

log = logging.getLogger("alyx.admin")

QUEUE_LIMIT = 1000
RECENT_RELOADS = 50
REALTIME_PERIOD = 1.0
_FUNCTION_PREFIX = "/api/functions/"
_FLAGS = ("primary", "unique", "nullable", "index", "internal")
PEER_STATE_PATH = "/peer/v1/state"
PEER_EVENTS_PATH = "/peer/v1/events"
STATE_TIMEOUT = 1.0


class EventListener:
    """One connected dashboard: its queue of encoded events and how many it missed."""

    __slots__ = ("dropped", "queue")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self.dropped = 0

    def put(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1


def _encode(kind: str, payload: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"type": kind, "payload": payload}, default=str)


def _user_of(auth: object) -> str | None:
    if not isinstance(auth, AuthContext):
        return None
    email = auth.get("email")
    if email:
        return str(email)
    return str(auth.get("id")) if auth.kind == "user" else auth.kind.replace("_", " ")


class AdminEvents:
    """The application's event fan-out for dashboards; see the module docstring.

    `listeners` are this worker's dashboards (its own events and its siblings');
    `peer_listeners` are siblings following this worker (its own events but changes).
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, worker: str | None = None) -> None:
        self.clock = clock
        self.worker = worker_name() if worker is None else worker
        self.listeners: set[EventListener] = set()
        self.peer_listeners: set[EventListener] = set()
        self.relay: PeerFollower | None = None
        self.requests = 0
        self.errors = 0
        self.reloads: deque[dict[str, Any]] = deque(maxlen=RECENT_RELOADS)
        self._followed: Database | None = None

    def follow(self, db: Database) -> None:
        """Subscribe to `db`'s change feed (once; done when the first dashboard connects)."""
        if self._followed is not db:
            self._followed = db
            db.feed.subscribe(self.observe_change)

    def encode(self, kind: str, payload: Mapping[str, Any]) -> bytes:
        """One event of this worker, encoded as listeners receive it."""
        return _encode(kind, {**payload, "worker": self.worker})

    def publish(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Queue one event for every listener (nothing happens without one)."""
        peers = self.peer_listeners if kind != "change" else ()
        if not self.listeners and not peers:
            return
        data = self.encode(kind, payload)
        for listener in (*self.listeners, *peers):
            listener.put(data)

    def relayed(self, peer: Peer, data: bytes) -> None:
        """A sibling's event, encoded by it: for this worker's dashboards only."""
        for listener in self.listeners:
            listener.put(data)

    def sibling(self, peer: Peer, state: str) -> None:
        """Tell the dashboards that a sibling's stream opened ("joined") or ended ("left")."""
        data = _encode("worker", {"worker": peer.worker, "pid": peer.pid, "state": state})
        for listener in self.listeners:
            listener.put(data)

    def reloaded(self, what: str, ok: bool, summary: str) -> None:
        """Record a reload of the dev loop (kept for dashboards that connect later)."""
        payload = {"what": what, "ok": ok, "summary": summary, "time": now_timestamp(self.clock)}
        self.reloads.append(payload)
        self.publish("reload", payload)

    # -- hooks -----------------------------------------------------------------------------
    def observe_request(self, request: web.Request, response: web.StreamResponse, seconds: float) -> None:
        """The pipeline's hook: count every request; describe it to listeners, if any."""
        self.requests += 1
        status = response.status
        if status >= 500:
            self.errors += 1
        if not self.listeners and not self.peer_listeners:
            return
        path = redact_query(request.path_qs) if request.query_string else request.path
        self.publish(
            "request",
            {
                "id": request.get(REQUEST_ID),
                "time": now_timestamp(self.clock),
                "method": request.method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "ip": request.get(CLIENT_IP),
                "user": _user_of(caller(request)),
            },
        )
        if request.method == "POST" and request.path.startswith(_FUNCTION_PREFIX):
            self._invocation(request.path[len(_FUNCTION_PREFIX) :], response)

    def _invocation(self, name: str, response: web.StreamResponse) -> None:
        body = response.body if isinstance(response, web.Response) else None
        answer: Any = None
        if isinstance(body, bytes):
            with contextlib.suppress(orjson.JSONDecodeError):
                answer = orjson.loads(body)
        if not isinstance(answer, dict):
            answer = {}
        error = answer.get("error")
        self.publish(
            "invocation",
            {
                "time": now_timestamp(self.clock),
                "function": name,
                "status": response.status,
                "success": answer.get("success") is True,
                "duration_ms": answer.get("duration_ms"),
                "logs": answer.get("logs") if isinstance(answer.get("logs"), list) else [],
                "error": error if isinstance(error, dict) else ({"message": error} if error else None),
            },
        )

    def observe_change(self, event: ChangeEvent) -> None:
        """The change feed's subscriber: committed writes, in commit order (this worker's
        dashboards only; see the module docstring)."""
        if not self.listeners:
            return
        self.publish(
            "change",
            {
                "time": now_timestamp(self.clock),
                "change_id": event.change_id,
                "collection": event.collection,
                "op": event.op,
                "doc_id": event.doc_id,
                "changed_fields": list(event.changed_fields) if event.changed_fields is not None else None,
            },
        )


ADMIN_EVENTS = web.AppKey("alyx.admin_events", AdminEvents)
PEERS = web.AppKey("alyx.peers", Peers)


# -- workers -------------------------------------------------------------------------------
def worker_state(app: web.Application) -> dict[str, Any]:
    """This worker: name, pid, phase, uptime, requests served, realtime counts, and how
    many siblings follow its events now (`event_streams`)."""
    rt = app[RUNTIME]
    events = app[ADMIN_EVENTS]
    hub = app[REALTIME].hub
    return {
        "name": events.worker,
        "pid": os.getpid(),
        "phase": rt.phase,
        "uptime": round(time.monotonic() - rt.started, 3),
        "requests": {"total": events.requests, "errors": events.errors},
        "realtime": {
            "connections": 0 if hub is None else len(hub.clients),
            "subscriptions": 0 if hub is None else len(hub.index),
        },
        "event_streams": len(events.peer_listeners),
    }


async def worker_states(app: web.Application, timeout: float = STATE_TIMEOUT) -> list[dict[str, Any]]:
    """Every worker's `worker_state`, sorted by name and pid: this one's, and each
    sibling's through its socket. A sibling that does not answer within `timeout`
    seconds is listed with phase "unresponsive"; one that is gone is left out."""
    states = [worker_state(app)]
    peers = app.get(PEERS)
    if peers is not None:
        for answer in await peers.call_all(PEER_STATE_PATH, timeout=timeout):
            if answer.ok and isinstance(answer.body, dict):
                states.append(answer.body)
            else:
                states.append({"name": answer.peer.worker, "pid": answer.peer.pid, "phase": "unresponsive"})
    states.sort(key=lambda s: (str(s.get("name")), int(s.get("pid") or 0)))
    return states


# -- summaries -----------------------------------------------------------------------------
def _subscription_summary(sub: Any) -> dict[str, Any]:
    q = sub.query
    return {
        "id": sub.id,
        "collection": q.collection.name,
        "filter": [f"{c.field}:{c.op}" + ("" if c.value is None else f":{c.value}") for c in q.conditions],
        "where": q.where.text if q.where is not None else None,
        "sort": [f"-{name}" if descending else name for name, descending in q.sort],
        "limit": q.limit,
        "expand": list(q.expand),
    }


def realtime_summary(app: web.Application) -> dict[str, Any]:
    """The realtime connections and their subscriptions, as dashboards show them."""
    hub = app[REALTIME].hub
    clients: list[dict[str, Any]] = []
    total = 0
    for client in list(hub.clients.values()) if hub is not None else []:
        subs = [_subscription_summary(s) for s in list(client.subs.values())]
        total += len(subs)
        access = client.access
        clients.append(
            {"id": client.id, "user": _user_of(access.auth), "ip": access.request.ip, "subscriptions": subs}
        )
    return {"connections": len(clients), "subscriptions": total, "clients": clients}


def schema_summary(schema: Schema) -> list[dict[str, Any]]:
    """Each collection: its fields (name, type, flags), index names and rules."""
    out: list[dict[str, Any]] = []
    for c in schema.collections:
        fields = []
        for f in c.fields:
            flags = [flag for flag in _FLAGS if getattr(f, flag)]
            if f.references is not None:
                flags.append(f"-> {f.references.collection}.{f.references.field}")
            fields.append({"name": f.name, "type": f.type.value, "flags": flags})
        out.append(
            {
                "name": c.name,
                "fields": fields,
                "indexes": [i.name for i in c.indexes],
                "rules": {a: c.rules.get(a) for a in ("create", "read", "update", "delete")},
            }
        )
    return out


# -- routes --------------------------------------------------------------------------------
async def schema(request: web.Request) -> web.StreamResponse:
    require_admin(caller(request), "schema")
    current = request.app[RUNTIME].catalog.schema
    return json_response(
        {"schema": current.to_dict(), "checksum": current.checksum(), "collections": schema_summary(current)}
    )


def _count_rows(names: tuple[str, ...]) -> Callable[[Any], dict[str, int]]:
    def run(conn: Any) -> dict[str, int]:
        return {n: int(conn.execute(f"SELECT COUNT(*) FROM {quote(n)}").fetchone()[0]) for n in names}

    return run


async def stats(request: web.Request) -> web.StreamResponse:
    require_admin(caller(request), "stats")
    return json_response(await stats_report(request.app))


async def stats_report(app: web.Application) -> dict[str, Any]:
    """What GET /api/admin/stats answers (the admin UI's overview shows it too)."""
    rt = app[RUNTIME]
    events = app[ADMIN_EVENTS]
    db = rt.ready_db()
    rows = await db.read(_count_rows(rt.catalog.schema.names))
    service = app[FUNCTIONS].service
    functions = service.describe() if service is not None else []
    writes = db.stats
    workers = await worker_states(app)
    return {
        "version": __version__,
        "mode": rt.settings.mode,
        "phase": rt.phase,
        "uptime": round(time.monotonic() - rt.started, 3),
        "requests": _total(workers, "requests", ("total", "errors")),
        "realtime": _total(workers, "realtime", ("connections", "subscriptions")),
        "functions": {
            "count": sum(1 for f in functions if f.get("state") != "failed"),
            "failed": sum(1 for f in functions if f.get("state") == "failed"),
            "invocations": sum(f.get("stats", {}).get("invocations", 0) for f in functions),
        },
        "database": {
            "path": str(rt.settings.database.path),
            "rows": rows,
            "writes": {"groups": writes.groups, "writes": writes.writes},
        },
        "worker": events.worker,
        "workers": workers,
    }


def _total(workers: list[dict[str, Any]], group: str, keys: tuple[str, ...]) -> dict[str, int]:
    """`group`'s counters summed over the workers that answered."""
    out = dict.fromkeys(keys, 0)
    for state in workers:
        values = state.get(group)
        if isinstance(values, dict):
            for key in keys:
                out[key] += int(values.get(key) or 0)
    return out


BrowserAuth = Callable[[web.Request], Awaitable[AuthContext | None]]
BROWSER_AUTH: web.AppKey[BrowserAuth] = web.AppKey("alyx.admin_browser_auth")
"""The admin UI's session cookie check (set by alyx_server/admin_ui when it is served):
the cookie's admin, None without a cookie, 403 when the upgrade comes from another
Origin than the server's own (no cross-site WebSocket hijacking)."""


async def _events_caller(request: web.Request) -> AuthContext:
    """The caller of the header, of `?token=` or of the admin UI's cookie; 401 or 403
    before any upgrade."""
    auth = caller(request)
    token = request.query.get("token")
    if auth is None and token:
        auth = request.app[AUTH_SERVICE].authenticate(token)
    browser = request.app.get(BROWSER_AUTH)
    if auth is None and browser is not None:
        auth = await browser(request)
    return require_admin(auth, "events")


async def events(request: web.Request) -> web.StreamResponse:
    await _events_caller(request)
    app = request.app
    hub = app[ADMIN_EVENTS]
    rt = app[RUNTIME]
    hub.follow(rt.ready_db())
    ws = web.WebSocketResponse(heartbeat=rt.settings.realtime.ping_interval, compress=False)
    await ws.prepare(request)
    listener = EventListener()
    hello = {"version": __version__, "mode": rt.settings.mode, "recent": list(hub.reloads)}
    await ws.send_str(hub.encode("hello", hello).decode())
    hub.listeners.add(listener)
    if hub.relay is not None:
        hub.relay.watch()

    async def send(data: bytes) -> None:
        await ws.send_str(data.decode())

    sender = asyncio.get_running_loop().create_task(pump_events(app, listener, send, lambda: ws.closed))
    try:
        async for frame in ws:
            if frame.type == WSMsgType.ERROR:
                break
    finally:
        hub.listeners.discard(listener)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        if hub.relay is not None:
            await hub.relay.unwatch()
    return ws


async def pump_events(
    app: web.Application,
    listener: EventListener,
    send: Callable[[bytes], Awaitable[None]],
    closed: Callable[[], bool],
) -> None:
    """Send `listener`'s queued events until `closed()`; at once and then every second,
    this worker's realtime summary when it changed."""
    hub = app[ADMIN_EVENTS]
    last_realtime: dict[str, Any] | None = None
    next_check = 0.0
    try:
        while not closed():
            now = time.monotonic()
            if now >= next_check:
                next_check = now + REALTIME_PERIOD
                current = realtime_summary(app)
                if current != last_realtime:
                    last_realtime = current
                    await send(hub.encode("realtime", current))
            if listener.dropped:
                missed, listener.dropped = listener.dropped, 0
                await send(hub.encode("dropped", {"count": missed}))
            try:
                data = await asyncio.wait_for(listener.queue.get(), max(0.01, next_check - time.monotonic()))
            except TimeoutError:
                continue
            await send(data)
    except (ConnectionError, RuntimeError, AlyxError) as e:
        log.info("admin event stream closed: %s", e)


def add_routes(app: web.Application, events_hub: AdminEvents | None = None) -> None:
    """Register the routes; `events_hub` is the one the pipeline's request hook feeds."""
    app[ADMIN_EVENTS] = events_hub if events_hub is not None else AdminEvents()
    app.router.add_get("/api/admin/events", events)
    app.router.add_get("/api/admin/schema", schema)
    app.router.add_get("/api/admin/stats", stats)
