"""The one place that wires Alyx together: `create_app(settings)` and `serve(app, ...)`.

`create_app` builds the aiohttp application and every service it holds: the pipeline
middleware, the `Runtime`, the `AuthService`, the function and realtime holders (each
under a typed `web.AppKey`; handlers in `api/` only read them), the routes of `api/`,
and one cleanup context per service, which starts it, yields while the application
serves, and stops it. They start in this order and stop in the reverse one:

    database   open it (writer thread, readers, change poller with pruning), then bring
               it to schema.yaml:
                 dev    system migrations, pending files and safe changes at once
                        (`dev.auto_migrate`); a destructive change refuses to start
                 serve  refuse to start on a destructive change without a migration
                        file or an edited applied file; otherwise apply the pending
                        files and safe changes in the background while /health/ready
                        says 503
               stop: close it; every acknowledged write is committed first
    peers      this worker's peer socket in the database's run directory (api/peer_app.py:
               its state and admin events for the sibling workers); stop: remove it
    auth       say when no admin account exists; stop: send the emails in flight,
               stop the hashing threads
    oauth      read the OpenID providers' discovery documents (serve: an unreachable
               issuer stops the start; dev: a warning)
    realtime   the hub (subscribed to the change feed) and the credential watch
               stop: close them (see below)
    deploy     drop the staging folders of unfinished prepares (data/deployments/staging)
    functions  the internal API on a Unix socket in a private temporary folder (outside
               the data directory), discovery and the warm pools; stop: the workers,
               the socket and the folder
    automation after-write hooks (capturing triggers installed, one task per hook) and
               the scheduler (api/automation.py); stop: their tasks, their leases freed
    jobs       the job queue's runner (functions with a job: section, webhook
               deliveries) and the webhook dispatcher reading the change log from its
               cursor; stop: the runs in flight get a few seconds, then their leases
               are left to expire (another process or the next start runs them again)

The realtime connections also close on aiohttp's `on_shutdown`, the one other hook
used: aiohttp waits for the handlers in flight (up to SHUTDOWN_TIMEOUT) before it runs
the cleanup contexts, and a WebSocket handler ends only when its connection closes.

`serve` runs an application on a host and port until SIGINT or SIGTERM, then shuts down
gracefully: the listener closes, requests in flight finish, queued writes commit.
`bind_listeners` binds the port beforehand, so a port in use stops the CLI before the
database is opened or migrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from alyx_server.admin_ui import add_admin_ui
from alyx_server.api import admin, admin_users, automation, batch, collections, meta, peer_app
from alyx_server.api import auth as auth_api
from alyx_server.api import deploy as deploy_api
from alyx_server.api import files as files_api
from alyx_server.api import functions as functions_api
from alyx_server.api import jobs as jobs_api
from alyx_server.api import oauth as oauth_api
from alyx_server.api import realtime as realtime_api
from alyx_server.api import webhooks as webhooks_api
from alyx_server.api.file_service import FILES, FileService
from alyx_server.api.internal import create_internal_app
from alyx_server.api.pipeline import HTTP_POLICY, HttpPolicy, LiveHttpPolicy, direct_dispatch, make_pipeline
from alyx_server.api.realtime_credentials import CredentialWatch
from alyx_server.api.runtime import RUNTIME, Catalog, Runtime, SqlTrace
from alyx_server.auth import AuthService
from alyx_server.auth.oauth import OAuthService
from alyx_server.auth.users import NO_ADMIN_HINT, admin_missing
from alyx_server.config import Settings
from alyx_server.db import Database
from alyx_server.deploy.execute import deployed_settings, recover_interrupted
from alyx_server.errors import MigrationError
from alyx_server.functions.manifest import Defaults, discover_functions
from alyx_server.functions.pool import PoolLimits
from alyx_server.functions.service import FunctionService
from alyx_server.functions.tokens import TokenRegistry
from alyx_server.jobs import JobKind, JobQueue
from alyx_server.jobs.functions import function_job_kinds
from alyx_server.listeners import BACKLOG, banner, bind_listeners
from alyx_server.metrics import Metrics
from alyx_server.migrations import apply_migrations, apply_system_migrations, plan_migrations
from alyx_server.migrations.history import latest_snapshot, read_history
from alyx_server.realtime import RealtimeHub
from alyx_server.rules import AccessPolicy
from alyx_server.rules.access import CelAccess
from alyx_server.rules.load import compile_schema_rules, compile_where, load_schema_rules
from alyx_server.rules.lookups import set_lookup_depth
from alyx_server.schema.model import Schema
from alyx_server.storage import open_storage
from alyx_server.storage.backend import Storage
from alyx_server.storage.sweeper import SweepLock, free_dropped_fields, referenced_folders, sweep_once
from alyx_server.storage.tokens import FileTokens
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock
from alyx_server.webhooks.delivery import WebhookClient
from alyx_server.webhooks.service import WebhookService

__all__ = [
    "GC_THRESHOLD",
    "banner",
    "bind_listeners",
    "create_app",
    "hand_over",
    "reap_own_children",
    "run_server",
    "serve",
    "tune_collector",
]

log = logging.getLogger("alyx.server")

SHUTDOWN_TIMEOUT = 30.0


def create_app(
    settings: Settings,
    *,
    schema: Schema | None = None,
    clock: Clock = SYSTEM_CLOCK,
    policy: AccessPolicy | None = None,
    sql_trace: SqlTrace | None = None,
) -> web.Application:
    """The Alyx application for `settings`.

    `schema` defaults to the project's schema.yaml (read now, so a bad file fails here);
    `policy` to the schema's CEL rules, compiled now (a bad rule fails here); `sql_trace`,
    when given, is called with every SQL statement that document reads run (tests use it
    to count queries).

    A deploy the last process was killed in the middle of is finished first (its files put
    in place from the stored bundle), and the alyx.yaml keys deploys set are laid over
    `settings` (deploy/execute.py), before schema.yaml is read.
    """
    recover_interrupted(settings, clock=clock)
    settings = deployed_settings(settings)
    set_lookup_depth(settings.rules.lookup_depth)
    rules = None
    if schema is None:
        # The one check every command runs (rules compiled): what `alyx migrate apply`
        # accepts, the server accepts.
        rules = load_schema_rules(settings.project_dir / "schema.yaml")
        schema = rules.schema
    if policy is None:
        policy = CelAccess(rules if rules is not None else compile_schema_rules(schema))
    metrics = Metrics()
    runtime = Runtime(
        settings=settings,
        policy=policy,
        metrics=metrics,
        clock=clock,
        catalog=Catalog(schema),
        sql_trace=sql_trace,
    )
    server = settings.server
    http = LiveHttpPolicy(
        HttpPolicy(
            cors_origins=server.cors.allowed_origins,
            trusted_proxies=server.trusted_proxies,
            max_body_size=server.max_body_size,
            clock=clock,
        )
    )
    events = admin.AdminEvents(clock)
    pipeline = make_pipeline(
        http, metrics.observe_request, auth_api.authenticate_request, events.observe_request
    )
    app = web.Application(middlewares=[pipeline], client_max_size=server.max_body_size)
    app[RUNTIME] = runtime
    app[HTTP_POLICY] = http
    app[auth_api.AUTH_SERVICE] = AuthService(settings.auth, clock=clock, database=runtime.ready_db)
    app[oauth_api.OAUTH] = OAuthService(
        app[auth_api.AUTH_SERVICE], settings.auth.oauth, settings.oauth_providers
    )
    app[functions_api.FUNCTIONS] = functions_api.Functions()
    app[automation.AUTOMATION] = automation.Automation()
    app[realtime_api.REALTIME] = realtime_api.RealtimeState()
    app[FILES] = FileService(open_storage(settings), FileTokens(settings.auth.jwt.secret))
    collections.add_routes(app)
    batch.add_routes(app)
    meta.add_routes(app)
    auth_api.add_routes(app)
    oauth_api.add_routes(app)
    admin_users.add_routes(app)
    realtime_api.add_routes(app)
    functions_api.add_routes(app)
    jobs_api.add_routes(app)
    webhooks_api.add_routes(app)
    admin.add_routes(app, events)
    deploy_api.add_routes(app)
    files_api.add_routes(app)
    peer_app.add_peers(app)
    app.cleanup_ctx.extend(
        (
            _database_context(schema),
            peer_app.peers_context,
            deploy_api.deploy_context,
            _auth_context,
            _storage_context,
            contextlib.asynccontextmanager(oauth_api.oauth_context),
            _realtime_context,
            _functions_context,
            _jobs_context,
            automation.automation_context,
        )
    )
    app.on_shutdown.append(_close_realtime)
    # Last: its cleanup context (alyx dev's sign-in link) needs the database open.
    add_admin_ui(app)
    return app


def _database_context(
    schema: Schema,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def database(app: web.Application) -> AsyncIterator[None]:
        rt = app[RUNTIME]
        settings = rt.settings
        path = settings.database.path
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        db = await Database.open(
            path,
            schema,
            synchronous=settings.database.synchronous,
            clock=rt.clock,
            changes_retention=settings.database.changes_retention,
            poll_interval=settings.realtime.poll_interval,
        )
        db.add_group_listener(rt.metrics.observe_write_group)
        rt.attach(db)
        task: asyncio.Task[None] | None = None
        try:
            if settings.mode == "dev":
                await _migrate_dev(rt, db, schema, app[FILES].storage)
            else:
                task = await _start_serve_migrations(rt, db, schema, app[FILES].storage)
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await db.close()
            rt.attach(None)

    return database


@contextlib.asynccontextmanager
async def _storage_context(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    interval = rt.settings.storage.sweep_interval
    task = None
    if interval > 0:
        task = asyncio.get_running_loop().create_task(
            _sweep_periodically(app, interval), name="alyx-storage-sweep"
        )
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app[FILES].storage.close()


async def _sweep_periodically(app: web.Application, interval: float) -> None:
    """Remove stored files no document references (storage/sweeper.py), one process of the
    database at a time; the first sweep one interval after start."""
    rt = app[RUNTIME]
    lock = SweepLock(rt.settings.database.path)
    try:
        await rt.ready.wait()
        while True:
            await asyncio.sleep(interval)
            db, schema = rt.db, rt.catalog.schema

            async def read_referenced(db: Database = db, schema: Schema = schema) -> set[str]:
                return await db.read(lambda conn: referenced_folders(conn, schema))

            grace = float(rt.settings.values.get("storage.sweep_grace", 21_600.0))  # type: ignore[arg-type]
            try:
                await sweep_once(
                    app[FILES].storage,
                    read_referenced,
                    lock,
                    now=rt.clock.now().timestamp(),
                    grace=grace,
                )
            except Exception:
                log.exception("the storage sweep failed; it runs again in %.0f s", interval)
    finally:
        lock.close()


@contextlib.asynccontextmanager
async def _auth_context(app: web.Application) -> AsyncIterator[None]:
    service = app[auth_api.AUTH_SERVICE]
    try:
        missing = await app[RUNTIME].db.read(admin_missing)
    except Exception:
        log.exception("could not check for an admin account")
    else:
        if missing:
            log.warning(NO_ADMIN_HINT)
    try:
        yield
    finally:
        await service.close()


@contextlib.asynccontextmanager
async def _realtime_context(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    state = app[realtime_api.REALTIME]
    db = rt.db
    hub = RealtimeHub(
        db, rt.settings.realtime, rt.clock,
        metrics=rt.metrics, compile_where=compile_where, expander=realtime_api.live_expander(rt),
        gate=app[HTTP_POLICY].gate,
    )  # fmt: skip
    state.hub = hub
    state.watch = CredentialWatch(db, hub, app[auth_api.AUTH_SERVICE])
    try:
        yield
    finally:
        await state.close()


async def _close_realtime(app: web.Application) -> None:
    await app[realtime_api.REALTIME].close()


@contextlib.asynccontextmanager
async def _functions_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[RUNTIME].settings
    holder = app[functions_api.FUNCTIONS]
    folder = Path(tempfile.mkdtemp(prefix="alyx-functions-"))
    os.chmod(folder, 0o700)
    socket_path = folder / "api.sock"
    tokens = TokenRegistry()
    internal = web.AppRunner(create_internal_app(app, tokens), access_log=None)
    await internal.setup()
    service: FunctionService | None = None
    try:
        await web.UnixSite(internal, str(socket_path)).start()
        functions = settings.functions
        discovery = discover_functions(
            functions.path, Defaults(functions.timeout, functions.memory), root=settings.project_dir
        )
        pool = functions.pool
        service = FunctionService(
            discovery,
            holder.backend_factory(settings, socket_path),
            PoolLimits(pool.min_warm, pool.max_instances, pool.idle_timeout, pool.max_queue),
            compile_rule=holder.compile_rule,
            tokens=tokens,
            show_stacks=settings.mode == "dev",
        )
        await service.start()
        holder.service = service
        yield
    finally:
        holder.service = None
        if service is not None:
            await service.close()
        await internal.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def _jobs_context(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    settings = rt.settings
    service = app[functions_api.FUNCTIONS].service
    pool = settings.functions.pool

    def function_jobs() -> dict[str, JobKind]:
        return function_job_kinds(service, pool.max_instances, pool.max_queue) if service is not None else {}

    interval = settings.jobs.poll_interval
    queue = JobQueue(rt.ready_db, clock=rt.clock, poll_interval=interval, source=function_jobs)
    hooks = settings.webhooks
    client = WebhookClient(timeout=hooks.timeout, allow_private=hooks.allow_private_targets)
    webhooks = WebhookService(
        rt.ready_db, queue, settings.webhook_targets, client,
        max_attempts=hooks.max_attempts, concurrency=hooks.concurrency,
        poll_interval=interval, clock=rt.clock,
    )  # fmt: skip
    app[jobs_api.JOBS].queue = queue
    app[webhooks_api.WEBHOOKS].service = webhooks

    async def start() -> None:
        # `serve` applies the startup migrations in the background: the runners start
        # once the database is ready (the queue's and webhooks' tables exist).
        if await rt.wait_ready():
            queue.start()
            webhooks.start()

    starting = asyncio.get_running_loop().create_task(start(), name="alyx-jobs-start")
    if rt.phase == "ready":
        await starting
    try:
        yield
    finally:
        app[jobs_api.JOBS].queue = None
        app[webhooks_api.WEBHOOKS].service = None
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        await webhooks.close()
        await queue.close()


def _migrations_dir(settings: Settings) -> Path:
    return settings.project_dir / "migrations"


async def _applied_schema(db: Database) -> Schema:
    return await db.read(lambda conn: latest_snapshot(read_history(conn)))


async def _free_dropped(db: Database, storage: Storage, before: Schema, after: Schema) -> None:
    """The files of the file fields that migrations removed, once they committed."""

    async def referenced() -> set[str]:
        return await db.read(lambda conn: referenced_folders(conn, after))

    await free_dropped_fields(storage, before, after, referenced)


async def _migrate_dev(rt: Runtime, db: Database, schema: Schema, storage: Storage) -> None:
    """`alyx dev`: apply what can be applied now; a destructive change stops the start."""
    folder = _migrations_dir(rt.settings)
    rt.phase = "migrating"
    if rt.settings.dev.auto_migrate:
        before = await _applied_schema(db)
        result = await db.run_exclusive(lambda conn: apply_migrations(conn, schema, folder))
        for name in (*result.files, *result.auto):
            log.info("migration applied: %s", name)
        await _free_dropped(db, storage, before, schema)
    else:
        await db.run_exclusive(apply_system_migrations)
        plan = await db.read(lambda conn: plan_migrations(conn, schema, folder))
        if not plan.up_to_date:
            log.warning(
                "schema.yaml differs from the database and dev.auto_migrate is off: serving "
                "the database's schema; run `alyx migrate apply` to apply schema.yaml"
            )
            rt.set_schema(latest_snapshot(list(plan.history)))
    rt.mark_ready()


async def _start_serve_migrations(
    rt: Runtime, db: Database, schema: Schema, storage: Storage
) -> asyncio.Task[None] | None:
    """`alyx serve`: refuse now what must be refused, apply the rest in the background."""
    folder = _migrations_dir(rt.settings)
    plan = await db.read(lambda conn: plan_migrations(conn, schema, folder))
    if plan.edited:
        raise MigrationError("\n".join(plan.edited))
    if plan.blocked:
        raise MigrationError(plan.blocked)
    rt.phase = "migrating"

    before = latest_snapshot(list(plan.history))

    async def apply() -> None:
        try:
            result = await db.run_exclusive(lambda conn: apply_migrations(conn, schema, folder))
        except Exception as e:
            rt.phase = "failed"
            rt.failure = str(e)
            log.error("migrations failed, stopping: %s", e)
            rt.fatal.set()
            return
        for name in (*result.files, *result.auto):
            log.info("migration applied: %s", name)
        await _free_dropped(db, storage, before, schema)
        rt.mark_ready()
        log.info("migrations done; ready")

    return asyncio.get_running_loop().create_task(apply(), name="alyx-startup-migrations")


GC_THRESHOLD = (10_000, 20, 100)


def tune_collector() -> None:
    """Once serving: keep what start-up built out of the cyclic garbage collector's way.

    Everything alive now (modules, schema, compiled rules, the application) lives as long
    as the process, so `gc.freeze()` moves it to the permanent generation and collections
    stop traversing it. The youngest generation's threshold goes from Python's 700 to
    10,000 allocations: under load (a realtime fan-out allocates a few objects per message)
    the default ran a collection every few hundred messages, and the older generations'
    collections, which walk every connection's objects, showed as 100-200 ms stalls in the
    fan-out's p99 (docs/benchmarks.md). Reference counting still frees acyclic garbage at
    once; only cycles wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def reap_own_children() -> None:
    """Give SIGCHLD back its default action when the launcher left it ignored.

    An ignored SIGCHLD survives exec (some supervisors and shells set it). The kernel then
    reaps every child by itself: asyncio's child watcher finds nothing to wait for, logs
    `Unknown child process pid N, will report returncode 255` as each function worker
    stops, and a worker's real exit status or signal (what a crash report says) is lost.
    """
    if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    on_started: Callable[[str], None] | None = None,
    sockets: list[socket.socket] | None = None,
    accept_batch: int | None = None,
    handover: asyncio.Event | None = None,
    listen_when_ready: bool = False,
) -> int:
    """Run `app` until SIGINT/SIGTERM (exit status 0) or a fatal startup failure (1).

    `sockets`, from `bind_listeners`, are served instead of binding `host` and `port`
    after start-up; `accept_batch` bounds the connections accepted from them per wake-up
    (workers sharing one socket take 1, alyx_server/workers). `handover`, once set, stops
    this process the way a worker replaced under load stops (`hand_over`), then as on
    SIGTERM. `listen_when_ready`: accept nothing until the start-up migrations are done (a
    worker joining others that already serve; alone, a server answers 503 meanwhile).
    `on_started(url)` is called once the socket listens. Shutdown closes
    the listener, lets requests in flight finish (up to SHUTDOWN_TIMEOUT seconds), then
    closes the database, which commits every queued write.
    """
    rt = app[RUNTIME]
    reap_own_children()  # before start-up starts the function workers
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    try:
        await runner.setup()
    except BaseException:
        await runner.cleanup()
        raise
    if runner.server is not None:
        direct_dispatch(app, runner.server)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if listen_when_ready:
            await _until_ready(rt, stop)
        if sockets is None:
            await web.TCPSite(runner, host, port, backlog=BACKLOG).start()
        for sock in sockets or ():
            if accept_batch is None:
                await web.SockSite(runner, sock).start()
            else:
                await web.SockSite(runner, sock, backlog=accept_batch).start()
        tune_collector()
        if on_started is not None:
            on_started(_url(runner, host, port))
        stopping = asyncio.ensure_future(stop.wait())
        failing = asyncio.ensure_future(rt.fatal.wait())
        waiters = {stopping, failing}
        if handover is not None:
            waiters.add(asyncio.ensure_future(handover.wait()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if handover is not None and handover.is_set() and not stop.is_set():
            await hand_over(app, runner, stop)
        log.info("shutting down")
    finally:
        try:
            # The signal stays handled (ignored) while draining: a second SIGTERM (from
            # systemd's whole-group stop and the supervisor's forward, or Ctrl-C twice)
            # must not cut the requests in flight short.
            await runner.cleanup()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    return 1 if rt.fatal.is_set() else 0


async def _until_ready(rt: Runtime, stop: asyncio.Event) -> None:
    """Wait until the start-up migrations are done (or failed), or SIGTERM."""
    while rt.phase not in ("ready", "failed") and not rt.fatal.is_set() and not stop.is_set():
        await asyncio.sleep(0.01)


HANDOVER_TIMEOUT = 5.0


async def hand_over(app: web.Application, runner: web.AppRunner, stop: asyncio.Event) -> None:
    """Leave the clients to the other workers before stopping, so that none sees a failure.

    Closing an idle keep-alive connection races with the client sending its next request
    on it (which then fails: a POST is not retried). So this process first stops
    accepting (the other workers take the new connections), then answers every request
    with `Connection: close`, and waits until its HTTP connections are gone (each client
    reconnects to another worker) or HANDOVER_TIMEOUT seconds have passed, or SIGTERM.
    The realtime connections are not waited for: they close at shutdown, and their
    clients reconnect (docs/realtime.md).
    """
    for site in list(runner.sites):
        await site.stop()
    app[HTTP_POLICY].closing = True
    server = runner.server
    end = asyncio.get_running_loop().time() + HANDOVER_TIMEOUT
    while server is not None and not stop.is_set() and asyncio.get_running_loop().time() < end:
        hub = app[realtime_api.REALTIME].hub
        sockets = len(hub.clients) if hub is not None else 0
        if len(server.connections) <= sockets:
            return
        await asyncio.sleep(0.02)


def _url(runner: web.AppRunner, host: str, port: int) -> str:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound_host, bound_port = address[0], address[1]
            shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
            return f"http://{shown}:{bound_port}"
    return f"http://{host}:{port}"


def run_server(
    app: web.Application,
    host: str,
    port: int,
    *,
    on_started: Callable[[str], None] | None = None,
    sockets: list[socket.socket] | None = None,
) -> int:
    """`serve` on a fresh event loop; returns the exit status.

    (asyncio's own loop, not uvloop: bench/bench_event_loop.py measured uvloop 13% fewer
    instructions per view but about 10% more CPU per create, its finer handover of the
    interpreter lock making group-commit groups smaller; and it calls listen(2) itself on
    the workers' shared socket, which `SharedListener` prevents under asyncio.)
    """
    with asyncio.Runner() as runner:
        return runner.run(serve(app, host, port, on_started=on_started, sockets=sockets))
