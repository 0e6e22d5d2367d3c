"""`alyx deploy`'s routes (SPEC §12): prepare a plan, execute it, history and status.

    POST /api/admin/deploy/prepare   body: the bundle (application/gzip), header
                                     X-Bundle-SHA256, optional ?message=; answers the plan
    POST /api/admin/deploy/execute   {plan_id, bundle_sha256, message?, git_commit?,
                                     git_dirty?}; answers {version, outcome, duration_ms, plan}
    POST /api/admin/deploy/rollback  {version?, restore_backup?, message?}: back to
                                     `version` (default: the one before the version in
                                     force), as a new version; restore_backup restores the
                                     database copy taken before the version that replaced it
    GET  /api/admin/deploy/history   {deployments: [...]}, newest first
    GET  /api/admin/deploy/status    {version, running, bundle_sha256}

Admin users, admin tokens (`*`) and deploy tokens (`deploy` permission) only: anonymous
callers get 401, other users and tokens 403.

Prepare stores the bundle under data/deployments/<sha256>.tar.gz, extracts it to a
staging folder, computes the plan against the live state and keeps it (a small file
under data/deployments/plans/); nothing else is written.
Execute is all or nothing up to its commit point (deploy/execute.py), then puts the
files in place and swaps the running server over the way `alyx dev` reloads
(api/admin_live.py): the schema, rules and realtime subscriptions of changed collections,
the added, changed and removed functions (fresh pools), and the live alyx.yaml keys.
Connections stay up. A plan is kept in data/deployments/plans/ (deploy/store.py), so any
server process can execute it (with `alyx serve --workers N`, prepare and execute may
reach different workers): a process that did not prepare it computes it again from the
stored bundle and refuses it unless the live state is still the one it was prepared
against. A plan not executed within PLAN_TTL, or once another deploy ran, is refused
with STALE_PLAN.

The commit and the schema swap happen under the schema gate's exclusive side
(tools/gate.py): requests that touch documents and are in flight finish first on the old
schema, new ones wait and then run on the new one, so none meets a table the schema it
runs does not describe. With several workers every gate closes at once (each worker's
pause is the slowest drain, the commit, the files and its own swap: api/deploy_peers.py)
and each opens as soon as its worker serves the new schema. If those in flight do not
finish within Deployer.drain_timeout, the deploy (or rollback) is refused before it
changed anything. Functions and alyx.yaml keys are swapped after the gates open again,
once the requests that waited at them have finished (at most SETTLE_LIMIT): new pools
warm while requests flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from alyx_server.api.admin_live import (
    StagedSchema,
    reload_functions,
    reload_settings,
    stage_schema,
    swap_staged_schema,
)
from alyx_server.api.auth import caller
from alyx_server.api.bodies import read_json
from alyx_server.api.deploy_peers import SETTLE_LIMIT, SiblingHold, hold_siblings
from alyx_server.api.pipeline import HTTP_POLICY, json_response
from alyx_server.api.realtime import REALTIME
from alyx_server.api.runtime import RUNTIME
from alyx_server.auth import AuthContext
from alyx_server.auth.admin_users import require_admin
from alyx_server.config.registry import KEYS_BY_PATH
from alyx_server.deploy.bundle import MAX_BUNDLE_SIZE_DEFAULT, BundleContents, read_bundle
from alyx_server.deploy.execute import (
    StalePlan,
    commit,
    deploy_lock,
    deployments_folder,
    lease_taken,
    mark_applied,
    stage,
    swap_files,
    with_config,
)
from alyx_server.deploy.plan import (
    DeployPlan,
    compute_plan,
    live_files,
    live_fingerprint,
    live_function_changes,
)
from alyx_server.deploy.rollback import choose_target, plan_rollback, restore_commit, rollback_commit
from alyx_server.deploy.store import (
    MAX_PLANS,
    DeployInProgress,
    PlanRow,
    current_row,
    delete_plan,
    next_version,
    plan_bundles,
    plan_row,
    prune_bundles,
    read_bundle_file,
    read_rows,
    save_plan,
    swapping_row,
    write_bundle_file,
)
from alyx_server.errors import FieldIssue, PayloadTooLarge, ValidationError
from alyx_server.schema.loader import parse_schema

__all__ = ["DEPLOYER", "Deployer", "add_routes", "deploy_context", "rollback_plan", "run_rollback"]

log = logging.getLogger("alyx.deploy")

_SHA = "X-Bundle-SHA256"
PREPARE_PATH = "/api/admin/deploy/prepare"
DRAIN_TIMEOUT = 30.0


class Phases:
    """How long each step of a deploy took, for its log line: `mark(name)` ends a step."""

    __slots__ = ("_last", "steps")

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.steps: list[tuple[str, float]] = []

    def mark(self, name: str, *, before: tuple[str, float] | None = None) -> None:
        """End the step `name`; `before`: a part of it, (name, ms), that came first."""
        now = time.perf_counter()
        ms = (now - self._last) * 1000
        if before is not None:
            self.steps.append(before)
            ms -= before[1]
        self.steps.append((name, ms))
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {ms:.0f} ms" for name, ms in self.steps)


@dataclass
class _Prepared:
    plan: DeployPlan
    contents: BundleContents
    message: str
    schema: StagedSchema | None = None


@dataclass
class Deployer:
    """The plans this process prepared or computed again (a cache of `_alyx_deploy_plans`,
    which is the authority) and the lock one execute holds. `drain_timeout`: how long a
    commit-and-swap waits for the requests in flight on the old schema."""

    plans: dict[str, _Prepared] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    drain_timeout: float = DRAIN_TIMEOUT

    def remember(self, plan_id: str, prepared: _Prepared) -> None:
        while len(self.plans) >= MAX_PLANS:
            del self.plans[next(iter(self.plans))]
        self.plans[plan_id] = prepared


DEPLOYER = web.AppKey("deployer", Deployer)


@contextlib.asynccontextmanager
async def _schema_gate(
    app: web.Application, schema_text: bytes | None, *, pause: bool = True
) -> AsyncIterator[SiblingHold]:
    """Have the other workers stage `schema_text` (the schema.yaml being deployed), then
    close their schema gates and this one's exclusively at once (api/deploy_peers.py, and
    see the module docstring); DeployInProgress, with nothing changed, when the requests
    in flight do not finish in time. This process's gate opens at `open_own()` (once it
    serves the new schema) or at the end of the block. `pause=False`, for a plan that only
    adds (`DeployPlan.pause`): no gate closes, the other workers stage and swap."""
    timeout = app[DEPLOYER].drain_timeout
    own = app[HTTP_POLICY].gate if pause else None
    async with hold_siblings(app, timeout, schema_text, own, pause=pause) as siblings:
        yield siblings


@contextlib.asynccontextmanager
async def _deploy_lease(app: web.Application) -> AsyncIterator[None]:
    """The deploy lease execute and rollback run under: this process's lock, then
    data/deployments/.lock; DeployInProgress at once when this process's is taken."""
    deployer = app[DEPLOYER]
    if deployer.lock.locked():
        raise DeployInProgress(
            "another deploy is executing on this server; wait for it to finish "
            "(alyx deploy status shows it), then run this one again"
        )
    async with deployer.lock:
        with deploy_lock(deployments_folder(app[RUNTIME].settings)):
            yield


def _setting(request: web.Request, path: str, fallback: int) -> int:
    return _setting_of(request.app, path, fallback)


def _setting_of(app: web.Application, path: str, fallback: int) -> int:
    values = app[RUNTIME].settings.values
    value = values.get(path, fallback) if path in KEYS_BY_PATH else fallback
    return int(value) if isinstance(value, int) else fallback


def _who(auth: AuthContext) -> str:
    data = auth.as_dict()
    metadata = data.get("metadata") or {}
    if auth.kind != "user" and isinstance(metadata, dict) and metadata.get("token_name"):
        return str(metadata["token_name"])
    return str(data.get("email") or data["id"])


# -- prepare -----------------------------------------------------------------------------------
async def prepare(request: web.Request) -> web.StreamResponse:
    require_admin(caller(request), "deploy")
    announced = request.headers.get(_SHA, "").strip().lower()
    if not announced:
        raise ValidationError(
            f"send the bundle's sha256 in the {_SHA} header (alyx deploy does)", code="INVALID_BUNDLE"
        )
    max_size = _setting(request, "deploy.max_bundle_size", MAX_BUNDLE_SIZE_DEFAULT)
    phases = Phases()
    data = await _read_bundle_body(request, max_size)
    phases.mark("upload")
    contents = await asyncio.to_thread(read_bundle, data, max_size=max_size, expected_sha256=announced)
    phases.mark("unpack")
    rt = request.app[RUNTIME]
    settings = rt.settings
    folder = deployments_folder(settings)
    await asyncio.to_thread(write_bundle_file, folder, contents.sha256, data)
    staged = await asyncio.to_thread(stage, contents, folder)
    phases.mark("stage")
    db = rt.ready_db()
    try:
        plan = await db.read(lambda conn: compute_plan(conn, contents, staged, settings, next_version(conn)))
    finally:
        await asyncio.to_thread(shutil.rmtree, staged, True)
    phases.mark("plan")
    # A rule that does not compile is refused now (off the event loop: requests go on);
    # what is compiled serves once this process executes the plan.
    staged_schema = await asyncio.to_thread(stage_schema, rt.catalog.schema, plan.schema)
    phases.mark("rules")
    message = request.query.get("message", "")
    plan_id = uuid.uuid4().hex
    now = rt.clock.now().timestamp()
    row = PlanRow(plan_id, plan.bundle_sha256, plan.fingerprint, plan.version, message, now)
    await asyncio.to_thread(save_plan, folder, row)
    request.app[DEPLOYER].remember(plan_id, _Prepared(plan, contents, message, staged_schema))
    await _prune(request)
    phases.mark("save")
    log.info("prepared plan %s for version %d (%s)", plan_id[:8], plan.version, phases)
    return json_response({"plan_id": plan_id, **plan.to_dict()})


async def _read_bundle_body(request: web.Request, limit: int) -> bytes:
    """The upload, up to deploy.max_bundle_size (not server.max_body_size: a bundle may be
    bigger than any API body), refused as soon as it passes the limit."""

    def too_big(size: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the bundle is over deploy.max_bundle_size ({limit} bytes; {size} bytes sent): leave "
            "large files out with .alyxignore, or raise deploy.max_bundle_size on the server"
        )

    length = request.content_length
    if length is not None and length > limit:
        raise too_big(length)
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise too_big(len(data))
    return bytes(data)


async def _prune(request: web.Request) -> None:
    """Drop old bundles, never one a history row or a prepared plan still needs."""
    rt = request.app[RUNTIME]
    keep = _setting(request, "deploy.keep_bundles", 10)
    db = rt.ready_db()
    rows = await db.read(lambda conn: read_rows(conn, limit=max(keep, 1)))
    folder = deployments_folder(rt.settings)
    needed = await asyncio.to_thread(plan_bundles, folder) | {r.bundle_sha256 for r in rows}
    await asyncio.to_thread(prune_bundles, folder, keep, needed)


async def _load_plan(app: web.Application, plan_id: str) -> _Prepared:
    """The plan `plan_id`, from this process's cache or computed again from its stored
    bundle; StalePlan when it is unknown, expired, or the live state moved on."""
    rt = app[RUNTIME]
    db = rt.ready_db()
    now = rt.clock.now().timestamp()
    settings = rt.settings
    folder = deployments_folder(settings)
    row = await asyncio.to_thread(plan_row, folder, plan_id, now)
    deployer = app[DEPLOYER]
    if row is None:
        deployer.plans.pop(plan_id, None)
        raise StalePlan("unknown or expired plan_id: run alyx deploy again for a new plan")
    cached = deployer.plans.get(plan_id)
    if cached is not None:
        return cached
    stale = StalePlan(
        "the server changed since this plan was prepared (another deploy ran, or its "
        "files changed): run alyx deploy again for a new plan"
    )
    live = await db.read(lambda conn: (live_fingerprint(conn, settings), next_version(conn)))
    if live != (row.fingerprint, row.version):
        raise stale
    max_size = _setting_of(app, "deploy.max_bundle_size", MAX_BUNDLE_SIZE_DEFAULT)
    data = await asyncio.to_thread(read_bundle_file, folder, row.bundle_sha256)
    contents = await asyncio.to_thread(
        read_bundle, data, max_size=max_size, expected_sha256=row.bundle_sha256
    )
    staged = await asyncio.to_thread(stage, contents, folder)
    try:
        plan = await db.read(lambda conn: compute_plan(conn, contents, staged, settings, next_version(conn)))
    finally:
        await asyncio.to_thread(shutil.rmtree, staged, True)
    if (plan.fingerprint, plan.version) != (row.fingerprint, row.version):
        raise stale
    prepared = _Prepared(plan, contents, row.message)
    deployer.remember(plan_id, prepared)
    return prepared


# -- execute -----------------------------------------------------------------------------------
_EXECUTE_FIELDS = frozenset({"plan_id", "bundle_sha256", "message", "git_commit", "git_dirty"})


def _execute_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object with plan_id and bundle_sha256")
    unknown = sorted(set(body) - _EXECUTE_FIELDS)
    if unknown:
        message = f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(_EXECUTE_FIELDS))}"
        raise ValidationError(message, [FieldIssue(k, "unknown", message) for k in unknown])
    for name in ("plan_id", "bundle_sha256"):
        if not isinstance(body.get(name), str) or not body[name]:
            message = f"{name} is required: the value prepare answered"
            raise ValidationError(message, [FieldIssue(name, "required", message)])
    for name in ("message", "git_commit"):
        if body.get(name) is not None and not isinstance(body[name], str):
            message = f"{name} must be a string"
            raise ValidationError(message, [FieldIssue(name, "invalid_type", message)])
    if body.get("git_dirty") is not None and not isinstance(body["git_dirty"], bool):
        message = "git_dirty must be true or false"
        raise ValidationError(message, [FieldIssue("git_dirty", "invalid_type", message)])
    return body


async def execute(request: web.Request) -> web.StreamResponse:
    auth = require_admin(caller(request), "deploy")
    body = _execute_body(await read_json(request))
    async with _deploy_lease(request.app):
        result = await _execute_locked(request, body, auth)
    await _prune(request)
    return json_response(result)


async def _execute_locked(request: web.Request, body: dict[str, Any], auth: AuthContext) -> dict[str, Any]:
    """Execute once the deploy lease is held (this process's lock and data/deployments/.lock)."""
    plan_id = body["plan_id"]
    prepared = await _load_plan(request.app, plan_id)
    if body["bundle_sha256"].lower() != prepared.contents.sha256:
        message = "bundle_sha256 is not the hash of the bundle this plan was made for"
        raise ValidationError(message, [FieldIssue("bundle_sha256", "mismatch", message)])
    details = {
        "token_name": _who(auth),
        "message": body.get("message") or prepared.message,
        "git_commit": body.get("git_commit"),
        "git_dirty": body.get("git_dirty"),
    }
    result = await _execute(request.app, prepared, details)
    request.app[DEPLOYER].plans.pop(plan_id, None)
    await asyncio.to_thread(delete_plan, deployments_folder(request.app[RUNTIME].settings), plan_id)
    return result


async def _execute(app: web.Application, prepared: _Prepared, details: dict[str, Any]) -> dict[str, Any]:
    rt = app[RUNTIME]
    settings = rt.settings
    plan, contents = prepared.plan, prepared.contents
    folder = deployments_folder(settings)
    started = time.monotonic()
    phases = Phases()
    staged = await asyncio.to_thread(stage, contents, folder)
    phases.mark("stage")
    # Everything the swap needs is made before the gate closes: under it, only the commit
    # and the swap of references (each sibling staged the schema before the gates closed).
    new_schema = prepared.schema
    if new_schema is None:
        new_schema = await asyncio.to_thread(stage_schema, rt.catalog.schema, plan.schema)
    phases.mark("compile")
    db = rt.ready_db()
    # Read off the write lock: under it, writers wait for the migration alone.
    live = await asyncio.to_thread(live_files, settings)
    async with _schema_gate(app, contents.files.get("schema.yaml"), pause=plan.pause) as siblings:
        phases.mark("gate", before=("siblings stage", siblings.stage_ms))
        await db.run_exclusive(
            lambda conn: commit(
                conn, plan, contents, staged, settings, details=details, clock=rt.clock, files=live
            )
        )
        phases.mark("commit")
        # The commit point is passed: from here on the new version is the one in force, and
        # a crash is finished at start-up (deploy.execute.recover_interrupted). The files go
        # in place while the gates open (no request reads them; the new function pools,
        # started after, do): the siblings swap in the schema they staged and open their
        # gates while this process swaps and opens its own without waiting for them. A
        # sibling that could not stage reads schema.yaml from disk: it waits for the files.
        files = asyncio.ensure_future(asyncio.to_thread(swap_files, staged, settings, contents.config))
        try:
            if not siblings.all_staged:
                await files
            swapping = asyncio.ensure_future(siblings.swap())
            try:
                await swap_staged_schema(app, new_schema)
                siblings.open_own()
                phases.mark("swap")
            finally:
                await swapping
            phases.mark("siblings")
        finally:
            await files
        phases.mark("files")
    # The requests that waited at this gate finish (at most SETTLE_LIMIT) before the new
    # function pools take the cores.
    await app[HTTP_POLICY].gate.settle(SETTLE_LIMIT)
    phases.mark("settle")
    f = plan.functions
    # The bundle's alyx.yaml keys are laid over again only when the plan changes one: each
    # time costs every worker a read and a validation of the whole configuration.
    config = contents.config if plan.config else {}
    # One worker at a time: this one, then each sibling in turn. Each new pool's start is a
    # Node or Python process (tens of ms of CPU); started together they took every core the
    # load runs on, and its p99 during a deploy rose by a quarter (docs/benchmarks.md).
    await _hot_swap(app, plan, config)
    await siblings.finish([*f["added"], *f["changed"], *f["removed"]], config, ())
    phases.mark("functions")
    duration_ms = round((time.monotonic() - started) * 1000)
    await db.write(lambda conn: mark_applied(conn, plan.version, duration_ms, rt.clock))
    await asyncio.to_thread(shutil.rmtree, staged, True)
    phases.mark("applied")
    log.info(
        "deployed version %d (%s) in %d ms (%s)", plan.version, plan.bundle_sha256[:12], duration_ms, phases
    )
    return {"version": plan.version, "outcome": "applied", "duration_ms": duration_ms, "plan": plan.to_dict()}


async def _hot_swap(app: web.Application, plan: DeployPlan, config: Mapping[str, object]) -> None:
    """The running server takes the new functions and live keys of `config` (no restart);
    the schema was swapped under the gate."""
    rt = app[RUNTIME]
    f = plan.functions
    names = [*f["added"], *f["changed"], *f["removed"]]
    if names:
        await reload_functions(app, names)
    if config:
        new = await asyncio.to_thread(with_config, rt.settings, config)
        await reload_settings(app, new)


# -- rollback ----------------------------------------------------------------------------------
_ROLLBACK_FIELDS = frozenset({"version", "restore_backup", "message"})


def _rollback_body(body: Any) -> tuple[int | None, bool, str]:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValidationError('the body must be a JSON object, e.g. {"version": 3}')
    unknown = sorted(set(body) - _ROLLBACK_FIELDS)
    if unknown:
        message = f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(_ROLLBACK_FIELDS))}"
        raise ValidationError(message, [FieldIssue(k, "unknown", message) for k in unknown])
    version = body.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        message = "version must be a deployed version number (alyx deploy history lists them)"
        raise ValidationError(message, [FieldIssue("version", "invalid_type", message)])
    restore = body.get("restore_backup", False)
    if not isinstance(restore, bool):
        message = "restore_backup must be true or false"
        raise ValidationError(message, [FieldIssue("restore_backup", "invalid_type", message)])
    text = body.get("message")
    if text is not None and not isinstance(text, str):
        message = "message must be a string"
        raise ValidationError(message, [FieldIssue("message", "invalid_type", message)])
    return version, restore, text or ""


async def rollback(request: web.Request) -> web.StreamResponse:
    auth = require_admin(caller(request), "deploy")
    raw = await request.read()
    version, restore, message = _rollback_body(await read_json(request) if raw.strip() else None)
    return json_response(await run_rollback(request, auth, version, restore, message))


async def run_rollback(
    request: web.Request, auth: AuthContext, version: int | None, restore: bool, message: str
) -> dict[str, Any]:
    """The rollback of POST /api/admin/deploy/rollback, for a caller that read its own
    request (the admin UI's confirmation form); answers that route's body."""
    async with _deploy_lease(request.app):
        return await _rollback_locked(request, auth, version, restore, message)


async def rollback_plan(app: web.Application, version: int | None) -> dict[str, Any]:
    """What a rollback to `version` (default: the one before the version in force) would
    do, computed without changing anything: the admin UI shows it before it confirms."""
    rt = app[RUNTIME]
    settings = rt.settings
    folder = deployments_folder(settings)
    plan = await rt.ready_db().read(lambda conn: plan_rollback(conn, version, folder))
    data = await asyncio.to_thread(read_bundle_file, folder, plan.target.bundle_sha256)
    max_size = _setting_of(app, "deploy.max_bundle_size", MAX_BUNDLE_SIZE_DEFAULT)
    contents = await asyncio.to_thread(read_bundle, data, max_size=max_size)
    functions = await asyncio.to_thread(live_function_changes, settings, contents.files)
    return {
        "current": plan.current.to_dict(),
        "target": plan.target.to_dict(),
        "migrations_undone": plan.migrations_undone,
        "irreversible": plan.refused,
        "backup": plan.backup,
        "functions": functions,
        "config": sorted(
            key
            for key in {*contents.config, *plan.current.config}
            if contents.config.get(key) != plan.current.config.get(key)
        ),
    }


async def _rollback_locked(
    request: web.Request, auth: AuthContext, version: int | None, restore: bool, message: str
) -> dict[str, Any]:
    """Rollback once the deploy lease is held: undo migrations, or restore the database copy."""
    app = request.app
    rt = app[RUNTIME]
    settings = rt.settings
    db = rt.ready_db()
    started = time.monotonic()
    current, target = await db.read(lambda conn: choose_target(conn, version))
    folder = deployments_folder(settings)
    data = await asyncio.to_thread(read_bundle_file, folder, target.bundle_sha256)
    max_size = _setting(request, "deploy.max_bundle_size", MAX_BUNDLE_SIZE_DEFAULT)
    contents = await asyncio.to_thread(read_bundle, data, max_size=max_size)
    schema = parse_schema(contents.files["schema.yaml"].decode("utf-8", errors="replace"))
    staged = await asyncio.to_thread(stage, contents, folder)
    functions = await asyncio.to_thread(live_function_changes, settings, contents.files)
    details = {"token_name": _who(auth), "message": message}
    restored: str | None = None
    undone: list[str] = []
    new_schema = await asyncio.to_thread(stage_schema, rt.catalog.schema, schema)
    async with _schema_gate(app, contents.files.get("schema.yaml")) as siblings:
        if restore:
            new_version, restored = await db.run_exclusive(
                lambda conn: restore_commit(
                    conn, target, current.version, contents, folder, details=details, clock=rt.clock
                )
            )
        else:
            new_version, undone = await db.run_exclusive(
                lambda conn: rollback_commit(
                    conn, target, current.version, contents, details=details, clock=rt.clock
                )
            )
        await asyncio.to_thread(swap_files, staged, settings, contents.config)
        await swap_staged_schema(app, new_schema)
        hub = app[REALTIME].hub
        if restored is not None and hub is not None:
            # Every collection's rows may differ now: each subscription gets a fresh snapshot.
            await hub.revalidate(c.name for c in schema.collections)
        await siblings.swap(revalidate_all=restored is not None)
    await app[HTTP_POLICY].gate.settle(SETTLE_LIMIT)
    names = [*functions["added"], *functions["changed"], *functions["removed"]]

    async def here() -> None:
        if names:
            await reload_functions(app, names)
        new = await asyncio.to_thread(with_config, rt.settings, contents.config, current.config)
        await reload_settings(app, new)

    # One worker at a time, as a deploy does (see _execute).
    await here()
    await siblings.finish(names, contents.config, list(current.config))
    duration_ms = round((time.monotonic() - started) * 1000)
    await db.write(lambda conn: mark_applied(conn, new_version, duration_ms, rt.clock))
    await asyncio.to_thread(shutil.rmtree, staged, True)
    log.info("rolled back to version %d as version %d", target.version, new_version)
    return {
        "version": new_version,
        "outcome": "applied",
        "rollback_of": target.version,
        "migrations_undone": undone,
        "restored_backup": restored,
        "functions": functions,
        "duration_ms": duration_ms,
    }


# -- history and status ------------------------------------------------------------------------
async def history(request: web.Request) -> web.StreamResponse:
    require_admin(caller(request), "deploy")
    rows = await request.app[RUNTIME].ready_db().read(read_rows)
    return json_response({"deployments": [r.to_dict() for r in rows]})


async def status(request: web.Request) -> web.StreamResponse:
    require_admin(caller(request), "deploy")
    db = request.app[RUNTIME].ready_db()
    current, swapping = await db.read(lambda conn: (current_row(conn), swapping_row(conn)))
    folder = deployments_folder(request.app[RUNTIME].settings)
    running = request.app[DEPLOYER].lock.locked() or swapping is not None or lease_taken(folder)
    return json_response(
        {
            "version": None if current is None else current.version,
            "bundle_sha256": None if current is None else current.bundle_sha256,
            "running": running,
        }
    )


@contextlib.asynccontextmanager
async def deploy_context(app: web.Application) -> AsyncIterator[None]:
    """Drop staging folders a stopped process left behind (nothing of them is in force)."""
    await asyncio.to_thread(_drop_stale_staging, deployments_folder(app[RUNTIME].settings))
    yield


STALE_STAGING = 600.0
"""Seconds after which a staging folder is a leftover, not another process's prepare."""


def _drop_stale_staging(folder: Path) -> None:
    # With several workers, another process may be preparing right now in a staging
    # folder of its own (`<sha>.<pid>.<n>`, deploy/execute.py's stage): under the deploy
    # lease (so no execute runs anywhere), remove the folders of processes that are gone,
    # and any older than a prepare takes (a pid used again).
    staging = folder / "staging"
    if not staging.is_dir():
        return
    try:
        with deploy_lock(folder):
            cutoff = time.time() - STALE_STAGING
            for entry in staging.iterdir():
                with contextlib.suppress(OSError):
                    if not _owner_alive(entry.name) or entry.stat().st_mtime < cutoff:
                        shutil.rmtree(entry, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging.rmdir()  # empty now: as if no deploy had ever been staged
    except DeployInProgress:
        return  # a deploy is executing in another process; the next start cleans up


def _owner_alive(name: str) -> bool:
    parts = name.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) == os.getpid():
        return False  # (this process is starting: nothing staged is its own yet)
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def add_routes(app: web.Application) -> None:
    app[DEPLOYER] = Deployer()
    policy = app.get(HTTP_POLICY)
    if policy is not None:
        policy.own_limits.add(PREPARE_PATH)
    app.router.add_post(PREPARE_PATH, prepare)
    app.router.add_post("/api/admin/deploy/execute", execute)
    app.router.add_post("/api/admin/deploy/rollback", rollback)
    app.router.add_get("/api/admin/deploy/history", history)
    app.router.add_get("/api/admin/deploy/status", status)
