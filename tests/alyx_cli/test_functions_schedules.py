"""`alyx functions schedules`: the manifests' schedules with the runs the servers recorded."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.migrations import apply_system_migrations
from tests.alyx_server.automation.support import TICK_PY, write_project


def test_lists_schedules_with_next_and_last_runs(tmp_path: Path) -> None:
    files = {
        "nightly.py": TICK_PY,
        "nightly.yaml": 'schedule: "0 3 * * *"\ntimezone: Europe/Paris\ncatch_up: none\n',
        "often.py": TICK_PY,
        "often.yaml": "every: 30s\n",
        "plain.py": TICK_PY,
    }
    root = write_project(tmp_path / "p", files)
    (root / "data").mkdir()
    with sqlite3.connect(root / "data" / "alyx.db", isolation_level=None) as conn:
        apply_system_migrations(conn)
        conn.execute(
            "INSERT INTO _alyx_schedules (name, spec, next_run, last_run, last_status, runs) "
            "VALUES ('often', 'every 30.0', 1772445630, 1772445600, 'ok', 4)"
        )
    result = CliRunner().invoke(cli, ["functions", "schedules", "--json", "-C", str(root)])
    assert result.exit_code == 0, result.output
    listed = {item["name"]: item for item in json.loads(result.output)}
    assert sorted(listed) == ["nightly", "often"]
    assert listed["nightly"]["schedule"] == "0 3 * * *"
    assert listed["nightly"]["timezone"] == "Europe/Paris" and listed["nightly"]["catch_up"] == "none"
    assert listed["nightly"]["next_run"] is None
    assert listed["often"]["every"] == 30
    assert listed["often"]["next_run"] == "2026-03-02T10:00:30.000Z"
    assert listed["often"]["last_run"] == "2026-03-02T10:00:00.000Z"
    assert listed["often"]["runs"] == 4
    table = CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["functions", "schedules", "-C", str(root)])
    assert table.exit_code == 0 and "every 30s" in table.output and "0 3 * * * (Europe/Paris)" in table.output
