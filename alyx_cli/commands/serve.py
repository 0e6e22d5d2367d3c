"""`alyx serve` and `alyx dev`: run the server for a project (`-C DIR`, default: here).

Both read alyx.yaml (the mode decides some defaults, SPEC §3), set up logging, build the
application and serve it until Ctrl-C or SIGTERM, which stop it gracefully: requests in
flight finish and every acknowledged write is committed. One line is printed once the
server listens: `Alyx 0.1.0 serving /path/to/project at http://127.0.0.1:8090 (dev)`.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click
from rich.text import Text

from alyx_cli.output import CommandError, console, describe_os_error, reports_errors
from alyx_cli.project import SCHEMA_FILE, project_option
from alyx_server.errors import AlyxError
from alyx_server.tools.processes import WORKER_ENV, run_dir

if TYPE_CHECKING:
    from alyx_server.config import Mode, Settings

__all__ = ["dev", "serve"]

log = logging.getLogger("alyx.workers")


def _start(
    mode: Mode,
    project_dir: Path,
    port: int | None,
    host: str | None,
    *,
    watch: bool = False,
    tui: bool = False,
    workers: str | None = None,
) -> int:
    # The web stack loads only when a server starts, so other commands (`alyx generate`)
    # stay fast.
    from alyx_cli.listen import listen
    from alyx_server.config import load_settings

    root = project_dir.resolve()
    if not (root / SCHEMA_FILE).is_file():
        raise CommandError(f"no {SCHEMA_FILE} in {root}; run `alyx init` first")
    overrides: dict[str, object] = {}
    if port is not None:
        overrides["server.port"] = port
    if host is not None:
        overrides["server.host"] = host
    settings = load_settings(root, mode=mode, overrides=overrides)
    count = 1
    if mode == "serve":
        from alyx_server.workers import worker_count

        count = worker_count(workers or settings.server.workers)
        named = os.environ.get(WORKER_ENV)
        if count > 1 and named:
            raise CommandError(
                f"{WORKER_ENV}={named} names this process as one worker of a set started by "
                f"hand, so it cannot run {count} workers: run it with --workers 1 "
                f"(server.workers), or unset {WORKER_ENV}"
            )
    # Bound first: a port in use must stop the command before the database is touched.
    sockets = listen(settings, mode, port)
    if count > 1:
        try:
            return _supervise(settings, sockets, count, overrides)
        finally:
            for sock in sockets:
                sock.close()
    from alyx_server.admin_ui import console_line
    from alyx_server.app import banner, create_app, run_server
    from alyx_server.logs import configure_logging

    try:
        log_file: IO[str] | None = None
        if tui:
            from alyx_cli.tui.embedded import dashboard_log, serve_with_dashboard

            log_file = dashboard_log(settings)
            configure_logging(settings.logging, stream=log_file)
        else:
            configure_logging(settings.logging)
        app = create_app(settings)
        if watch:
            from alyx_cli.dev.console import DevConsole
            from alyx_cli.dev.reload import dev_loop_context

            app.cleanup_ctx.append(dev_loop_context(overrides, DevConsole(file=log_file)))
        if tui:
            return serve_with_dashboard(app, settings, sockets)

        def announce(url: str) -> None:
            print(banner(settings, url), flush=True)
            admin = console_line(app, url)
            if admin is not None:
                print(admin, flush=True)

        if mode == "serve":
            # `systemctl reload` (the unit's ExecReload) must not stop a one-worker server.
            signal.signal(signal.SIGHUP, _one_process_reload)
        host, port_number = settings.server.host, settings.server.port
        return run_server(app, host, port_number, on_started=announce, sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()


def _supervise(
    settings: Settings, sockets: list[socket.socket], count: int, overrides: dict[str, object]
) -> int:
    """`alyx serve` with `count` worker processes (alyx_server/workers)."""
    from alyx_server import metrics

    # Before prometheus_client is imported (by the application, in each worker): the workers'
    # series meet in one directory, which /metrics on any worker sums. One directory per
    # supervisor (emptied now, removed at the end), so that a second `alyx serve` on the
    # same database keeps its own series instead of wiping these; a directory the user
    # gives in PROMETHEUS_MULTIPROC_DIR (several servers summed together) is used as it is.
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(given) if given else run_dir(settings.database.path) / f"metrics-{os.getpid()}"
    metrics.use_multiprocess(folder, empty=not given)
    if not given:
        atexit.register(shutil.rmtree, folder, True)
    from alyx_server.config import load_settings, split_changes
    from alyx_server.listeners import banner
    from alyx_server.logs import configure_logging
    from alyx_server.workers import Supervisor, WorkerChannel

    # The supervisor does not import the application: each worker imports it after the
    # fork (docs/workers.md, "Memory"). Imported here, it would be resident in the
    # supervisor too, which never runs it, and count once more in the server's memory.
    # Unbuffered: the buffered handler writes from a thread, and the supervisor forks.
    configure_logging(settings.logging, buffered=False)
    # What is alive now moves to the collector's permanent generation: a worker's own
    # collections then never write to those objects' pages, which stay shared.
    gc.collect()
    gc.freeze()
    current = [settings]

    def work(index: int, channel: WorkerChannel) -> int:
        try:
            from alyx_server.workers.worker import serve_worker

            return serve_worker(current[0], sockets, channel)
        except OSError as e:
            raise AlyxError(describe_os_error(e)) from e

    def reload() -> None:
        new = load_settings(settings.project_dir, mode="serve", overrides=overrides)
        _live, restart = split_changes(current[0], new)
        fixed = [key for key in restart if key in _SUPERVISOR_KEYS]
        if fixed:
            log.warning("SIGHUP: %s changed; a full restart of alyx serve applies it", ", ".join(fixed))
        current[0] = new
        configure_logging(new.logging, buffered=False)

    def announce() -> None:
        url = _url(sockets[0])
        print(banner(settings, url, workers=count), flush=True)

    supervisor = Supervisor(
        count, work, reload=reload, on_ready=announce,
        on_restart=lambda slot: metrics.record_worker_restart(str(slot)),
        on_exit=metrics.worker_exited, listeners=sockets,
    )  # fmt: skip
    return supervisor.run()


def _one_process_reload(_number: int, _frame: object) -> None:
    log.warning(
        "SIGHUP ignored: one worker has no other to take its clients during a rolling "
        "restart; run alyx serve --workers 2 or more for that, or restart it"
    )


# What the supervisor itself holds: SIGHUP cannot change them.
_SUPERVISOR_KEYS = ("server.host", "server.port", "server.workers")


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


_PORT = click.option("-p", "--port", type=click.IntRange(1, 65535), help="Port (server.port).")
_HOST = click.option("--host", help="Interface to listen on (server.host).")


def _workers_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "auto" or (value.isdigit() and 1 <= int(value) <= 256):
        return value
    raise click.BadParameter(f"{value!r} is not a number of workers (write auto, or 1 to 256)")


@click.command("serve")
@project_option
@_PORT
@_HOST
@click.option(
    "-w", "--workers", callback=_workers_value, metavar="N|auto",
    help="Worker processes (server.workers; default auto: one per usable CPU core).",
)  # fmt: skip
@reports_errors
def serve(project_dir: Path, port: int | None, host: str | None, workers: str | None) -> None:
    """Run the production server for the project in the current directory.

    Needs auth.jwt.secret (ALYX_AUTH_JWT_SECRET). Applies pending migration files and
    safe schema changes at start; refuses to start on a destructive change that no
    migration file covers. /health/ready answers 503 until migrations are done.

    Runs one worker process per usable CPU core on the one port (--workers, server.workers;
    docs/workers.md): SIGTERM drains them all, SIGHUP restarts them one at a time.

    \b
    Example:
      ALYX_AUTH_JWT_SECRET=... alyx serve --host 0.0.0.0 -p 8090
      ALYX_AUTH_JWT_SECRET=... alyx serve --workers 4
    """
    sys.exit(_start("serve", project_dir, port, host, workers=workers))


@click.command("dev")
@project_option
@_PORT
@_HOST
@click.option(
    "--no-watch", is_flag=True, help="Do not watch schema.yaml, alyx.yaml, functions/ and migrations/."
)
@click.option("--tui", is_flag=True, help="Show the terminal dashboard (logs go to data/dev.log).")
@reports_errors
def dev(project_dir: Path, port: int | None, host: str | None, no_watch: bool, tui: bool) -> None:
    """Run the development server: CORS open, a generated JWT secret, safe schema changes
    applied at start, and hot reload: schema.yaml, alyx.yaml, functions/ and migrations/
    are watched and applied without a restart; clients regenerate on schema changes.

    \b
    Example:
      alyx dev -p 8091
      alyx dev --tui
    """
    if tui and not (sys.stdin.isatty() and sys.stdout.isatty()):
        line = Text("Note: ", style="yellow")
        line.append("the terminal dashboard (--tui) needs a terminal; running without it")
        console(stderr=True).print(line)
        tui = False
    sys.exit(_start("dev", project_dir, port, host, watch=not no_watch, tui=tui))
