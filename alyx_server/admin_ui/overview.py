"""The overview page: is the server well, how busy is it, what changed last.

    GET <base>/               the page (overview.html)
    GET <base>/overview.json  the same figures as JSON; overview.js polls it to keep the
                              page current and to compute requests/s and the error rate

The figures are those of GET /health and GET /api/admin/stats (summed over the worker
processes serving the database), plus the database file's size and the newest rows of
the migration and deploy histories.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from aiohttp import web

from alyx_server.admin_ui.site import SITE, Admin, Site
from alyx_server.api.admin import stats_report
from alyx_server.api.meta import health_report
from alyx_server.api.pipeline import json_response
from alyx_server.api.runtime import RUNTIME
from alyx_server.schema.system_tables import DEPLOYMENTS_TABLE, HISTORY_TABLE

__all__ = ["add_routes", "overview_report"]


def _database_bytes(path: Path) -> int:
    """The database file and its WAL and shared-memory files, in bytes."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += path.with_name(path.name + suffix).stat().st_size
        except OSError:
            continue
    return total


def _latest(conn: sqlite3.Connection) -> dict[str, Any]:
    migration = conn.execute(
        f"SELECT version, name, kind, applied_at FROM {HISTORY_TABLE} ORDER BY id DESC LIMIT 1"
    ).fetchone()
    deploy = conn.execute(
        f"SELECT version, status, created_at, applied_at, message FROM {DEPLOYMENTS_TABLE} "
        "ORDER BY version DESC LIMIT 1"
    ).fetchone()
    return {
        "migration": None
        if migration is None
        else dict(zip(("version", "name", "kind", "applied_at"), migration, strict=True)),
        "deploy": None
        if deploy is None
        else dict(zip(("version", "status", "created_at", "applied_at", "message"), deploy, strict=True)),
    }


async def overview_report(app: web.Application) -> dict[str, Any]:
    """Everything the overview shows, as plain data."""
    rt = app[RUNTIME]
    health = await health_report(app)
    stats = await stats_report(app)
    latest = await rt.ready_db().read(_latest)
    requests = stats["requests"]
    uptime = max(float(stats["uptime"]), 0.001)
    return {
        "status": health["status"],
        "components": {name: part.get("status") for name, part in health["components"].items()},
        "version": stats["version"],
        "mode": stats["mode"],
        "uptime": stats["uptime"],
        "requests": requests,
        "requests_per_second_since_start": round(requests["total"] / uptime, 2),
        "error_rate": round(requests["errors"] / requests["total"], 4) if requests["total"] else 0.0,
        "realtime": stats["realtime"],
        "functions": stats["functions"],
        "database": {
            "path": stats["database"]["path"],
            "bytes": _database_bytes(rt.settings.database.path),
            "documents": sum(stats["database"]["rows"].values()),
            "collections": len(stats["database"]["rows"]),
        },
        "workers": [{k: w.get(k) for k in ("name", "pid", "phase", "uptime")} for w in stats["workers"]],
        "last_migration": latest["migration"],
        "last_deploy": latest["deploy"],
    }


async def page(request: web.Request, admin: Admin) -> web.StreamResponse:
    site = request.app[SITE]
    return site.render(request, "overview.html", {"o": await overview_report(request.app)}, admin=admin)


async def data(request: web.Request, admin: Admin) -> web.StreamResponse:
    return json_response(await overview_report(request.app))


def add_routes(app: web.Application, site: Site) -> None:
    site.nav("overview", "Overview", "")
    site.get(app, "", page, permission="stats")
    site.get(app, "overview.json", data, permission="stats")
