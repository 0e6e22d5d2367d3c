"""The admin API of webhooks.

    GET    /api/admin/webhooks                      {webhooks: [{name, url, source, events}]}
                                                    (source: config for alyx.yaml's, api for added ones)
    POST   /api/admin/webhooks  {name, url, events, secret?}
        -> 201 {name, url, source, events, secret}  the secret (made when not given) is shown once
        409 WEBHOOK_EXISTS, 400 VALIDATION_ERROR (one line: the key and how to fix it)
    DELETE /api/admin/webhooks/{name}               one added through this API (204)
    GET    /api/admin/webhooks/deliveries?webhook=&limit=
        -> {deliveries: [{id, webhook, event, change_id, status, attempts, response_status,
                          response_ms, last_error, created_at, updated_at}]}

Every route needs an admin, or a token with the `functions` permission.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from alyx_server.api.auth import caller
from alyx_server.api.bodies import read_object
from alyx_server.api.pipeline import json_response
from alyx_server.api.runtime import RUNTIME
from alyx_server.errors import Forbidden, FunctionError, Unauthorized, ValidationError
from alyx_server.webhooks.service import WebhookService, list_deliveries
from alyx_server.webhooks.targets import (
    API_NAME_PATTERN,
    compile_webhook,
    delete_stored,
    insert_stored,
    parse_webhook_body,
)

__all__ = ["WEBHOOKS", "Webhooks", "add_routes"]


@dataclass(slots=True)
class Webhooks:
    """The application's webhook service, set by app.py's jobs context while it serves."""

    service: WebhookService | None = None


WEBHOOKS = web.AppKey("alyx.webhooks", Webhooks)


def _service(request: web.Request) -> WebhookService:
    auth = caller(request)
    if auth is None:
        raise Unauthorized("sign in as an admin to manage webhooks")
    if not auth.allows("functions"):
        raise Forbidden("only admins (or tokens with the functions permission) may manage webhooks")
    service = request.app[WEBHOOKS].service
    if service is None:
        raise FunctionError("webhooks are starting; try again in a moment", code="UNAVAILABLE", status=503)
    return service


async def list_webhooks(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    hooks = await request.app[RUNTIME].ready_db().read(service.webhooks)
    return json_response({"webhooks": [hook.describe() for hook in hooks.values()]})


async def add_webhook(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    target = parse_webhook_body(await read_object(request))
    hook = compile_webhook(target, "api")  # a bad `when` is refused here, with its column
    taken = set(service.configured)
    now = service.clock.now().timestamp()
    await (
        request.app[RUNTIME].ready_db().write(lambda conn: insert_stored(conn, target, now=now, taken=taken))
    )
    service.added()
    return json_response({**hook.describe(), "secret": target.secret}, status=201)


async def remove_webhook(request: web.Request) -> web.StreamResponse:
    _service(request)
    name = request.match_info["name"]
    await request.app[RUNTIME].ready_db().write(lambda conn: delete_stored(conn, name))
    return web.Response(status=204)


async def deliveries(request: web.Request) -> web.StreamResponse:
    _service(request)
    raw = request.query.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise ValidationError("limit must be a whole number from 1 to 1000")
    webhook, limit = request.query.get("webhook"), int(raw)
    rows = (
        await request.app[RUNTIME]
        .ready_db()
        .read(lambda conn: list_deliveries(conn, webhook=webhook, limit=limit))
    )
    return json_response({"deliveries": rows})


def add_routes(app: web.Application) -> None:
    app[WEBHOOKS] = Webhooks()
    app.router.add_get("/api/admin/webhooks", list_webhooks)
    app.router.add_post("/api/admin/webhooks", add_webhook)
    app.router.add_get("/api/admin/webhooks/deliveries", deliveries)
    # Not `deliveries` (the delivery log's path): DELETE there is no route, and its Allow is GET.
    name = API_NAME_PATTERN.removeprefix("^").removesuffix("$")
    app.router.add_delete(f"/api/admin/webhooks/{{name:{name}}}", remove_webhook)
