"""The logs page: the live request stream of every worker, filterable and pausable.

    GET <base>/logs   the page (logs.html); logs.js fills it from the admin events
                      WebSocket (/api/admin/events, signed in by the UI's cookie from this
                      server's own origin), whose `request` events carry method, path (the
                      query's secrets redacted), status, duration, request id, user, client
                      IP and the `worker` that served it, every worker's included

Nothing is stored on the server for this page: it shows requests made while it is open.
The browser keeps the newest `data-keep` requests (older ones drop off) and filters
them by text, status class, method and worker without asking the server again; paused,
it holds new requests back (counting them) until resumed.
"""

from __future__ import annotations

from aiohttp import web

from alyx_server.admin_ui.site import SITE, Admin, Site

__all__ = ["KEEP", "add_routes"]

KEEP = 1000
"""How many requests the page keeps (newest first)."""


async def page(request: web.Request, admin: Admin) -> web.StreamResponse:
    return request.app[SITE].render(request, "logs.html", {"keep": KEEP}, admin=admin)


def add_routes(app: web.Application, site: Site) -> None:
    site.nav("logs", "Logs", "logs")
    site.get(app, "logs", page, permission="logs")
