"""`alyx serve` and `alyx dev`: run the server for a project (`-C DIR`, default: here).

Both read alyx.yaml (the mode decides some defaults, SPEC §3), set up logging, build the
application and serve it until Ctrl-C or SIGTERM, which stop it gracefully: requests in
flight finish and every acknowledged write is committed. One line is printed once the
server listens: `Alyx 0.1.0 serving /path/to/project at http://127.0.0.1:8090 (dev)`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click
from rich.text import Text

from alyx_cli.output import CommandError, console, reports_errors
from alyx_cli.project import SCHEMA_FILE, project_option

if TYPE_CHECKING:
    from alyx_server.config import Mode

__all__ = ["dev", "serve"]


def _start(
    mode: Mode,
    project_dir: Path,
    port: int | None,
    host: str | None,
    *,
    watch: bool = False,
    tui: bool = False,
) -> int:
    # The web stack loads only when a server starts, so other commands (`alyx generate`)
    # stay fast.
    from alyx_cli.listen import listen
    from alyx_server.app import banner, create_app, run_server
    from alyx_server.config import load_settings
    from alyx_server.logs import configure_logging

    root = project_dir.resolve()
    if not (root / SCHEMA_FILE).is_file():
        raise CommandError(f"no {SCHEMA_FILE} in {root}; run `alyx init` first")
    overrides: dict[str, object] = {}
    if port is not None:
        overrides["server.port"] = port
    if host is not None:
        overrides["server.host"] = host
    settings = load_settings(root, mode=mode, overrides=overrides)
    # Bound first: a port in use must stop the command before the database is touched.
    sockets = listen(settings, mode, port)
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

        host, port_number = settings.server.host, settings.server.port
        return run_server(app, host, port_number, on_started=announce, sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()


_PORT = click.option("-p", "--port", type=click.IntRange(1, 65535), help="Port (server.port).")
_HOST = click.option("--host", help="Interface to listen on (server.host).")


@click.command("serve")
@project_option
@_PORT
@_HOST
@reports_errors
def serve(project_dir: Path, port: int | None, host: str | None) -> None:
    """Run the production server for the project in the current directory.

    Needs auth.jwt.secret (ALYX_AUTH_JWT_SECRET). Applies pending migration files and
    safe schema changes at start; refuses to start on a destructive change that no
    migration file covers. /health/ready answers 503 until migrations are done.

    \b
    Example:
      ALYX_AUTH_JWT_SECRET=... alyx serve --host 0.0.0.0 -p 8090
    """
    sys.exit(_start("serve", project_dir, port, host))


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
