"""`alyx tui [--url URL] [--token TOKEN]`: the terminal dashboard of a running server.

The token is an admin token (`alyx admin create-token`) or an admin user's access
token, from `--token` or ALYX_TOKEN; the URL from `--url`, ALYX_URL, or the local
default http://127.0.0.1:8090.
"""

from __future__ import annotations

import sys

import click

from alyx_cli.output import CommandError, reports_errors

__all__ = ["DEFAULT_URL", "command"]

DEFAULT_URL = "http://127.0.0.1:8090"


@click.command("tui", short_help="Open the terminal dashboard of a running server.")
@click.option(
    "--url", envvar="ALYX_URL", default=DEFAULT_URL, show_default=True, help="The server (ALYX_URL)."
)
@click.option("--token", envvar="ALYX_TOKEN", help="An admin token (ALYX_TOKEN).")
@reports_errors
def command(url: str, token: str | None) -> None:
    """Watch a running server: live request log, realtime connections and subscriptions,
    function invocations with their logs, recent changes and the schema.

    Press ? in the dashboard for its keys.

    \b
    Example:
      ALYX_TOKEN=$(alyx admin create-token --name dash) alyx tui --url http://127.0.0.1:8090
    """
    if not url.startswith(("http://", "https://")):
        raise CommandError(f"--url must start with http:// or https://, not {url!r}")
    if not token:
        raise CommandError("the dashboard needs an admin token: pass --token or set ALYX_TOKEN "
                           "(make one with `alyx admin create-token --name dash`)")  # fmt: skip
    if not sys.stdout.isatty():
        raise CommandError("the dashboard needs a terminal")
    from alyx_cli.tui.app import DashboardApp
    from alyx_cli.tui.client import AdminClient

    DashboardApp(AdminClient(url, token)).run()
