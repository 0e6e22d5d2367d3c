"""Durability: every acknowledged write survives a SIGKILL of the process, for both settings.

A child process writes from several concurrent tasks and prints each id once its write is
acknowledged; the parent kills it mid-stream, reopens the file and looks for every id.
In WAL mode even `synchronous=normal` keeps committed transactions across a process
crash (only an OS crash or power loss can lose the last ones).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.alyx_server.db.conftest import create_tables

REPO = Path(__file__).resolve().parents[3]

CHILD = """
import asyncio, sys
from alyx_server.db import Database, insert_doc
from tests.alyx_server.db.conftest import COUNTERS, SCHEMA

async def main(path, synchronous):
    db = await Database.open(path, SCHEMA, synchronous=synchronous, poll_interval=None)

    async def writer(w):
        i = 0
        while True:
            i += 1
            doc = await db.write(lambda c: insert_doc(c, COUNTERS, {"n": w * 1_000_000 + i}))
            sys.stdout.write(f"{doc['id']}\\n")
            sys.stdout.flush()

    await asyncio.gather(*(writer(w) for w in range(8)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_acknowledged_writes_survive_sigkill(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "crash.db"
    create_tables(path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), synchronous],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    acknowledged: list[int] = []
    try:
        while len(acknowledged) < 400:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"the writer stopped early: {child.stderr.read()}")
            acknowledged.append(int(line))
        child.send_signal(signal.SIGKILL)
        # Lines already in the pipe were acknowledged too.
        acknowledged.extend(int(line) for line in child.stdout.read().splitlines() if line.strip())
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(path)
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM counters")}
    finally:
        conn.close()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes lost"
    assert len(set(acknowledged)) == len(acknowledged)
