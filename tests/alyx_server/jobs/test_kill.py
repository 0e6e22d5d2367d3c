"""A job survives `kill -9` of the server in the middle of its run: a real `alyx serve`
process, killed, then started again on the same project, runs the job again."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from pathlib import Path

from tests.servers import DEADLINE, AlyxProcess, cli_environment

SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""
LONG_PY = """
import asyncio
from alyx_functions import define_function


async def handler(input, ctx):
    attempt = ctx.job["attempt"]
    await ctx.db.notes.create({"title": f"started {attempt}"})
    if attempt == 1:
        await asyncio.sleep(8)  # the server is killed meanwhile
    await ctx.db.notes.create({"title": f"finished {attempt}"})
    return {"attempt": attempt}


long = define_function(handler=handler)
"""
LONG_YAML = 'rule: "true"\ntimeout: 10s\njob: { visibility_timeout: 11s }\n'


def notes(db_file: Path) -> list[str]:
    with sqlite3.connect(db_file) as conn:
        return sorted(title for (title,) in conn.execute("SELECT title FROM notes"))


def wait_for(check: object) -> None:
    assert callable(check)
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("the condition did not hold in time")


def test_a_job_killed_mid_run_runs_again_after_restart(tmp_path: Path) -> None:
    project = tmp_path / "app"
    (project / "functions").mkdir(parents=True)
    (project / "schema.yaml").write_text(SCHEMA)
    (project / "functions" / "long.py").write_text(LONG_PY)
    (project / "functions" / "long.yaml").write_text(LONG_YAML)
    env = cli_environment(ALYX_WORKER="1", ALYX_AUTH_JWT_SECRET="s" * 40, ALYX_JOBS_POLL_INTERVAL="100ms")
    db_file = project / "data" / "alyx.db"
    server = AlyxProcess(project, "serve", env=env).start()
    try:
        request = urllib.request.Request(
            f"{server.url}/api/jobs/long",
            data=b'{"payload": {}}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202
            job_id = json.load(answer)["id"]
        wait_for(lambda: notes(db_file) == ["started 1"])
        assert server.process is not None
        server.process.kill()  # SIGKILL: no shutdown, the run's lease stays in the file
        server.process.wait(timeout=DEADLINE)
    finally:
        server.stop()
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT state, attempts FROM _alyx_jobs WHERE id = ?", (job_id,)).fetchone() == (
            "running", 1,
        )  # fmt: skip
    with AlyxProcess(project, "serve", env=env, log=tmp_path / "second.log"):
        wait_for(lambda: "finished 2" in notes(db_file))
        with sqlite3.connect(db_file) as conn:
            row = conn.execute(
                "SELECT state, attempts, result FROM _alyx_jobs WHERE id = ?", (job_id,)
            ).fetchone()
    assert row == ("done", 2, '{"attempt":2}')
    assert notes(db_file) == ["finished 2", "started 1", "started 2"]
