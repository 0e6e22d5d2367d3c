"""What a worker's peer socket answers (the sockets themselves: api/peers.py).

The processes serving one database (`alyx serve --workers N`, or several `alyx serve`
started by hand on one project) each serve this small internal application on their
socket in the database's run directory; only this user can connect to it (the folder is
0700), so it takes no token.

    GET /peer/v1/state    this worker's `admin.worker_state`: {name, pid, phase, uptime,
                          requests {total, errors}, realtime {connections, subscriptions},
                          event_streams}
    GET /peer/v1/events   NDJSON, one admin event a line (as GET /api/admin/events sends
                          them, each naming this worker), for as long as the caller reads:
                          this worker's requests, invocations, reloads and realtime
                          summaries, not its changes (see api/admin.py)

    GET /peer/v1/invocations?function=NAME
                          {"worker", "invocations": [...]}: this worker's remembered
                          invocations of NAME (FunctionService.recent_invocations; every
                          function without `function`), newest first; the admin UI's
                          functions page gathers them from every worker

    POST /peer/v1/deploy/{hold,swap,finish,release}
                          a deploy executed by a sibling switches this worker too
                          (api/deploy_peers.py)

A route for siblings to call on each other is a handler added in `create_peer_app`, and
the caller asks every sibling at once with `app[PEERS].call_all(path, payload, timeout)`.

`add_peers(app)` puts this worker's `Peers` and the event relay on the application;
`peers_context`, a cleanup context, serves the socket while the application runs and
removes it on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from alyx_server.api.admin import (
    ADMIN_EVENTS,
    PEER_EVENTS_PATH,
    PEER_STATE_PATH,
    PEERS,
    EventListener,
    pump_events,
    worker_state,
)
from alyx_server.api.deploy_peers import add_peer_routes as add_deploy_routes
from alyx_server.api.functions import FUNCTIONS
from alyx_server.api.peers import Peer, PeerFollower, Peers
from alyx_server.api.pipeline import json_response
from alyx_server.api.runtime import RUNTIME

__all__ = [
    "PEERS",
    "PEER_INVOCATIONS_PATH",
    "SHUTDOWN_TIMEOUT",
    "add_peers",
    "create_peer_app",
    "peers_context",
]

log = logging.getLogger("alyx.peers")

SHUTDOWN_TIMEOUT = 2.0
PEER_INVOCATIONS_PATH = "/peer/v1/invocations"
_MAIN = web.AppKey("alyx.peer_main", web.Application)
_CLOSING = web.AppKey("alyx.peer_closing", asyncio.Event)


async def state(request: web.Request) -> web.StreamResponse:
    return json_response(worker_state(request.app[_MAIN]))


async def invocations(request: web.Request) -> web.StreamResponse:
    app = request.app[_MAIN]
    service = app[FUNCTIONS].service
    found = [] if service is None else service.recent_invocations(request.query.get("function"))
    return json_response({"worker": app[ADMIN_EVENTS].worker, "invocations": found})


async def events(request: web.Request) -> web.StreamResponse:
    app = request.app[_MAIN]
    closing = request.app[_CLOSING]
    hub = app[ADMIN_EVENTS]
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    listener = EventListener()
    hub.peer_listeners.add(listener)

    async def send(data: bytes) -> None:
        await response.write(data + b"\n")

    def closed() -> bool:
        # The follower went away (nothing is written to notice it while idle) or this
        # worker stops.
        transport = request.transport
        return closing.is_set() or transport is None or transport.is_closing()

    try:
        await pump_events(app, listener, send, closed)
    finally:
        hub.peer_listeners.discard(listener)
    return response


def create_peer_app(main: web.Application) -> web.Application:
    """The application served on this worker's peer socket, reading `main`'s state."""
    peer = web.Application()
    peer[_MAIN] = main
    peer[_CLOSING] = asyncio.Event()
    peer.router.add_get(PEER_STATE_PATH, state)
    peer.router.add_get(PEER_EVENTS_PATH, events)
    peer.router.add_get(PEER_INVOCATIONS_PATH, invocations)
    add_deploy_routes(peer, main)

    async def closing(app: web.Application) -> None:
        app[_CLOSING].set()

    peer.on_shutdown.append(closing)
    return peer


def add_peers(app: web.Application) -> None:
    """This worker's `Peers` (app[PEERS]) and the relay of its siblings' admin events."""
    events = app[ADMIN_EVENTS]
    peers = Peers(app[RUNTIME].settings.database.path, events.worker)
    app[PEERS] = peers

    def joined(peer: Peer) -> None:
        events.sibling(peer, "joined")

    def left(peer: Peer) -> None:
        events.sibling(peer, "left")

    events.relay = PeerFollower(peers, PEER_EVENTS_PATH, events.relayed, joined, left)


@contextlib.asynccontextmanager
async def peers_context(app: web.Application) -> AsyncIterator[None]:
    """Serve this worker's peer socket; on the way out, remove it and stop the relay."""
    peers = app[PEERS]
    runner = web.AppRunner(create_peer_app(app), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        sock = peers.listen()
        await web.SockSite(runner, sock).start()
        yield
    finally:
        peers.close()
        relay = app[ADMIN_EVENTS].relay
        if relay is not None:
            await relay.close()
        await runner.cleanup()
