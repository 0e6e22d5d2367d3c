"""Two `alyx serve` processes on one project write into one SQLite file at once.

Clients create notes through both servers concurrently; one server is killed with
SIGKILL in the middle of the load. Every create that either server acknowledged (201)
must be in the file afterwards, and no client may ever see an error from the two
writers meeting (a 5xx, "database is locked").
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp

from tests.schemas import NOTES
from tests.servers import AlyxProcess, cli_environment

SECRET = "s" * 40
TASKS = 12  # concurrent clients per server


async def test_kill_9_of_one_server_loses_no_acknowledged_write(tmp_path: Path) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "schema.yaml").write_text(NOTES, encoding="utf-8")
    servers = [
        AlyxProcess(
            project,
            "serve",
            env=cli_environment(ALYX_AUTH_JWT_SECRET=SECRET, ALYX_WORKER=str(n)),
            log=tmp_path / f"serve-{n}.log",
        )
        for n in (1, 2)
    ]
    acknowledged: list[str] = []
    refused: list[str] = []
    per_server = [0, 0]
    killed = asyncio.Event()
    done = asyncio.Event()

    async def client(session: aiohttp.ClientSession, index: int, task: int) -> None:
        url = f"{servers[index].url}/api/collections/notes"
        n = 0
        while not done.is_set():
            n += 1
            try:
                async with session.post(url, json={"title": f"s{index}-t{task}-{n}"}) as response:
                    body = await response.json(content_type=None)
                    if response.status == 201:
                        acknowledged.append(body["id"])
                        per_server[index] += 1
                    else:
                        refused.append(f"{response.status} from server {index + 1}: {body}")
            except (TimeoutError, aiohttp.ClientError):
                if not (index == 1 and killed.is_set()):
                    raise
                await asyncio.sleep(0.05)  # the killed server: nothing was acknowledged

    async def conductor() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while per_server[1] < 300 or per_server[0] < 300:
            assert loop.time() < end, f"too few writes acknowledged: {per_server}"
            await asyncio.sleep(0.02)
        process = servers[1].process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        killed.set()
        after = per_server[0]
        while per_server[0] < after + 300:
            assert loop.time() < end, f"the surviving server stopped acknowledging: {per_server}"
            await asyncio.sleep(0.02)
        done.set()

    try:
        for server in servers:
            server.start()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(
                conductor(),
                *(client(session, index, task) for index in (0, 1) for task in range(TASKS)),
            )
    finally:
        for server in servers:
            server.stop()
    assert servers[1].process is not None and servers[1].process.returncode == -signal.SIGKILL

    assert not refused, refused[:5]
    conn = sqlite3.connect(project / "data" / "alyx.db")
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM notes")}
    finally:
        conn.close()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged writes lost"
    for server in servers:
        assert "database is locked" not in server.output()
