"""Several processes on one database file: their writers take turns, one of them checkpoints.

Each child process opens the real `Database` on a shared file and answers commands on
its standard input, one JSON line per answer: `write N` (N concurrent writes, their ids)
and `status` (whether its checkpointer owns checkpoints, and how many it ran).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alyx_server.db.checkpoint import Checkpointer, log_frames
from alyx_server.tools.filelocks import FileLock
from alyx_server.tools.processes import run_dir
from tests.alyx_server.db.conftest import create_tables

REPO = Path(__file__).resolve().parents[3]
DEADLINE = 60.0  # seconds: a bound on each wait, never a claim about speed

CHILD = """
import asyncio, json, sys
from alyx_server.db import Database, insert_doc
from tests.alyx_server.db.conftest import COUNTERS, SCHEMA

async def main(path):
    db = await Database.open(path, SCHEMA, poll_interval=None)
    loop = asyncio.get_running_loop()
    n = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command, *rest = line.split()
        if command == "write":
            async def one(i):
                return (await db.write(lambda c: insert_doc(c, COUNTERS, {"n": i})))["id"]
            ids = await asyncio.gather(*(one(n + i) for i in range(int(rest[0]))))
            n += len(ids)
            answer = ids
        else:
            answer = {"owner": db.checkpointer.owner, "runs": db.checkpointer.runs}
        sys.stdout.write(json.dumps(answer) + "\\n")
        sys.stdout.flush()
    await db.close()

asyncio.run(main(sys.argv[1]))
"""


class Child:
    """A process with the database open, driven line by line."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str) -> Any:
        process = self.process
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write(command + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"the child exited: {process.stderr.read()}")
        return json.loads(line)

    def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.ask("status")
        return answer

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.05)


def rows_in_file(path: Path) -> int:
    """Rows of `counters` in the database file itself, the log left out (what checkpoints copied).

    Only for a test process with no connection of its own to `path`: closing a file drops
    every POSIX lock the process holds on it. An immutable read takes no lock, so one that
    meets a checkpoint copying pages into the file can see a torn page set ("malformed");
    that answers -1, and the callers, which poll, read again.
    """
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM counters").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


def test_one_process_checkpoints_and_another_takes_over_when_it_is_killed(
    tmp_path: Path, children: list[Child]
) -> None:
    path = tmp_path / "shared.db"
    create_tables(path)
    first = Child(path)
    children.append(first)
    wait_until(lambda: first.status()["owner"], "the first process owns checkpoints")
    second = Child(path)
    children.append(second)

    ids = second.ask("write 300")
    # The owner copies the second process's commits into the file; the second never does.
    wait_until(lambda: rows_in_file(path) == 300, "the owner checkpointed the other's writes")
    assert first.status()["runs"] >= 1
    assert second.status() == {"owner": False, "runs": 0}

    first.kill()
    wait_until(lambda: second.status()["owner"], "the second process took over checkpoints")
    ids += second.ask("write 300")
    wait_until(lambda: rows_in_file(path) == 600, "the new owner checkpointed")
    assert second.status()["runs"] >= 1

    conn = sqlite3.connect(path)
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM counters")}
    finally:
        conn.close()
    assert set(ids) <= stored


def test_processes_writing_at_once_take_turns_and_no_write_fails(
    tmp_path: Path, children: list[Child]
) -> None:
    path = tmp_path / "shared.db"
    create_tables(path)
    writers = [Child(path) for _ in range(3)]
    children.extend(writers)
    for child in writers:
        assert child.process.stdin is not None
        child.process.stdin.write("write 400\n" * 5)
        child.process.stdin.flush()
    acknowledged: list[str] = []
    for child in writers:
        assert child.process.stdout is not None
        for _ in range(5):
            line = child.process.stdout.readline()
            assert line, child.process.communicate()[1]
            acknowledged += json.loads(line)
    assert len(acknowledged) == 3 * 5 * 400
    conn = sqlite3.connect(path)
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM counters")}
    finally:
        conn.close()
    assert set(acknowledged) <= stored


def test_a_checkpointer_that_does_not_own_checkpoints_sees_the_log_grow(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    create_tables(path)
    owner = FileLock(run_dir(path) / "checkpoint.lock")
    assert owner.try_acquire()  # another process's checkpointer, as far as this one can tell
    checkpointer = Checkpointer(path, max_frames=50, idle=0.05, pause=0.01)
    checkpointer.start()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("BEGIN")
        for i in range(200):
            conn.execute("INSERT INTO counters (n, label) VALUES (?, ?)", (i, "x" * 2000))
        conn.execute("COMMIT")
        conn.close()
        assert log_frames(path, 4096) > 50
        checkpointer.nudge()
        wait_until(lambda: checkpointer.behind, "the checkpointer saw the log past max_frames")
        assert checkpointer.owner is False
        assert checkpointer.runs == 0

        owner.close()  # the owner exits: this one takes over and copies the log
        wait_until(lambda: checkpointer.owner and rows_in_file(path) == 200, "the takeover checkpointed")
    finally:
        conn.close()
        checkpointer.close()
        owner.close()


async def test_a_write_lock_held_outside_the_server_is_a_503_naming_it(tmp_path: Path) -> None:
    from alyx_server.db import Database, insert_doc
    from alyx_server.errors import AlyxError
    from tests.alyx_server.db.conftest import COUNTERS, SCHEMA

    path = tmp_path / "held.db"
    create_tables(path)
    db = await Database.open(path, SCHEMA, poll_interval=None)
    shell = sqlite3.connect(path, isolation_level=None)  # a sqlite3 shell in a write transaction
    try:
        shell.execute("BEGIN IMMEDIATE")
        with pytest.raises(AlyxError) as refused:
            await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 1}))
        assert refused.value.status == 503
        assert "locked by a process outside this server" in str(refused.value)
        shell.execute("ROLLBACK")
        assert (await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 2})))["n"] == 2
    finally:
        shell.close()
        await db.close()
