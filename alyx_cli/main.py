"""The `alyx` command group: every command is defined in `alyx_cli.commands` and named here.

To add one, write `alyx_cli/commands/<name>.py` defining a Click command or group called
`command`, then add it to `COMMANDS` below (`"<name>": ("<name>", "command")`).

A command's module is imported only when that command runs (or for `alyx --help`, which
lists them all): `alyx serve` then loads none of the others' modules, whose memory would
otherwise stay resident in the server's every process (docs/workers.md, "Memory").
"""

from __future__ import annotations

import importlib

import click

from alyx_server import __version__

__all__ = ["COMMANDS", "cli"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "command"),
    "serve": ("serve", "serve"),
    "dev": ("serve", "dev"),
    "migrate": ("migrate", "command"),
    "db": ("db", "command"),
    "generate": ("generate", "command"),
    "admin": ("admin", "command"),
    "tui": ("tui", "command"),
    "deploy": ("deploy", "command"),
    "functions": ("functions", "command"),
    "storage": ("storage", "command"),
    "jobs": ("jobs", "command"),
}
"""Each command's name -> (its module in alyx_cli.commands, the Click object's name there)."""


class _Commands(click.Group):
    """A group whose commands are imported from `COMMANDS` when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            found = getattr(importlib.import_module(f"alyx_cli.commands.{module}"), attribute)
            if not isinstance(found, click.Command):  # pragma: no cover - a mistake in COMMANDS
                raise TypeError(f"alyx_cli.commands.{module}.{attribute} is not a Click command")
            self.add_command(found, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="alyx")
def cli() -> None:
    """Alyx: a self-hosted backend from one schema.yaml.

    \b
    Example:
      alyx init myapp -t blog
      cd myapp && alyx migrate apply
    """


if __name__ == "__main__":
    cli(prog_name="alyx")
