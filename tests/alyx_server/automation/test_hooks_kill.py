"""After-write hooks across `kill -9` of a real server process: no event is lost."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

from tests.alyx_server.automation.support import RECORD_PY, write_project
from tests.servers import DEADLINE, AlyxProcess


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _post(url: str, body: dict[str, object]) -> None:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 201


def test_kill_9_in_the_middle_of_1000_events_loses_none(tmp_path: Path) -> None:
    slow = RECORD_PY.replace(
        "    doc = event", "    import asyncio\n    await asyncio.sleep(0.005)\n    doc = event"
    )
    root = write_project(
        tmp_path / "p",
        {"record.py": slow, "record.yaml": "on: { collection: posts, events: [create, update, delete] }\n"},
    )
    db = root / "data" / "alyx.db"
    server = AlyxProcess(root, "dev").start()
    try:
        for i in range(1000):
            _post(f"{server.url}/api/collections/posts", {"title": "t", "n": i})
        end = time.monotonic() + DEADLINE
        while _count(db, "SELECT count(*) FROM seen") < 100:
            assert time.monotonic() < end, server.output()
            time.sleep(0.01)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
    finally:
        server.stop()
    handled = _count(db, "SELECT count(*) FROM seen")
    assert handled < 1000, "the hook finished before the kill: nothing was in flight"
    with AlyxProcess(root, "dev", port=server.port) as again:
        end = time.monotonic() + DEADLINE
        while _count(db, "SELECT count(DISTINCT change_id) FROM seen") < 1000:
            assert time.monotonic() < end, again.output()
            time.sleep(0.05)
    with sqlite3.connect(db) as conn:
        changes = [
            r[0] for r in conn.execute("SELECT id FROM _alyx_changes WHERE collection = 'posts' ORDER BY id")
        ]
        seen = [r[0] for r in conn.execute("SELECT change_id FROM seen ORDER BY id")]
    assert sorted(set(seen)) == changes  # none missing
    # Only the event in flight at the kill came twice, with the same change id (its key).
    duplicates = len(seen) - len(set(seen))
    assert duplicates <= 1
    assert seen == sorted(seen)  # in commit order, the repeat next to itself
