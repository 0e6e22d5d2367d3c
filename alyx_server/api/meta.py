"""Health, metrics and the OpenAPI document (SPEC §12, §7).

GET /health          {status, version, uptime, components{database, realtime, functions},
                     worker, workers: [{name, pid, phase, uptime}]}
                     200 when the database answers and migrations are done, else 503;
                     the components are the answering worker's (its hub, its function
                     service); `workers` lists every process serving this database, asked
                     through their peer sockets (api/peer_app.py): a sibling that does not
                     answer within a second has phase "unresponsive", one that is gone is
                     not listed. The status is the answering worker's.
GET /health/live     200 while the process serves requests
GET /health/ready    200 once startup migrations are applied, 503 before (and on failure);
                     this worker's alone, asked of no sibling: each worker accepts
                     connections itself, so the answer is about the one a balancer reaches,
                     and it stays a local check a probe can call often
GET /metrics         Prometheus text
GET /api/openapi.json  OpenAPI 3.1 from the live schema (cached per schema)
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import orjson
from aiohttp import web

from alyx_server import __version__
from alyx_server.api.admin import ADMIN_EVENTS, worker_states
from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.api.functions import FUNCTIONS
from alyx_server.api.openapi import openapi_document
from alyx_server.api.pipeline import json_response
from alyx_server.api.realtime import REALTIME
from alyx_server.api.runtime import RUNTIME, Runtime
from alyx_server.config import PasswordPolicy
from alyx_server.metrics import CONTENT_TYPE
from alyx_server.schema.model import Schema

__all__ = ["add_routes", "health_report"]

_OPENAPI = web.AppKey("alyx.openapi_cache", dict)
_WORKER_KEYS = ("name", "pid", "phase", "uptime")


def _database_status(rt: Runtime) -> dict[str, Any]:
    if rt.phase == "failed":
        return {"status": "error", "migrations": "failed"}
    if rt.phase != "ready":
        return {"status": "starting", "migrations": "pending"}
    try:
        rt.db.read_now(lambda conn: conn.execute("SELECT 1").fetchone())
    except (sqlite3.Error, RuntimeError):
        return {"status": "error", "migrations": "applied"}
    return {"status": "ok", "migrations": "applied"}


def _realtime_status(app: web.Application, ok: bool) -> dict[str, Any]:
    """The hub's open connections and live subscriptions (0 while it is not running)."""
    hub = app[REALTIME].hub
    return {
        "status": "ok" if ok else "starting",
        "connections": 0 if hub is None else len(hub.clients),
        "subscriptions": 0 if hub is None else len(hub.index),
    }


def _functions_status(app: web.Application) -> dict[str, Any]:
    """The function service: how many functions it serves, how many failed to load, and
    its workers. `degraded` while a discovered function cannot be served (its name and
    error are in the admin listing, not in this public answer)."""
    service = app[FUNCTIONS].service
    if service is None:
        return {"status": "starting"}
    return {
        "status": "degraded" if service.problems else "ok",
        "backend": service.backend.name,
        "functions": len(service.specs),
        "failed": len(service.problems),
        "workers": sum(pool.total for pool in service.pools.values()),
    }


async def health(request: web.Request) -> web.StreamResponse:
    body = await health_report(request.app)
    return json_response(body, 200 if body["status"] == "ok" else 503)


async def health_report(app: web.Application) -> dict[str, Any]:
    """What GET /health answers (the admin UI's overview shows it too)."""
    rt = app[RUNTIME]
    database = _database_status(rt)
    ok = database["status"] == "ok"
    return {
        "status": "ok" if ok else database["status"],
        "version": __version__,
        "uptime": round(time.monotonic() - rt.started, 3),
        "components": {
            "database": database,
            "realtime": _realtime_status(app, ok),
            "functions": _functions_status(app),
        },
        "worker": app[ADMIN_EVENTS].worker,
        "workers": [{key: state.get(key) for key in _WORKER_KEYS} for state in await worker_states(app)],
    }


async def live(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    if rt.phase == "ready":
        return json_response({"status": "ready"})
    return json_response({"status": rt.phase}, 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    return web.Response(body=rt.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    schema: Schema = rt.catalog.schema
    # auth.password.* is live, and the document states the policy: both key the one entry.
    policy = request.app[AUTH_SERVICE].settings.password
    cache: dict[str, tuple[Schema, PasswordPolicy, bytes]] = request.app[_OPENAPI]
    entry = cache.get("document")
    if entry is None or entry[0] is not schema or entry[1] != policy:
        entry = (schema, policy, orjson.dumps(openapi_document(schema, password=policy)))
        cache["document"] = entry
    return web.Response(body=entry[2], content_type="application/json")


def add_routes(app: web.Application) -> None:
    app[_OPENAPI] = {}
    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/openapi.json", openapi)
