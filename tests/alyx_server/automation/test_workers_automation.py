"""Schedules and after-write hooks under `alyx serve --workers 2`, a real process on a real
port: an `every:` schedule runs once per interval across both workers, hook events of
writes spread over both workers arrive exactly once, and `kill -9` of the worker holding
a hook's lease loses no event (the other worker, or the restarted one, goes on)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.alyx_server.automation.support import RECORD_PY, TICK_PY, write_project
from tests.alyx_server.workers.test_supervisor import closing, session_on, wait_until, workers
from tests.servers import DEADLINE, AlyxProcess, cli_environment

SECRET = "h" * 40
RECORD_YAML = "on: { collection: posts, events: [create, update, delete] }\n"
# A little work per event, so that events are still in flight when a worker is killed.
SLOW_RECORD_PY = RECORD_PY.replace(
    "    doc = event", "    import asyncio\n    await asyncio.sleep(0.005)\n    doc = event"
)


def _rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute(sql, params).fetchall()


def _serve(root: Path) -> AlyxProcess:
    return AlyxProcess(root, "serve", "--workers", "2", env=cli_environment(ALYX_AUTH_JWT_SECRET=SECRET))


@contextlib.contextmanager
def _two_workers(root: Path) -> Iterator[AlyxProcess]:
    with _serve(root) as server:
        wait_until(lambda: len(workers(server)) == 2, server)
        yield server


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_an_every_schedule_runs_once_per_interval_across_two_workers(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p", {"tick.py": TICK_PY, "tick.yaml": "env: { NAME: tick }\nevery: 1s\n"}
    )
    db = root / "data" / "alyx.db"
    with _two_workers(root) as server:
        end = time.monotonic() + DEADLINE
        while len(_rows(db, "SELECT id FROM seen WHERE hook = 'tick'")) < 6:
            assert time.monotonic() < end, server.output()
            time.sleep(0.1)
        runs = [r[0] for r in _rows(db, "SELECT at FROM seen WHERE hook = 'tick' ORDER BY id")]
        state = _rows(db, "SELECT runs, lease_owner FROM _alyx_schedules WHERE name = 'tick'")
    # Each run stands for one fire time of the interval (first + k seconds), each time once,
    # one after another: two workers never ran the same slot.
    assert len(runs) == len(set(runs)), runs
    first = _stamp(runs[0])
    slots = [(_stamp(at) - first) for at in runs]
    assert all(abs(s - round(s)) < 0.01 for s in slots), runs
    assert [round(s) for s in slots] == sorted({round(s) for s in slots}), runs
    assert state[0][0] >= len(runs)


async def _write(session: aiohttp.ClientSession, url: str, live: list[str], i: int) -> None:
    """One create, update or delete of a post through `session` (so through its worker)."""
    posts = f"{url}/api/collections/posts"
    if not live or i % 3 == 0:
        async with session.post(posts, json={"title": "t", "n": i}) as response:
            assert response.status == 201, await response.text()
            live.append((await response.json())["id"])
    elif i % 7 == 0:
        async with session.delete(f"{posts}/{live.pop(0)}") as response:
            assert response.status == 204, await response.text()
    else:
        async with session.patch(f"{posts}/{live[i % len(live)]}", json={"n": i}) as response:
            assert response.status == 200, await response.text()


async def _until_delivered(db: Path, server: AlyxProcess) -> tuple[list[int], list[int]]:
    """(the posts' change ids, the change ids the hook recorded) once every one is recorded."""
    end = time.monotonic() + DEADLINE * 2
    while True:
        changes = [
            r[0] for r in _rows(db, "SELECT id FROM _alyx_changes WHERE collection = 'posts' ORDER BY id")
        ]
        seen = [r[0] for r in _rows(db, "SELECT change_id FROM seen WHERE hook = 'record' ORDER BY id")]
        if set(changes) <= set(seen):
            return changes, seen
        assert time.monotonic() < end, f"{len(seen)} of {len(changes)} events:\n{server.output()}"
        await asyncio.sleep(0.1)


def _lease_holder(db: Path) -> tuple[str, int]:
    """The worker name and pid in the record hook's lease (`worker:pid:random`)."""
    owner = _rows(db, "SELECT lease_owner FROM _alyx_hook_cursors WHERE hook = 'record'")[0][0]
    assert owner, "nobody holds the hook's lease"
    name, pid, _ = str(owner).split(":")
    return name, int(pid)


@pytest.mark.parametrize("kill", [False, True], ids=["normal", "kill-9-of-the-lease-holder"])
async def test_hook_events_of_writes_on_both_workers(tmp_path: Path, kill: bool) -> None:
    root = write_project(tmp_path / "p", {"record.py": SLOW_RECORD_PY, "record.yaml": RECORD_YAML})
    db = root / "data" / "alyx.db"
    with _two_workers(root) as server:
        url = server.url
        one, two = await session_on(url, "1"), await session_on(url, "2")
        async with closing(one, two):
            live: list[str] = []
            # Writes alternate between the two workers; one hook, run by one worker at a time.
            for i in range(200):
                await _write(one if i % 2 else two, url, live, i)
            changes, seen = await _until_delivered(db, server)
            assert seen == changes  # each exactly once, in commit order
            if not kill:
                return

            holder, pid = _lease_holder(db)
            other = two if holder == "1" else one
            done = len(seen)
            writing = asyncio.create_task(_many(other, url, live, 400))
            end = time.monotonic() + DEADLINE
            while len(_rows(db, "SELECT id FROM seen WHERE hook = 'record'")) < done + 30:
                assert time.monotonic() < end, server.output()
                await asyncio.sleep(0.005)
            os.kill(pid, signal.SIGKILL)
            await writing
            changes, seen = await _until_delivered(db, server)
            new_holder = _lease_holder(db)
    assert new_holder[1] != pid
    assert sorted(set(seen)) == changes  # none missing
    # Only the event in flight at the kill may come twice, with its change id.
    assert len(seen) - len(set(seen)) <= 1
    assert seen == sorted(seen)


async def _many(session: aiohttp.ClientSession, url: str, live: list[str], count: int) -> None:
    for i in range(count):
        await _write(session, url, live, 1000 + i)
