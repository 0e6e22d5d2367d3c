"""The `alyx` command group: every command is defined in `alyx_cli.commands` and added here.

To add one, write `alyx_cli/commands/<name>.py` defining a Click command or group called
`command`, then register it below with `cli.add_command(<name>.command)`.
"""

from __future__ import annotations

import click

from alyx_cli.commands import admin, db, deploy, functions, generate, init, jobs, migrate, serve, storage, tui
from alyx_server import __version__

__all__ = ["cli"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="alyx")
def cli() -> None:
    """Alyx: a self-hosted backend from one schema.yaml.

    \b
    Example:
      alyx init myapp -t blog
      cd myapp && alyx migrate apply
    """


cli.add_command(init.command)
cli.add_command(serve.serve)
cli.add_command(serve.dev)
cli.add_command(migrate.command)
cli.add_command(db.command)
cli.add_command(generate.command)
cli.add_command(admin.command)
cli.add_command(tui.command)
cli.add_command(deploy.command)
cli.add_command(functions.command)
cli.add_command(storage.command)
cli.add_command(jobs.command)


if __name__ == "__main__":
    cli(prog_name="alyx")
