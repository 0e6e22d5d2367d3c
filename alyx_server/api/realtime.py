"""`GET /api/realtime`: the WebSocket of live queries (SPEC §10).

The handler authenticates, upgrades, and then reads frames one at a time, handing each
to the `RealtimeHub` (alyx_server.realtime), which knows nothing of aiohttp. It is one
of the three places that turn Alyx errors into something the outside sees: an `error`
frame `{code, message}` echoing the message's id.

Authentication, any of:
    `Authorization: Bearer <token>`   checked by the pipeline before the upgrade (401)
    `?token=<token>`                  redacted from the access log by the pipeline
    `{"type": "auth", "payload": {"token"}}`  at any time, also to swap in a refreshed
                                      token: every subscription then gets a fresh snapshot
A bad `?token=` or `auth` token answers an `error` (UNAUTHORIZED or TOKEN_EXPIRED) and
leaves the connection as it was. When the token expires, deliveries stop with one
TOKEN_EXPIRED error until an `auth` message brings a valid token (admin and deploy tokens
expire when their `expires_at` says). When the credential is revoked while the connection
is open (logout, reuse detection, password change, a disabled or deleted account, a revoked
admin token) or its caller changes (a new role), the `CredentialWatch` of
api/realtime_credentials.py drops or re-binds the connection's subscriptions.

Ping frames go out every `realtime.ping_interval` (aiohttp's heartbeat closes a peer
that stops answering). Over `realtime.max_connections` the upgrade answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from alyx_server.api.auth import AUTH_SERVICE, caller
from alyx_server.api.expand import expand_docs
from alyx_server.api.pipeline import CLIENT_IP
from alyx_server.api.realtime_credentials import CredentialWatch
from alyx_server.api.runtime import RUNTIME, Runtime
from alyx_server.auth import AuthContext, AuthService
from alyx_server.errors import AlyxError
from alyx_server.realtime import (
    Access,
    Client,
    ClientMessage,
    Expander,
    HubFull,
    RealtimeError,
    RealtimeHub,
    Subscription,
    error_message,
    parse_message,
    parse_token,
)
from alyx_server.rules import Auth, RequestInfo

__all__ = ["REALTIME", "RealtimeState", "add_routes", "live_expander"]

log = logging.getLogger("alyx.realtime")

CLOSE_TIMEOUT = 10.0
_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_MEDIUM = struct.Struct("!BBH").pack
_HEADER_LONG = struct.Struct("!BBQ").pack


@dataclass(slots=True)
class RealtimeState:
    """The application's hub and the watch of its connections' credentials: app.py's
    realtime context sets them once the database is open, and closes them at shutdown."""

    hub: RealtimeHub | None = None
    watch: CredentialWatch | None = None

    def live(self) -> tuple[RealtimeHub, CredentialWatch]:
        """The hub and the watch, or 503 UNAVAILABLE before start-up and after shutdown."""
        hub, watch = self.hub, self.watch
        if hub is None or watch is None:
            raise AlyxError("realtime is not running; try again in a moment", code="UNAVAILABLE", status=503)
        return hub, watch

    async def close(self) -> None:
        """Stop following credentials, stop the fan-out and close every connection (once)."""
        hub, watch = self.hub, self.watch
        self.hub = self.watch = None
        if watch is not None:
            await watch.close()
        if hub is not None:
            await hub.close()


REALTIME = web.AppKey("alyx.realtime", RealtimeState)


class _Socket:
    """The hub's Transport over an aiohttp WebSocketResponse."""

    __slots__ = ("_request", "_ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        self._request = request

    async def send(self, data: bytes) -> None:
        await self._ws.send_frame(data, WSMsgType.TEXT)

    def write_now(self, data: bytes) -> bool:
        # aiohttp only sends through a coroutine; when the socket has nothing buffered the
        # frame (an unmasked, uncompressed text frame: RFC 6455 §5.2, a 2-10 byte header)
        # is written here directly, which saves a task switch per message in fan-outs.
        transport = self._request.transport
        if self._ws.closed or transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size():
            return False
        size = len(data)
        if size < 126:
            header = _HEADER_SHORT(0x81, size)
        elif size < 65536:
            header = _HEADER_MEDIUM(0x81, 126, size)
        else:
            header = _HEADER_LONG(0x81, 127, size)
        transport.write(header + data)
        return True

    async def close(self, code: int, message: str) -> None:
        try:
            await asyncio.wait_for(self._ws.close(code=code, message=message.encode()), CLOSE_TIMEOUT)
        except (TimeoutError, ConnectionError, RuntimeError) as e:
            log.info("realtime connection did not close cleanly (%s); dropping it", e)
            transport = self._request.transport
            if transport is not None:
                transport.abort()


def live_expander(rt: Runtime) -> Expander:
    """How the hub expands the references of a subscription's docs: as REST does, under
    the subscriber's access."""

    def expand(conn: Any, sub: Subscription, docs: list[dict[str, Any]]) -> None:
        view = rt.catalog.get(sub.query.collection.name)
        a = sub.access
        expand_docs(conn, rt.catalog, view, docs, sub.query.expand, (a.policy, a.auth, a.request))

    return expand


def _access(rt: Runtime, request: web.Request, auth: Auth | None) -> Access:
    query = {k: v for k, v in request.query.items() if k != "token"}
    budget = rt.settings.rules.eval_budget
    info = RequestInfo("GET", request[CLIENT_IP], rt.clock.now(), query, eval_budget=budget)
    policy = rt.policy
    return Access(
        policy, auth, info, policy.read_routes, policy.read_fields, policy.read_check, [budget, budget]
    )


def _authenticate(service: AuthService, token: str) -> tuple[AuthContext, float | None]:
    """The caller of `token` and when its access ends (None: never)."""
    ctx = service.authenticate(token)
    return ctx, service.expiry(token)


def _header_token(request: web.Request) -> str:
    """The token of the `Authorization: Bearer` header (which the pipeline checked)."""
    _scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip()


async def realtime(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    rt.ready_db()  # 503 while start-up migrations run
    hub, watch = request.app[REALTIME].live()
    settings = rt.settings.realtime
    if hub.full:
        raise HubFull(f"the server holds its maximum of {settings.max_connections} realtime connections")
    service = request.app[AUTH_SERVICE]
    auth: AuthContext | None = caller(request)
    token = _header_token(request) if auth is not None else None
    expires = service.expiry(token) if token else None
    token_error: AlyxError | None = None
    query_token = request.query.get("token")
    if auth is None and query_token:
        try:
            auth, expires = _authenticate(service, query_token)
            token = query_token
        except AlyxError as e:
            token_error = e
    ws = web.WebSocketResponse(
        heartbeat=settings.ping_interval, compress=False, max_msg_size=4 * settings.max_message_size + 1024
    )
    await ws.prepare(request)
    client = hub.connect(_Socket(ws, request), _access(rt, request, auth), expires_at=expires)
    try:
        if auth is not None and token:
            watch.track(client, token, auth, _rebind(rt, request))
        if token_error is not None:
            client.send("error", error_message(token_error))
            client.expired = token_error.code == "TOKEN_EXPIRED"
        async for frame in ws:
            if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await _dispatch(rt, service, (hub, watch), client, request, frame.data)
            elif frame.type == WSMsgType.ERROR:
                log.info("realtime connection %s failed: %s", client.id, ws.exception())
                break
    finally:
        watch.forget(client)
        await hub.disconnect(client)
    return ws


async def _dispatch(
    rt: Runtime,
    service: AuthService,
    live: tuple[RealtimeHub, CredentialWatch],
    client: Client,
    request: web.Request,
    data: Any,
) -> None:
    hub, watch = live
    message: ClientMessage | None = None
    try:
        message = parse_message(data, rt.settings.realtime.max_message_size)
        if message.type == "auth":
            await _reauth(rt, service, live, client, request, message)
        else:
            if message.type == "ping":
                await watch.settled()
            await hub.handle(client, message)
    except RealtimeError as e:
        client.send("error", error_message(e, e.message_id if message is None else message.id))
    except AlyxError as e:
        client.send("error", error_message(e, None if message is None else message.id))
    except Exception:
        log.exception("realtime message failed on connection %s", client.id)
        failure = AlyxError("internal error")
        client.send("error", error_message(failure, None if message is None else message.id))


async def _reauth(
    rt: Runtime,
    service: AuthService,
    live: tuple[RealtimeHub, CredentialWatch],
    client: Client,
    request: web.Request,
    message: ClientMessage,
) -> None:
    hub, watch = live
    token = parse_token(message)
    auth, expires = _authenticate(service, token)
    watch.track(client, token, auth, _rebind(rt, request))
    await hub.reauth(client, _access(rt, request, auth), expires_at=expires)


def _rebind(rt: Runtime, request: web.Request) -> Callable[[AuthContext], Access]:
    """How the connection's Access is rebuilt when its caller changes (a new role)."""
    return lambda auth: _access(rt, request, auth)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/realtime", realtime)
