"""`alyx jobs`: run for real through Click on a project's database file, then the file is
read again to assert what changed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from alyx_cli.main import cli
from alyx_server.jobs.store import claim_jobs, enqueue_job, fail_job
from alyx_server.migrations import apply_system_migrations


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["jobs", *args, "-C", str(project)])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    (root / "schema.yaml").write_text("version: 1\ncollections: {}\n")
    (root / "data").mkdir()
    with sqlite3.connect(root / "data" / "alyx.db", isolation_level=None) as conn:
        apply_system_migrations(conn)
        enqueue_job(conn, "mail", {"to": "ada@example.com"}, now=1.0, max_attempts=1)
        enqueue_job(conn, "mail", {"to": "bob@example.com"}, now=2.0, delay=3600)
        (claimed,) = claim_jobs(conn, "mail", now=3.0, limit=1, visibility_timeout=30)
        assert fail_job(conn, claimed, "SMTP: connection refused", now=4.0, delay=0) == "dead"
    return root


def states(project: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(project / "data" / "alyx.db") as conn:
        return conn.execute(
            "SELECT json_extract(payload, '$.to'), state, attempts FROM _alyx_jobs ORDER BY 1"
        ).fetchall()


def test_list_show_retry_and_purge(project: Path) -> None:
    result = run(project, "list", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert listed["counts"] == {"queued": 1, "running": 0, "done": 0, "dead": 1}
    dead = next(j for j in listed["jobs"] if j["state"] == "dead")
    assert dead["last_error"] == "SMTP: connection refused"
    table = run(project, "list", "--state", "dead")
    assert table.exit_code == 0 and "SMTP: connection refused" in table.output and "bob@" not in table.output
    assert "1 queued, 0 running, 0 done, 1 dead" in table.output
    shown = run(project, "show", dead["id"])
    assert json.loads(shown.output)["payload"] == {"to": "ada@example.com"}
    queued = next(j for j in listed["jobs"] if j["state"] == "queued")
    refused = run(project, "retry", queued["id"])
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines()[-1] == (
        f"Error: job {queued['id']} is queued; only a dead or done job can be retried"
    )
    assert run(project, "show", "nope").output.strip() == "Error: no job with id 'nope'"
    assert run(project, "retry", dead["id"]).exit_code == 0
    assert states(project) == [("ada@example.com", "queued", 0), ("bob@example.com", "queued", 0)]
    purged = run(project, "purge", "--dead")
    assert purged.exit_code == 0 and purged.output.strip() == "deleted 0 dead jobs"
    assert len(states(project)) == 2
