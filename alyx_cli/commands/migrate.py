"""`alyx migrate status|apply|rollback|create`: the project's schema history.

Thin commands over `alyx_server.migrations`: each opens the project's database, calls one
function of the runner and prints what it did. The runner refuses destructive changes
without a migration file and edited migration files; those refusals reach the user as
the runner words them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table
from rich.text import Text

from alyx_cli.output import console, reports_errors
from alyx_cli.project import Project, find_project, project_option

if TYPE_CHECKING:
    from alyx_server.config import Settings
    from alyx_server.migrations import StatusRow
    from alyx_server.schema.model import Schema

# The migration runner is imported inside each command, so that `alyx --help` and other
# commands start without loading it.

__all__ = ["command", "status_table"]

_STATES = {
    "applied": ("ok", "green"),
    "edited": ("EDITED", "bold red"),
    "missing": ("file missing", "yellow"),
    "pending": ("pending", "cyan"),
    "auto": ("pending (safe)", "cyan"),
    "blocked": ("BLOCKED", "bold red"),
}


@click.group("migrate", short_help="Show, apply, roll back and write migrations.")
def command() -> None:
    """Bring the database in line with schema.yaml.

    Safe changes (new collections, new optional fields, indexes, rules) apply
    automatically; destructive ones need a migration file in migrations/.

    \b
    Example:
      alyx migrate status
      alyx migrate create drop_slug && alyx migrate apply
    """


def _kind(row: StatusRow) -> str:
    if row.state in ("auto", "blocked") or (row.state == "applied" and row.version is None):
        return "auto"
    return "file"


def _when(applied_at: str | None) -> str:
    """`2026-01-31 12:00:00` from the stored `2026-01-31T12:00:00.000Z` (UTC)."""
    return "-" if applied_at is None else applied_at[:19].replace("T", " ")


def status_table(rows: list[StatusRow]) -> Table:
    """The `migrate status` table: one line per history row, pending file and change."""
    table = Table(title=None, show_edge=False, pad_edge=False)
    for header in ("migration", "kind", "applied at", "state"):
        table.add_column(header, no_wrap=True)
    table.add_column("detail", overflow="fold")
    for row in rows:
        label, style = _STATES[row.state]
        table.add_row(row.name, _kind(row), _when(row.applied_at), Text(label, style=style), row.detail)
    return table


def _summary(rows: list[StatusRow]) -> str:
    counts = {state: sum(1 for r in rows if r.state == state) for state in _STATES}
    parts = [f"{counts['applied'] + counts['edited'] + counts['missing']} applied"]
    if counts["pending"]:
        parts.append(f"{counts['pending']} pending file(s)")
    if counts["auto"]:
        parts.append(f"{counts['auto']} safe change(s) to apply")
    if counts["blocked"]:
        parts.append(f"{counts['blocked']} destructive change(s) blocked")
    if counts["edited"]:
        parts.append(f"{counts['edited']} edited file(s)")
    if len(parts) == 1:
        parts.append("up to date")
    return ", ".join(parts)


@command.command("status", short_help="Show applied, pending and blocked migrations.")
@project_option
@reports_errors
def status(project_dir: Path) -> None:
    """Show applied migrations, pending files, safe changes to come and blocked ones.

    An applied file that was edited since is marked EDITED; apply refuses until it is
    restored. Nothing is written, not even a new database file.

    \b
    Example:
      alyx migrate status -C myapp
    """
    from alyx_server.migrations import migration_status, plan_migrations

    project = find_project(project_dir)
    schema = project.load_schema()
    with project.connect(create=False) as conn:
        rows = migration_status(conn, schema, project.migrations_dir)
        blocked = plan_migrations(conn, schema, project.migrations_dir).blocked
    out = console()
    if rows:
        out.print(status_table(rows))
    else:
        out.print("schema.yaml has no collections and nothing is applied")
    out.print(Text(_summary(rows), style="bold"))
    if blocked:
        out.print(Text(blocked, style="yellow"))


def _print_applied(
    project: Project, system: tuple[str, ...], files: tuple[str, ...], auto: tuple[str, ...]
) -> None:
    out = console()
    if system:
        out.print(Text(f"Alyx system tables: {', '.join(system)}", style="dim"))
    for name in files:
        out.print(Text.assemble("applied ", (name, "bold")))
    for summary in auto:
        out.print(Text(summary, style="green" if summary.startswith("+") else ""))
    if not (system or files or auto):
        out.print(f"nothing to apply: {project.database_name} is up to date")


@command.command("apply", short_help="Apply pending migrations and safe schema changes.")
@project_option
@reports_errors
def apply(project_dir: Path) -> None:
    """Apply Alyx's system migrations, pending migration files, then safe changes.

    Creates the database file when it does not exist. Destructive changes that no
    migration file covers stop the command before anything is changed, naming the file
    to write (see `alyx migrate create`).

    \b
    Example:
      alyx migrate apply
    """
    from alyx_server.migrations import apply_migrations, read_history
    from alyx_server.migrations.history import latest_snapshot

    project = find_project(project_dir)
    schema = project.load_schema()
    with project.connect() as conn:
        before = latest_snapshot(read_history(conn))
        result = apply_migrations(conn, schema, project.migrations_dir)
        deleted = _free_dropped_files(project.settings, conn, before, schema)
    _print_applied(project, result.system, result.files, result.auto)
    if deleted:
        console().print(f"deleted {deleted} stored file(s) of removed file fields")


def _free_dropped_files(settings: Settings, conn: sqlite3.Connection, before: Schema, after: Schema) -> int:
    """The files of file fields the migrations removed, deleted now that they committed."""
    from alyx_server.storage import open_storage
    from alyx_server.storage.sweeper import dropped_prefixes, free_dropped_fields, referenced_folders

    if not dropped_prefixes(before, after):
        return 0

    async def referenced() -> set[str]:
        return referenced_folders(conn, after)

    async def run() -> int:
        storage = open_storage(settings)
        try:
            return await free_dropped_fields(storage, before, after, referenced)
        finally:
            await storage.close()

    return asyncio.run(run())


@command.command("rollback", short_help="Undo the newest N migrations.")
@click.argument("n", type=click.IntRange(min=1), default=1, required=False)
@project_option
@reports_errors
def rollback(n: int, project_dir: Path) -> None:
    """Undo the newest N applied migrations (default 1), newest first.

    Tables go back to how they were; data that a migration dropped is not restored
    (restore a backup with `alyx db restore` for that). schema.yaml is not changed, so
    `alyx migrate apply` applies its changes again.

    \b
    Example:
      alyx migrate rollback      # the newest one
      alyx migrate rollback 2
    """
    from alyx_server.migrations import rollback_migrations

    project = find_project(project_dir)
    project.require_database()
    with project.connect() as conn:
        undone = rollback_migrations(conn, project.migrations_dir, n)
    out = console()
    for label in undone:
        out.print(Text.assemble("rolled back ", (label, "bold")))
    console(stderr=True).print(
        Text(
            "note: data removed by a migration is not brought back by rolling it back; "
            "schema.yaml is unchanged, so `alyx migrate apply` would apply it again",
            style="yellow",
        )
    )


@command.command("create", short_help="Write a pre-filled migration file.")
@click.argument("name")
@project_option
@reports_errors
def create(name: str, project_dir: Path) -> None:
    """Write migrations/NNN_NAME.yaml, pre-filled with the destructive changes found.

    NAME uses a-z, 0-9 and _. The file gets the next free version number and the
    operations (drop_field, change_type, ...) schema.yaml needs; review it, then run
    `alyx migrate apply`.

    \b
    Example:
      alyx migrate create drop_slug
    """
    from alyx_server.migrations import create_migration

    project = find_project(project_dir)
    schema = project.load_schema()
    with project.connect(create=False) as conn:
        path = create_migration(conn, schema, project.migrations_dir, name)
    console().print(Text.assemble("created ", (project.show(path), "bold")))
    console().print("review it, then run `alyx migrate apply`")
