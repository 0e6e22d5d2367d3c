"""`alyx dev` and `alyx serve` as real processes: start, answer, stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from alyx_server import __version__
from tests.schemas import NOTES
from tests.servers import cli_environment as environment
from tests.servers import free_port

SCHEMA = NOTES
SECRET = "t" * 40


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    return tmp_path


class Server:
    """A running `alyx` server process and the line it printed at start."""

    def __init__(self, process: subprocess.Popen[str], banner: str, port: int) -> None:
        self.process = process
        self.banner = banner
        self.url = f"http://127.0.0.1:{port}"
        self.stderr = ""

    def wait(self) -> int:
        """Wait for the exit; collect stderr and close the pipes."""
        _out, self.stderr = self.process.communicate(timeout=30)
        return self.process.returncode

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait()


def start(project: Path, command: str, *args: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "alyx_cli", command, "-p", str(port), *args],
        cwd=project,
        env=env or environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline().strip()
    if not banner:
        _out, err = process.communicate(timeout=30)
        raise AssertionError(f"the server did not start: {err}")
    return Server(process, banner, port)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    running: list[Server] = []
    yield running
    for server in running:
        if server.process.poll() is None:
            server.process.kill()
        server.process.communicate(timeout=30)


async def get_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


def test_dev_starts_answers_and_stops_on_sigterm(project: Path, servers: list[Server]) -> None:
    server = start(project, "dev", "--no-watch")
    servers.append(server)
    assert server.banner == f"Alyx {__version__} serving {project.resolve()} at {server.url} (dev)"
    assert asyncio.run(get_status(server.url + "/health")) == 200
    assert server.stop() == 0
    assert (project / "data" / ".jwt_secret").is_file()


def test_dev_tui_without_a_terminal_runs_without_the_dashboard(project: Path, servers: list[Server]) -> None:
    server = start(project, "dev", "--tui", "--no-watch")
    servers.append(server)
    assert server.stop() == 0
    assert "the terminal dashboard (--tui) needs a terminal; running without it" in server.stderr


def test_serve_needs_a_secret(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alyx_cli", "serve", "-p", str(free_port())],
        cwd=project, env=environment(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")
    assert "auth.jwt.secret" in result.stderr
    assert "required under `alyx serve`" in result.stderr


def test_serve_refuses_a_destructive_change(project: Path, servers: list[Server]) -> None:
    server = start(project, "serve", env=environment(ALYX_AUTH_JWT_SECRET=SECRET))
    servers.append(server)
    assert server.stop() == 0
    (project / "schema.yaml").write_text(SCHEMA.replace("      title: { type: string }\n", ""))
    result = subprocess.run(
        [sys.executable, "-m", "alyx_cli", "serve", "-p", str(free_port())],
        cwd=project, env=environment(ALYX_AUTH_JWT_SECRET=SECRET), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "schema.yaml has destructive changes" in result.stderr
    assert "alyx migrate create drop_title" in result.stderr


async def fire_writes(url: str, count: int, server: Server) -> list[str]:
    """POST `count` notes at once; SIGTERM the server once a few are acknowledged."""
    acknowledged: list[str] = []

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        try:
            async with session.post(url, json={"title": f"n{i}"}) as response:
                if response.status == 201:
                    acknowledged.append((await response.json())["id"])
        except aiohttp.ClientError:
            pass  # refused or cut off by the shutdown: not acknowledged, nothing promised

    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(one(session, i)) for i in range(count)]
        while len(acknowledged) < 20:
            await asyncio.sleep(0.001)
        server.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
    return acknowledged


def test_sigterm_keeps_every_acknowledged_write(project: Path, servers: list[Server]) -> None:
    server = start(project, "serve", env=environment(ALYX_AUTH_JWT_SECRET=SECRET))
    servers.append(server)
    acknowledged = asyncio.run(fire_writes(server.url + "/api/collections/notes", 400, server))
    assert server.wait() == 0
    conn = sqlite3.connect(project / "data" / "alyx.db")
    stored = {row[0] for row in conn.execute("SELECT id FROM notes")}
    conn.close()
    assert len(acknowledged) >= 20
    assert set(acknowledged) <= stored


def test_port_in_use_is_one_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "alyx_cli", "dev", "-p", str(port)],
            cwd=project, env=environment(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ")
    assert f"port {port} (from -p/--port) is already in use on 127.0.0.1" in last
