"""`alyx dev --tui`: the development server and its dashboard in one process and loop.

The server starts first; the dashboard then reads it over HTTP like `alyx tui` would,
with a short-lived admin token (`dev-dashboard-…`, permissions events, schema and stats,
12 hours) made for this run and revoked when the dashboard closes. Quitting the
dashboard (q or ctrl+c) stops the server gracefully; the server stopping (SIGTERM)
closes the dashboard. Logs and the dev loop's lines go to data/dev.log, since the
terminal belongs to the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import uuid
from datetime import timedelta
from typing import IO, Any

from aiohttp import web

from alyx_cli.tui.app import DashboardApp
from alyx_cli.tui.client import AdminClient
from alyx_server.api.runtime import RUNTIME
from alyx_server.app import serve
from alyx_server.auth.admin_tokens import create_token, revoke_token
from alyx_server.config import Settings
from alyx_server.errors import AlyxError
from alyx_server.tools.timestamps import format_timestamp, now_timestamp

__all__ = ["DASHBOARD_TOKEN_TTL", "dashboard_log", "serve_with_dashboard"]

log = logging.getLogger("alyx.dev")

DASHBOARD_TOKEN_TTL = timedelta(hours=12)
_PERMISSIONS = ("events", "schema", "stats")


def dashboard_log(settings: Settings) -> IO[str]:
    """data/dev.log (beside the database), opened for appending, line-buffered."""
    path = settings.database.path.parent / "dev.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8", buffering=1)


def serve_with_dashboard(
    app: web.Application, settings: Settings, sockets: list[socket.socket] | None = None
) -> int:
    """Run the server (on `sockets`, when bound beforehand) and the dashboard until either
    stops; the exit status."""
    with asyncio.Runner() as runner:
        return runner.run(_run(app, settings, sockets))


async def _mint(app: web.Application) -> tuple[str, str]:
    rt = app[RUNTIME]
    name = f"dev-dashboard-{uuid.uuid4().hex[:8]}"
    expires = format_timestamp(rt.clock.now() + DASHBOARD_TOKEN_TTL)

    def make(conn: sqlite3.Connection) -> str:
        now = now_timestamp(rt.clock)
        secret, _record = create_token(
            conn, name=name, kind="admin", permissions=_PERMISSIONS, expires_at=expires, now=now
        )
        return secret

    return await rt.ready_db().write(make), name


async def _run(app: web.Application, settings: Settings, sockets: list[socket.socket] | None) -> int:
    loop = asyncio.get_running_loop()
    started: asyncio.Future[str] = loop.create_future()
    host, port = settings.server.host, settings.server.port
    server = loop.create_task(serve(app, host, port, on_started=started.set_result, sockets=sockets))
    first: list[asyncio.Future[Any]] = [server, started]
    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        return server.result()
    token, name = await _mint(app)
    dashboard = DashboardApp(AdminClient(started.result(), token))
    server.add_done_callback(lambda _task: dashboard.exit())
    try:
        await dashboard.run_async()
    finally:
        if not server.done():
            try:
                await app[RUNTIME].ready_db().write(lambda conn: revoke_token(conn, name, now_timestamp()))
            except AlyxError as e:
                log.warning("the dashboard's token %s was not revoked: %s", name, e)
            server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    return server.result() if not server.cancelled() else 0
