"""`alyx functions schedules`: the project's scheduled functions, their next and last runs.

The schedules come from the function manifests (`schedule:` or `every:`); their state from
the database's `_alyx_schedules` rows, which the servers write (functions/schedules.py), so
the command shows the same next and last runs as `/api/admin/functions` and the TUI, with
the server running or not. A schedule no server has started yet shows no next run.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from alyx_cli.output import console, reports_errors
from alyx_cli.project import find_project, project_option

__all__ = ["command"]


@click.group("functions", short_help="Inspect the project's functions: schedules.")
def command() -> None:
    """Inspect the project's functions."""


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    from alyx_server.tools.timestamps import format_timestamp

    return format_timestamp(datetime.fromtimestamp(value, UTC))


def _stored(conn: sqlite3.Connection) -> dict[str, tuple[Any, ...]]:
    try:
        rows = conn.execute(
            "SELECT name, next_run, last_run, last_status, last_error, runs, skipped FROM _alyx_schedules"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    return {row[0]: row for row in rows}


@command.command("schedules", short_help="List scheduled functions with their next and last runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@project_option
@reports_errors
def schedules(as_json: bool, project_dir: Path) -> None:
    """List the functions with a schedule (cron or every), their time zone, catch-up mode,
    next run and last run (from the database).

    \b
    Example:
      alyx functions schedules
    """
    from alyx_server.functions import Defaults, discover_functions

    project = find_project(project_dir)
    found = discover_functions(project.settings.functions.path, Defaults(), root=project.root)
    err = console(stderr=True)
    for problem in found.problems:
        err.print(f"warning: {problem.message}", markup=False, highlight=False)
    with project.connect(create=False) as conn:
        stored = _stored(conn)
    out: list[dict[str, Any]] = []
    for name, spec in sorted(found.functions.items()):
        schedule = spec.schedule
        if schedule is None:
            continue
        row = stored.get(name)
        out.append(
            {
                "name": name,
                "schedule": schedule.cron,
                "every": schedule.every,
                "timezone": schedule.timezone,
                "catch_up": schedule.catch_up,
                "next_run": _iso(row[1]) if row else None,
                "last_run": _iso(row[2]) if row else None,
                "last_status": row[3] if row else None,
                "last_error": row[4] if row else None,
                "runs": row[5] if row else 0,
                "skipped": row[6] if row else 0,
            }
        )
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if not out:
        console().print("no scheduled functions (add schedule: or every: to a function's manifest)")
        return
    table = Table("function", "schedule", "catch_up", "next run", "last run", "status", "runs")
    for item in out:
        when = item["schedule"] or f"every {item['every']:g}s"
        if item["schedule"] and item["timezone"] != "UTC":
            when += f" ({item['timezone']})"
        table.add_row(
            item["name"],
            when,
            item["catch_up"],
            item["next_run"] or "-",
            item["last_run"] or "-",
            item["last_status"] or "-",
            str(item["runs"]),
        )
    console().print(table)
