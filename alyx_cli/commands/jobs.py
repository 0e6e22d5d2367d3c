"""`alyx jobs list|show|retry|purge`: the job queue in the project's database.

Thin commands over `alyx_server.jobs.store`: each opens the database (bringing Alyx's own
tables up to date), runs one function in one transaction and prints the result. The
server need not run; a running one picks up a retried job within `jobs.poll_interval`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.text import Text

from alyx_cli.output import console, reports_errors
from alyx_cli.project import Project, find_project, project_option

__all__ = ["command"]

_STATES = ("queued", "running", "done", "dead")


@click.group("jobs", short_help="List, show, retry and purge queued jobs.")
def command() -> None:
    """Inspect and manage the job queue (functions with a job: section, webhook deliveries).

    \b
    Example:
      alyx jobs list --state dead
      alyx jobs retry 3f2a...
    """


@contextmanager
def _database(project: Project) -> Iterator[sqlite3.Connection]:
    from alyx_server.migrations import apply_system_migrations

    with project.connect() as conn:
        apply_system_migrations(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        text = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        console().print(Text(text, style="bold" if index == 0 else ""))


@command.command("list", short_help="List jobs, newest first.")
@click.option("--state", type=click.Choice(_STATES), help="Only jobs in this state.")
@click.option("--name", help="Only jobs of this job function.")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Most jobs listed."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@project_option
@reports_errors
def list_command(state: str | None, name: str | None, limit: int, as_json: bool, project_dir: Path) -> None:
    """List jobs with their state, attempts and last error, and the count in each state.

    \b
    Example:
      alyx jobs list --state dead
    """
    from alyx_server.jobs.store import count_jobs, list_jobs

    with _database(find_project(project_dir)) as conn:
        jobs = list_jobs(conn, state=state, name=name, limit=limit)
        counts = count_jobs(conn)
    if as_json:
        click.echo(json.dumps({"jobs": [j.to_dict() for j in jobs], "counts": counts}, indent=2))
        return
    summary = ", ".join(f"{count} {state}" for state, count in counts.items())
    if not jobs:
        console().print(f"no jobs listed ({summary})")
        return
    rows: list[tuple[str, ...]] = [("id", "name", "state", "attempts", "run at", "last error")]
    for job in jobs:
        error = (job.last_error or "")[:60]
        rows.append(
            (job.id, job.name, job.state, f"{job.attempts}/{job.max_attempts}", _when(job.run_at), error)
        )
    _table(rows)
    console().print(summary)


@command.command("show", short_help="Show one job with its payload, result and last error.")
@click.argument("job_id", metavar="ID")
@project_option
@reports_errors
def show(job_id: str, project_dir: Path) -> None:
    """Print one job as JSON.

    \b
    Example:
      alyx jobs show 3f2a...
    """
    from alyx_server.jobs.store import get_job

    with _database(find_project(project_dir)) as conn:
        job = get_job(conn, job_id)
    click.echo(json.dumps(job.to_dict(), indent=2))


@command.command("retry", short_help="Queue a dead or done job again.")
@click.argument("job_id", metavar="ID")
@project_option
@reports_errors
def retry(job_id: str, project_dir: Path) -> None:
    """Queue a dead (or done) job again, due now, with its attempts counted from zero.

    \b
    Example:
      alyx jobs retry 3f2a...
    """
    from alyx_server.jobs.store import retry_job

    now = datetime.now(UTC).timestamp()
    with _database(find_project(project_dir)) as conn:
        job = retry_job(conn, job_id, now=now)
    console().print(f"job {job.id} ({job.name}) queued again")


@command.command("purge", short_help="Delete done jobs, or dead ones.")
@click.option("--dead", is_flag=True, help="Delete the dead jobs instead of the done ones.")
@project_option
@reports_errors
def purge(dead: bool, project_dir: Path) -> None:
    """Delete the finished jobs: done ones, or with --dead the dead ones.

    \b
    Example:
      alyx jobs purge --dead
    """
    from alyx_server.jobs.store import purge_jobs

    with _database(find_project(project_dir)) as conn:
        deleted = purge_jobs(conn, dead=dead)
    what = "dead" if dead else "done"
    console().print(f"deleted {deleted} {what} job{'' if deleted == 1 else 's'}")
