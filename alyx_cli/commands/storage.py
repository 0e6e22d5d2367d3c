"""`alyx storage sweep`: remove stored files that no document references.

A thin command over `alyx_server.storage.sweeper` (which describes what is an orphan and
why the grace period): it opens the project's storage backend and database, sweeps once
(unless a server of this database is sweeping right now) and prints what it removed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from alyx_cli.output import CommandError, console, reports_errors
from alyx_cli.project import find_project, project_option

__all__ = ["command"]


@click.group("storage", short_help="Maintain the file storage (files of file fields).")
def command() -> None:
    """Maintain the file storage (storage.* in alyx.yaml): the bytes of file fields.

    \b
    Example:
      alyx storage sweep --dry-run
    """


@command.command("sweep", short_help="Remove stored files no document references.")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option(
    "--grace",
    metavar="DURATION",
    help="Leave files younger than this (default: storage.sweep_grace, 6h).",
)
@project_option
@reports_errors
def sweep(dry_run: bool, grace: str | None, project_dir: Path) -> None:
    """Remove stored files that no document references: what a crash between storing a
    file and committing its document left, partial uploads of a killed server, the files
    of dropped file fields. Files younger than the grace period are left alone.

    \b
    Example:
      alyx storage sweep --dry-run
      alyx storage sweep --grace 1h
    """
    from alyx_server.db.maintenance import stored_schema
    from alyx_server.storage import open_storage
    from alyx_server.storage.sweeper import SweepLock, SweepResult, referenced_folders, sweep_once
    from alyx_server.tools.durations import parse_duration

    project = find_project(project_dir)
    project.require_database()
    settings = project.settings
    try:
        seconds = parse_duration(grace) if grace is not None else settings.storage.sweep_grace
    except ValueError as e:
        raise CommandError(f"--grace {grace!r}: {e} (write e.g. 30m, 6h or 2d)") from e

    async def read_referenced() -> set[str]:
        with project.connect() as conn:
            return referenced_folders(conn, stored_schema(conn))

    async def run() -> SweepResult | None:
        storage = open_storage(settings)
        lock = SweepLock(settings.database.path)
        try:
            return await sweep_once(
                storage, read_referenced, lock, now=time.time(), grace=seconds, dry_run=dry_run
            )
        finally:
            lock.close()
            await storage.close()

    result = asyncio.run(run())
    out = console()
    if result is None:
        raise CommandError("a server of this database is sweeping right now; try again later")
    verb = "would remove" if dry_run else "removed"
    for key in result.deleted:
        out.print(f"  {key}", markup=False, highlight=False)
    out.print(
        f"{verb} {len(result.deleted)} unreferenced file(s); kept {result.kept} referenced, "
        f"{result.young} younger than the grace period"
    )
