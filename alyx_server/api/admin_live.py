"""Live changes to a running application: the schema, the functions and alyx.yaml.

`alyx dev` watches the project's files and calls these in the server's own process and
event loop; nothing restarts, so HTTP and WebSocket connections stay up.

    reload_schema(app, schema)      diff with the database; apply the safe part (pending
                                    migration files and safe changes) on the live writer;
                                    then swap the served schema, rules, OpenAPI and the
                                    realtime subscriptions of changed collections. A
                                    destructive change is refused with SPEC §5's message
                                    and the old schema keeps serving.
    stage_schema(old, schema)       a deploy's two steps of the same: compile and diff
    swap_staged_schema(app, staged)   first (off the event loop), then, once its migrations
                                    are committed, swap references only
    reload_functions(app, names)    rediscover `names` (None: all); new workers on the new code
    reload_settings(app, settings)  swap in the keys marked "live"; name those needing a restart
    announce(app, what, ok, text)   tell the dashboards (GET /api/admin/events) what happened

A bad schema.yaml or rule raises (SchemaError, RuleError) before anything changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from alyx_server.api.admin import ADMIN_EVENTS
from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.api.file_service import FILES
from alyx_server.api.functions import FUNCTIONS
from alyx_server.api.pipeline import HTTP_POLICY, HttpPolicy
from alyx_server.api.realtime import REALTIME
from alyx_server.api.runtime import RUNTIME, Runtime
from alyx_server.auth.mailer import mailer_for
from alyx_server.config import Settings, split_changes
from alyx_server.config.settings import build_settings
from alyx_server.errors import MigrationError
from alyx_server.functions.manifest import Defaults, discover_functions
from alyx_server.migrations import apply_migrations, plan_migrations
from alyx_server.rules.access import CelAccess
from alyx_server.rules.load import compile_schema_rules
from alyx_server.schema.diff import diff_schemas
from alyx_server.schema.model import Schema
from alyx_server.storage.sweeper import free_dropped_fields, referenced_folders

__all__ = [
    "FunctionsReload",
    "SchemaReload",
    "SettingsReload",
    "StagedSchema",
    "announce",
    "changed_collections",
    "reload_functions",
    "reload_schema",
    "reload_settings",
    "stage_schema",
    "swap_staged_schema",
]

log = logging.getLogger("alyx.dev")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True, slots=True)
class SchemaReload:
    """What a schema reload did. `refused` holds the reason nothing was applied."""

    changes: tuple[str, ...] = ()
    migrations: tuple[str, ...] = ()
    refused: str | None = None
    collections: tuple[str, ...] = ()
    dropped_subscriptions: int = 0

    @property
    def applied(self) -> bool:
        return self.refused is None and bool(self.changes or self.migrations)


@dataclass(frozen=True, slots=True)
class FunctionsReload:
    """Each reloaded function: None when it serves its new code, else why it cannot."""

    outcome: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class SettingsReload:
    """The changed keys applied live, and those that need a restart."""

    applied: tuple[str, ...]
    restart: tuple[str, ...]
    settings: Settings


def changed_collections(old: Schema, new: Schema) -> tuple[str, ...]:
    """Collections added, removed or different between two schemas."""
    names = sorted({*old.names, *new.names})
    out: list[str] = []
    for name in names:
        a, b = old.get(name), new.get(name)
        if a is None or b is None or Schema((a,)).to_dict() != Schema((b,)).to_dict():
            out.append(name)
    return tuple(out)


def announce(app: web.Application, what: str, ok: bool, summary: str) -> None:
    """Tell the dashboards about a reload (`what`: schema, functions or config)."""
    app[ADMIN_EVENTS].reloaded(what, ok, summary)


# -- schema ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StagedSchema:
    """A schema made ready to serve ahead of the swap (`stage_schema`): its compiled rules
    and access policy, and what changes from `old`, the schema serving when it was staged.
    A deploy stages before it takes the schema gate, so under the gate only references
    change (`swap_staged_schema`)."""

    schema: Schema
    old: Schema
    policy: CelAccess
    touched: tuple[str, ...]
    summaries: tuple[str, ...]


def stage_schema(old: Schema, schema: Schema) -> StagedSchema:
    """Compile `schema`'s rules and diff it with `old` (no I/O, no event loop: a thread may
    run it); RuleError for a rule that does not compile."""
    policy = CelAccess(compile_schema_rules(schema))
    return StagedSchema(schema, old, policy, changed_collections(old, schema), _summaries(old, schema))


async def swap_staged_schema(app: web.Application, staged: StagedSchema) -> SchemaReload:
    """Serve a staged schema whose migrations the caller committed (a deploy, under the
    schema gate): the served schema, rules and realtime queries of changed collections
    swap; nothing is compiled or planned here unless the schema serving is no longer the
    one it was staged against."""
    rt = app[RUNTIME]
    old = rt.catalog.schema
    if old is not staged.old:
        staged = stage_schema(old, staged.schema)
    rt.set_schema(staged.schema)
    db = rt.ready_db()

    async def referenced() -> set[str]:
        return await db.read(lambda conn: referenced_folders(conn, staged.schema))

    await free_dropped_fields(app[FILES].storage, old, staged.schema, referenced)
    if isinstance(rt.policy, CelAccess):
        rt.policy = staged.policy
    dropped = await _revalidate(app, staged.touched)
    return SchemaReload(staged.summaries, (), None, staged.touched, dropped)


async def reload_schema(app: web.Application, schema: Schema) -> SchemaReload:
    """See the module docstring; RuleError for a rule that does not compile."""
    rt = app[RUNTIME]
    compiled = compile_schema_rules(schema)
    db = rt.ready_db()
    old = rt.catalog.schema
    folder = rt.settings.project_dir / "migrations"
    if not rt.settings.dev.auto_migrate:
        plan = await db.read(lambda conn: plan_migrations(conn, schema, folder))
        if not plan.up_to_date:
            return SchemaReload(
                refused="dev.auto_migrate is off: the old schema keeps serving; "
                "run `alyx migrate apply` to apply schema.yaml"
            )
        migrations: tuple[str, ...] = ()
        changes: tuple[str, ...] = ()
    else:
        try:
            result = await db.run_exclusive(lambda conn: apply_migrations(conn, schema, folder))
        except MigrationError as e:
            return SchemaReload(changes=_summaries(old, schema), refused=e.message)
        migrations, changes = result.files, result.auto
    touched = changed_collections(old, schema)
    rt.set_schema(schema)

    async def referenced() -> set[str]:
        return await db.read(lambda conn: referenced_folders(conn, schema))

    await free_dropped_fields(app[FILES].storage, old, schema, referenced)
    if isinstance(rt.policy, CelAccess):
        rt.policy = CelAccess(compiled)
    dropped = await _revalidate(app, touched)
    for name in migrations:
        log.info("migration applied: %s", name)
    return SchemaReload(changes or _summaries(old, schema), migrations, None, touched, dropped)


def _summaries(old: Schema, new: Schema) -> tuple[str, ...]:
    return tuple(c.summary for c in diff_schemas(old, new).changes)


async def _revalidate(app: web.Application, names: tuple[str, ...]) -> int:
    """Rebuild the realtime subscriptions on `names`; how many were dropped."""
    hub = app[REALTIME].hub
    if hub is None or not names:
        return 0
    return await hub.revalidate(names)


# -- functions -------------------------------------------------------------------------------
async def reload_functions(app: web.Application, names: Iterable[str] | None = None) -> FunctionsReload:
    """Rediscover the functions folder and take in `names` (None: every function)."""
    service = app[FUNCTIONS].service
    if service is None:
        return FunctionsReload({})
    settings = app[RUNTIME].settings
    f = settings.functions
    discovery = discover_functions(f.path, Defaults(f.timeout, f.memory), root=settings.project_dir)
    outcome = await service.reload(discovery, names)
    for name, problem in outcome.items():
        if problem is None:
            log.info("function reloaded: %s", name)
        else:
            log.error("function not served: %s", problem)
    return FunctionsReload(outcome)


# -- settings --------------------------------------------------------------------------------
async def reload_settings(app: web.Application, new: Settings) -> SettingsReload:
    """Swap in the changed keys marked "live"; the others keep their running value."""
    rt = app[RUNTIME]
    old = rt.settings
    live, restart = split_changes(old, new)
    if not live:
        return SettingsReload((), tuple(restart), old)
    values = dict(old.values)
    for path in live:
        values[path] = new.values[path]
    merged = build_settings(values, project_dir=old.project_dir, mode=old.mode, config_file=old.config_file)
    rt.settings = merged
    _apply_http(app, merged)
    _apply_auth(app, merged)
    _apply_runtime(app, rt, merged)
    if merged.functions.timeout != old.functions.timeout:
        await reload_functions(app)
    for path in live:
        log.info("configuration applied: %s", path)
    return SettingsReload(tuple(live), tuple(restart), merged)


def _apply_http(app: web.Application, s: Settings) -> None:
    live = app.get(HTTP_POLICY)
    if live is not None:
        server = s.server
        live.update(
            HttpPolicy(server.cors.allowed_origins, server.trusted_proxies, server.max_body_size, live.clock)
        )


def _apply_auth(app: web.Application, s: Settings) -> None:
    service = app.get(AUTH_SERVICE)
    if service is None:
        return
    a, before = s.auth, service.settings
    service.settings = a
    service.hasher.cost = a.bcrypt_cost
    service.signer.issuer = a.jwt.issuer
    service.signer.access_ttl = a.jwt.access_ttl
    service.login_limit.rate = a.rate_limit.login
    service.register_limit.rate = a.rate_limit.register
    service.reset_limit.rate = a.rate_limit.reset
    if a.smtp != before.smtp:
        service.mailer = mailer_for(a.smtp)


def _apply_runtime(app: web.Application, rt: Runtime, s: Settings) -> None:
    logging.getLogger("alyx").setLevel(_LEVELS[s.logging.level])
    rt.ready_db().changes_retention = s.database.changes_retention
    hub = app[REALTIME].hub
    if hub is not None:
        hub.settings = s.realtime  # its restart keys hold their running values
