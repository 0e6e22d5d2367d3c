"""The schema page: every collection the server serves, and what schema.yaml would change.

    GET <base>/schema

For each collection of the schema in force (the one requests run against): its fields
(type, constraints and validation, default, reference as a link to the referenced
collection, index), its indexes and its rules (no rule: administrators only). Below,
the pending difference between the project's schema.yaml and the database: what `alyx
migrate status` lists (migrations.migration_status: pending files, safe changes to come,
destructive changes that block them, edited files), computed the same way, without
writing anything. schema.yaml is read from disk on every request, so an edit shows at
once; one that does not parse shows its error.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from aiohttp import web

from alyx_server.admin_ui.site import SITE, Admin, Site
from alyx_server.api.runtime import RUNTIME
from alyx_server.errors import AlyxError
from alyx_server.migrations import migration_status, plan_migrations
from alyx_server.schema.loader import load_schema
from alyx_server.schema.model import ACTIONS, Collection, Field, Schema, Validation

__all__ = ["add_routes", "collection_view", "pending_changes"]

_VALIDATION_NAMES = (
    ("min_length", "minLength"),
    ("max_length", "maxLength"),
    ("min", "min"),
    ("max", "max"),
    ("pattern", "pattern"),
    ("format", "format"),
    ("enum", "enum"),
)


def _constraints(f: Field) -> list[str]:
    out = [name for name in ("primary", "unique", "internal") if getattr(f, name)]
    out.append("nullable" if f.nullable else "required" if f.required_on_create else "not null")
    if f.on_update_now:
        out.append("onUpdate: now")
    if f.client_writable:
        out.append("clientWritable")
    out += _validation(f.validation)
    return out


def _validation(v: Validation) -> list[str]:
    out: list[str] = []
    for attr, name in _VALIDATION_NAMES:
        value = getattr(v, attr)
        if value is None:
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
        out.append(f"{name}: {shown}")
    return out


def collection_view(c: Collection) -> dict[str, Any]:
    """One collection as the page shows it."""
    indexed = {name for index in c.indexes for name in index.fields}
    fields = []
    for f in c.fields:
        reference = None
        if f.references is not None:
            r = f.references
            reference = {"collection": r.collection, "field": r.field, "on_delete": r.on_delete}
        fields.append(
            {
                "name": f.name,
                "type": f.type.value,
                "constraints": _constraints(f),
                "default": None if f.default is None else str(f.default.to_yaml()),
                "reference": reference,
                "index": "own" if f.index else "in an index" if f.name in indexed else "",
            }
        )
    return {
        "name": c.name,
        "fields": fields,
        "indexes": [
            {"name": i.name, "fields": list(i.fields), "unique": i.unique, "order": i.order}
            for i in c.indexes
        ],
        "rules": {action: c.rules.get(action) for action in ACTIONS},
    }


def pending_changes(conn: sqlite3.Connection, schema: Schema, migrations_dir: Path) -> dict[str, Any]:
    """What applying schema.yaml would do now: `alyx migrate status`'s rows but the
    applied ones, and what blocks or stops them."""
    rows = migration_status(conn, schema, migrations_dir)
    plan = plan_migrations(conn, schema, migrations_dir)
    pending = [
        {"state": r.state, "name": r.name, "detail": r.detail} for r in rows if r.state not in ("applied",)
    ]
    return {"rows": pending, "blocked": plan.blocked, "edited": list(plan.edited)}


async def page(request: web.Request, admin: Admin) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    project = rt.settings.project_dir
    live = rt.catalog.schema
    pending: dict[str, Any] | None = None
    problem: str | None = None
    try:
        wanted = await asyncio.to_thread(load_schema, project / "schema.yaml")
        pending = await rt.ready_db().read(lambda conn: pending_changes(conn, wanted, project / "migrations"))
    except AlyxError as e:
        problem = e.message
    except OSError as e:
        problem = f"cannot read {project / 'schema.yaml'}: {e.strerror or e}"
    return request.app[SITE].render(
        request,
        "schema.html",
        {
            "collections": [collection_view(c) for c in live.collections],
            "checksum": live.checksum(),
            "pending": pending,
            "problem": problem,
            "schema_file": str(project / "schema.yaml"),
        },
        admin=admin,
    )


def add_routes(app: web.Application, site: Site) -> None:
    site.nav("schema", "Schema", "schema")
    site.get(app, "schema", page, permission="schema")
