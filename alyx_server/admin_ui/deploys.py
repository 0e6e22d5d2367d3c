"""The migrations and deploys page: what was applied, what was deployed, and the way back.

    GET  <base>/migrations                    applied migrations (newest first) and the
                                              deploy history with each plan's summary and outcome
    GET  <base>/migrations/rollback?version=N what a rollback to version N (default: the
                                              one before the version in force) would do,
                                              and the form that confirms it
    POST <base>/migrations/rollback           version, restore_backup, message: the rollback

The plan is `api.deploy.rollback_plan` (deploy/rollback.py's `plan_rollback`: the same
target and reversibility checks as the rollback itself, run without writing), and the
confirmed rollback is `api.deploy.run_rollback`, the code behind POST
/api/admin/deploy/rollback and `alyx deploy rollback`: same lease, same schema gate, same
history rows. The page needs the `migrations` permission, the rollback `deploy`. Like
the deploy routes, the rollback's path does not hold the schema gate (api/pipeline.py's
`ungated`): it takes the gate's exclusive side itself.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp import web

from alyx_server.admin_ui.site import SITE, Admin, Site, wants_json
from alyx_server.api.deploy import rollback_plan, run_rollback
from alyx_server.api.pipeline import HTTP_POLICY, json_response
from alyx_server.api.runtime import RUNTIME
from alyx_server.deploy.store import DeploymentRow, current_row, read_rows
from alyx_server.errors import AlyxError, FieldIssue, ValidationError
from alyx_server.migrations import HistoryRow, read_history
from alyx_server.migrations.history import Irreversible

__all__ = ["add_routes"]

HISTORY_LIMIT = 100


def _migration(row: HistoryRow) -> dict[str, Any]:
    return {
        "label": row.label,
        "kind": row.kind,
        "applied_at": row.applied_at,
        "checksum": row.checksum,
        "collections": len(row.snapshot.collections),
        "reversible": not any(isinstance(step, Irreversible) for step in row.down),
    }


def _deployment(row: DeploymentRow, current: int | None) -> dict[str, Any]:
    return {
        **row.to_dict(),
        "applied_at": row.applied_at,
        "current": row.version == current,
        "summary_items": [(key, _shown(value)) for key, value in sorted(row.summary.items())],
    }


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _history(conn: sqlite3.Connection) -> dict[str, Any]:
    current = current_row(conn)
    version = None if current is None else current.version
    return {
        "migrations": [_migration(r) for r in reversed(read_history(conn))][:HISTORY_LIMIT],
        "deployments": [_deployment(r, version) for r in read_rows(conn, HISTORY_LIMIT)],
        "in_force": version,
    }


async def page(request: web.Request, admin: Admin) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    data = await rt.ready_db().read(_history)
    notice = None
    to, version = request.query.get("to", ""), request.query.get("version", "")
    if request.query.get("done") == "rollback" and to.isdigit() and version.isdigit():
        notice = f"Rolled back to version {to}, now in force as version {version}."
    if wants_json(request):
        return json_response(data)
    return request.app[SITE].render(
        request,
        "deploys.html",
        {**data, "notice": notice, "can_deploy": admin.auth.allows("deploy")},
        admin=admin,
    )


def _version(raw: object) -> int | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not raw.isdigit() or not 0 < int(raw) < 2**62:
        message = "version must be a deployed version number (the history lists them)"
        raise ValidationError(message, [FieldIssue("version", "invalid_type", message)])
    return int(raw)


async def confirm(request: web.Request, admin: Admin) -> web.StreamResponse:
    plan = await rollback_plan(request.app, _version(request.query.get("version")))
    if wants_json(request):
        return json_response(plan)
    return request.app[SITE].render(request, "rollback.html", {"plan": plan, "error": None}, admin=admin)


async def rollback(request: web.Request, admin: Admin) -> web.StreamResponse:
    form = await request.post()
    version = _version(form.get("version"))
    restore = form.get("restore_backup") == "on"
    message = form.get("message")
    text = message.strip() if isinstance(message, str) else ""
    try:
        done = await run_rollback(request, admin.auth, version, restore, text)
    except AlyxError as e:
        if wants_json(request):
            raise
        try:
            plan = await rollback_plan(request.app, version)
        except AlyxError:
            raise e from None
        return request.app[SITE].render(
            request, "rollback.html", {"plan": plan, "error": e.message}, admin=admin
        )
    if wants_json(request):
        return json_response(done)
    url = request.app[SITE].url(
        "migrations", done="rollback", to=str(done["rollback_of"]), version=str(done["version"])
    )
    raise web.HTTPSeeOther(url)


def add_routes(app: web.Application, site: Site) -> None:
    policy = app.get(HTTP_POLICY)
    if policy is not None:
        # The rollback takes the schema gate's exclusive side: holding its shared side
        # around the request, as the pipeline does for pages, would wait on itself.
        policy.ungated.add(site.url("migrations/rollback"))
    site.nav("migrations", "Deploys", "migrations")
    site.get(app, "migrations", page, permission="migrations")
    site.get(app, "migrations/rollback", confirm, permission="deploy")
    site.post(app, "migrations/rollback", rollback, permission="deploy")
