"""`alyx serve --workers 2` as a real process on a real port: clients placed on each worker
(the `X-Alyx-Worker` header and the realtime `connected` message name it), a worker killed
with SIGKILL and restarted, SIGTERM with requests in flight, SIGHUP under load, and a
refused destructive change."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from alyx_server.workers import MAX_START_FAILURES
from tests.schemas import NOTES
from tests.servers import DEADLINE, AlyxProcess, cli_environment, free_port

SECRET = "w" * 40
READY = re.compile(r"worker (\d+) \(pid (\d+)\) ready")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "schema.yaml").write_text(NOTES, encoding="utf-8")
    return folder


@pytest.fixture
def server(project: Path) -> Iterator[AlyxProcess]:
    with AlyxProcess(
        project, "serve", "--workers", "2", env=cli_environment(ALYX_AUTH_JWT_SECRET=SECRET)
    ) as running:
        wait_until(lambda: len(workers(running)) == 2, running)
        yield running


def wait_until(condition: object, server: AlyxProcess) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out; server log:\n{server.output()}")


def workers(server: AlyxProcess) -> dict[str, int]:
    """The supervisor's live worker processes: name -> pid (from its `ready` log lines)."""
    found: dict[str, int] = {}
    for name, pid in READY.findall(server.output()):
        found[name] = int(pid)
    return {name: pid for name, pid in found.items() if Path(f"/proc/{pid}").exists() and alive(pid)}


def alive(pid: int) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]
    return False


async def session_on(url: str, worker: str) -> aiohttp.ClientSession:
    """A client whose one keep-alive connection is served by `worker`.

    Connections are opened eight at a time: one at a time, on an idle server, the kernel
    may hand every one of them to the same worker (both wait on the one listening socket,
    and whichever wakes first accepts), so a lone connection says nothing of the others.
    """

    async def served_by(session: aiohttp.ClientSession) -> str:
        async with session.get(f"{url}/health") as response:
            return response.headers["X-Alyx-Worker"]

    for _ in range(50):
        sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in range(8)]
        names = await asyncio.gather(*(served_by(session) for session in sessions))
        found = next((s for s, name in zip(sessions, names, strict=True) if name == worker), None)
        for session in sessions:
            if session is not found:
                await session.close()
        if found is not None:
            return found
    raise AssertionError(f"no connection reached worker {worker}")


async def socket_on(url: str, worker: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    """A realtime WebSocket served by `worker` (its `connected` message says which)."""
    for _ in range(200):
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(f"{url}/api/realtime")
        hello = await ws.receive_json(timeout=DEADLINE)
        assert hello["type"] == "connected"
        if hello["payload"]["worker"] == worker:
            return session, ws
        await ws.close()
        await session.close()
    raise AssertionError(f"no WebSocket reached worker {worker}")


@contextlib.asynccontextmanager
async def closing(*sessions: aiohttp.ClientSession) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for session in sessions:
            await session.close()


def stored_ids(project: Path) -> set[str]:
    conn = sqlite3.connect(project / "data" / "alyx.db")
    try:
        return {row[0] for row in conn.execute("SELECT id FROM notes")}
    finally:
        conn.close()


async def test_a_killed_worker_is_restarted_and_the_other_keeps_its_clients(
    server: AlyxProcess, project: Path
) -> None:
    url = server.url
    before = workers(server)
    one = await session_on(url, "1")
    two = await session_on(url, "2")
    ws_session, ws = await socket_on(url, "1")
    async with closing(one, two, ws_session):
        acknowledged: list[str] = []
        notes = f"{url}/api/collections/notes"

        async def write_through_two() -> None:
            with contextlib.suppress(aiohttp.ClientError):
                for i in range(10_000):
                    async with two.post(notes, json={"title": f"two {i}"}) as response:
                        assert response.status == 201
                        assert response.headers["X-Alyx-Worker"] == "2"
                        acknowledged.append((await response.json())["id"])

        writing = asyncio.create_task(write_through_two())
        while len(acknowledged) < 20:
            await asyncio.sleep(0.001)
        os.kill(before["2"], signal.SIGKILL)
        await writing  # ends with the connection's reset

        # Worker 1's clients never noticed: the keep-alive connection and the WebSocket.
        async with one.post(notes, json={"title": "one"}) as response:
            assert response.status == 201
            assert response.headers["X-Alyx-Worker"] == "1"
        await ws.send_json({"type": "ping", "id": "p"})
        assert (await ws.receive_json(timeout=DEADLINE))["type"] == "pong"

        # Every acknowledged write is in the file.
        assert len(acknowledged) >= 20
        assert set(acknowledged) <= stored_ids(project)

        # The supervisor starts worker 2 again, and counts it.
        await asyncio.to_thread(
            wait_until, lambda: workers(server).get("2") not in (None, before["2"]), server
        )
        assert workers(server)["1"] == before["1"]
        again = await session_on(url, "2")
        async with closing(again), again.get(f"{url}/metrics") as response:
            body = await response.text()
        assert 'alyx_worker_restarts_total{worker="2"} 1.0' in body
    assert "worker 2 (pid" in server.output()
    assert "was killed by SIGKILL; starting it again" in server.output()
    assert server.stop() == 0


HOLD = """\
import asyncio

from alyx_functions import define_function


async def handler(input, ctx):
    await ctx.db.notes.create({"title": "started"})
    while not await ctx.db.notes.find(filter={"title": "go"}):
        await asyncio.sleep(0.05)
    return {"held": True}


hold = define_function(input={}, output={"held": {"type": "bool"}}, handler=handler)
"""

HOLD_MANIFEST = """\
runtime: python
timeout: 60s
input: {}
output:
  held: { type: bool }
rule: "true"
"""


def count_notes(project: Path, title: str) -> int:
    conn = sqlite3.connect(project / "data" / "alyx.db")
    try:
        return int(conn.execute("SELECT count(*) FROM notes WHERE title = ?", (title,)).fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def holding_project(project: Path) -> Path:
    """The project with a function that holds its request until a note titled "go" exists."""
    (project / "functions").mkdir()
    (project / "functions" / "hold.py").write_text(HOLD, encoding="utf-8")
    (project / "functions" / "hold.yaml").write_text(HOLD_MANIFEST, encoding="utf-8")
    return project


async def test_sigterm_lets_the_requests_in_flight_on_every_worker_finish(holding_project: Path) -> None:
    project = holding_project
    env = cli_environment(ALYX_AUTH_JWT_SECRET=SECRET)
    server = AlyxProcess(project, "serve", "--workers", "2", env=env)
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(wait_until, lambda: len(workers(server)) == 2, server)
        sessions = [await session_on(server.url, name) for name in ("1", "2", "1", "2")]
        async with closing(*sessions):

            async def call(session: aiohttp.ClientSession) -> tuple[int, str]:
                async with session.post(f"{server.url}/api/functions/hold", json={"input": {}}) as response:
                    await response.read()
                    return response.status, response.headers["X-Alyx-Worker"]

            calls = [asyncio.create_task(call(session)) for session in sessions]
            # Every call is inside its handler (each wrote its note) before the signal.
            await asyncio.to_thread(wait_until, lambda: count_notes(project, "started") == 4, server)
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)

            def refused() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                except OSError:
                    return True
                return False

            await asyncio.to_thread(wait_until, refused, server)  # every worker is draining
            conn = sqlite3.connect(project / "data" / "alyx.db")
            with conn:
                conn.execute("INSERT INTO notes (id, title) VALUES ('go', 'go')")
            conn.close()
            answers = await asyncio.gather(*calls)
        assert sorted(answers) == [(200, "1"), (200, "1"), (200, "2"), (200, "2")]
        assert await asyncio.to_thread(server.process.wait, DEADLINE) == 0
    finally:
        server.stop()


async def test_sighup_restarts_every_worker_under_load_without_a_failed_request(
    server: AlyxProcess,
) -> None:
    url = server.url
    before = workers(server)
    statuses: list[int] = []
    seen: set[str] = set()
    stop = asyncio.Event()

    async def client(n: int) -> None:
        async with aiohttp.ClientSession() as session:
            i = 0
            while not stop.is_set() or i < 50:
                i += 1
                if i % 2:
                    request = session.post(f"{url}/api/collections/notes", json={"title": f"{n}-{i}"})
                else:
                    request = session.get(f"{url}/api/collections/notes?limit=5")
                async with request as response:
                    await response.read()
                    statuses.append(response.status)
                    seen.add(response.headers["X-Alyx-Worker"])

    clients = [asyncio.create_task(client(n)) for n in range(4)]
    while len(statuses) < 50:
        await asyncio.sleep(0.01)
    # SIGHUP reads alyx.yaml again: the new workers take a smaller body limit.
    (server.project / "alyx.yaml").write_text("server:\n  max_body_size: 1KiB\n", encoding="utf-8")
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)

    def rolled() -> bool:
        now = workers(server)
        return (
            len(now) == 2
            and all(now[name] != before[name] for name in before)
            and "rolling restart done" in server.output()
        )

    await asyncio.to_thread(wait_until, rolled, server)
    stop.set()
    await asyncio.gather(*clients)
    assert len(statuses) >= 200
    assert set(statuses) <= {200, 201}, sorted(set(statuses))
    # Kept-alive connections may all sit on one worker; what counts is that none failed.
    assert seen and seen <= {"1", "2"}, seen
    for name in ("1", "2"):
        session = await session_on(url, name)
        async with closing(session):
            big = {"title": "x" * 2048}
            async with session.post(f"{url}/api/collections/notes", json=big) as response:
                assert response.status == 413
    assert server.stop() == 0


async def test_a_worker_that_keeps_failing_to_start_stops_serve_with_its_reason(
    server: AlyxProcess,
) -> None:
    (server.project / "schema.yaml").write_text("version: 1\ncollections: [\n", encoding="utf-8")
    os.kill(workers(server)["2"], signal.SIGKILL)
    assert server.process is not None
    status = await asyncio.to_thread(server.process.wait, DEADLINE)
    assert status == 1
    output = server.output()
    assert output.count("starting it again") == MAX_START_FAILURES  # the kill, then 4 failed starts
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"Error: worker 2 failed to start {MAX_START_FAILURES} times in a row: ")
    assert "schema.yaml" in last and "fix the YAML syntax" in last


def serve_once(project: Path, env: dict[str, str], workers: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alyx_cli", "serve", "-p", str(free_port()), "--workers", workers],
        cwd=project, env=env, capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip


def test_a_refused_destructive_change_stops_serve_with_one_line(project: Path) -> None:
    env = cli_environment(ALYX_AUTH_JWT_SECRET=SECRET)
    with AlyxProcess(project, "serve", "--workers", "2", env=env):
        pass
    (project / "schema.yaml").write_text(NOTES.replace("      title: { type: string }\n", ""))
    results = {count: serve_once(project, env, count) for count in ("1", "2")}
    alone, two = results["1"], results["2"]
    assert two.returncode == alone.returncode == 1
    errors = [line for line in two.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1
    assert "schema.yaml has destructive changes" in errors[0]
    assert errors == [line for line in alone.stderr.splitlines() if line.startswith("Error: ")]
    assert "starting it again" not in two.stderr


def test_a_process_named_by_alyx_worker_refuses_to_run_several(project: Path) -> None:
    env = cli_environment(ALYX_AUTH_JWT_SECRET=SECRET, ALYX_WORKER="2")
    result = serve_once(project, env, "3")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: ALYX_WORKER=2 names this process as one worker of a set started by hand, so it "
        "cannot run 3 workers: run it with --workers 1 (server.workers), or unset ALYX_WORKER"
    )
    assert not (project / "data" / "alyx.db").exists()


def test_one_worker_is_one_process_that_survives_sighup(project: Path) -> None:
    env = cli_environment(ALYX_AUTH_JWT_SECRET=SECRET)
    with AlyxProcess(project, "serve", "--workers", "1", env=env) as server:
        assert server.process is not None
        assert not Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP ignored" in server.output(), server)
        with urllib.request.urlopen(f"{server.url}/health", timeout=DEADLINE) as answer:
            assert answer.headers["X-Alyx-Worker"] == "1"
        assert server.stop() == 0
