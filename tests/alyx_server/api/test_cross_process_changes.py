"""Two `alyx serve` processes on one project (ALYX_WORKER=1 and 2, each on its own port)
with the change poller slowed to a minute, so that whatever reaches the other process
in time was carried by the processes' own signals (db/notify.py), not by the poller:

- a write through A reaches a WebSocket subscriber on B;
- a logout answered by A is refused by B on the very next request, though B had the
  session cached;
- a refresh-token reuse caught by B revokes the family, and A refuses its access token;
- an account disabled through A loses its socket on B (ACCOUNT_DISABLED);
- a token revoked by `alyx admin revoke-token` loses its socket at once too;
- a list's total on B counts a row created through A;
- refreshes through A announce nothing (the family stays live), and a logout after them
  is refused by B at once, on REST and on B's socket.

Waits are bounded reads (`WAIT`), never sleeps; none is a claim about speed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.db.notify import COUNTER_FILE
from alyx_server.tools.processes import run_dir
from tests.schemas import NOTES
from tests.servers import AlyxProcess, cli_environment

pytestmark = pytest.mark.slow

SECRET = "c" * 40
PASSWORD = "correct-horse-1"
ROOT = "root@example.com"
WAIT = 20.0  # seconds: bounds a wait for a message; the poller would take 60


class Pair:
    """One project served by two processes whose poller would take a minute."""

    def __init__(self, tmp_path: Path) -> None:
        self.project = tmp_path / "project"
        self.project.mkdir()
        (self.project / "schema.yaml").write_text(NOTES, encoding="utf-8")
        (self.project / "alyx.yaml").write_text("realtime:\n  poll_interval: 60s\n", encoding="utf-8")
        self.processes: list[AlyxProcess] = []
        for name in ("1", "2"):
            env = cli_environment(ALYX_AUTH_JWT_SECRET=SECRET, ALYX_WORKER=name, ALYX_AUTH_BCRYPT_COST="4")
            log = tmp_path / f"worker-{name}.log"
            self.processes.append(AlyxProcess(self.project, "serve", env=env, log=log).start())

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    servers = Pair(tmp_path)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kw: Any
) -> tuple[int, Any]:
    async with http.request(method, url, headers=bearer(token) if token else {}, **kw) as answer:
        return answer.status, (await answer.json() if answer.status != 204 else None)


async def register(http: aiohttp.ClientSession, url: str, email: str) -> dict[str, Any]:
    body = {"email": email, "password": PASSWORD}
    status, answer = await call(http, "POST", f"{url}/api/auth/register", json=body)
    assert status == 201, answer
    return {"id": answer["user"]["id"], **answer["tokens"]}


async def login(http: aiohttp.ClientSession, url: str, email: str) -> dict[str, Any]:
    body = {"email": email, "password": PASSWORD}
    status, answer = await call(http, "POST", f"{url}/api/auth/login", json=body)
    assert status == 200, answer
    return {"id": answer["user"]["id"], **answer["tokens"]}


async def me(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, str | None]:
    status, body = await call(http, "GET", f"{url}/api/auth/me", token)
    return status, None if status == 200 else body["code"]


class Socket:
    """A real WebSocket on /api/realtime, read message by message with a bound."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.worker: str | None = None

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, token: str | None = None) -> Socket:
        ws = await http.ws_connect(f"{url}/api/realtime", headers=bearer(token) if token else {})
        socket = cls(ws)
        first = await socket.receive()
        assert first["type"] == "connected", first
        return socket

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = await asyncio.wait_for(self.ws.receive_json(), WAIT)
        return message

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if message["type"] == kind:
                return message

    async def subscribe(self, collection: str = "notes") -> dict[str, Any]:
        await self.ws.send_json({"type": "subscribe", "id": "s1", "payload": {"collection": collection}})
        snapshot = await self.until("snapshot")
        assert snapshot["id"] == "s1", snapshot
        return snapshot


async def test_a_write_through_one_process_reaches_a_subscriber_on_the_other(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    a, b = (p.url for p in pair.processes)
    live = await Socket.open(http, b)
    await live.subscribe()
    status, note = await call(http, "POST", f"{a}/api/collections/notes", json={"title": "from A"})
    assert status == 201, note
    delta = await live.until("delta")
    assert delta["payload"]["changes"]["inserts"] == [note]
    await live.ws.close()


async def test_a_logout_in_one_process_is_refused_by_the_other_at_once(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    a, b = (p.url for p in pair.processes)
    alice = await register(http, a, "alice@example.com")
    assert await me(http, b, alice["access_token"]) == (200, None)  # B caches the session
    status, _ = await call(
        http, "POST", f"{a}/api/auth/logout", json={"refresh_token": alice["refresh_token"]}
    )
    assert status == 204
    assert await me(http, b, alice["access_token"]) == (401, "SESSION_REVOKED")


async def test_a_refresh_reuse_caught_by_one_process_revokes_the_family_in_the_other(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    a, b = (p.url for p in pair.processes)
    alice = await register(http, a, "alice@example.com")
    status, rotated = await call(
        http, "POST", f"{a}/api/auth/refresh", json={"refresh_token": alice["refresh_token"]}
    )
    assert status == 200, rotated
    fresh = rotated["tokens"]["access_token"]
    assert await me(http, a, fresh) == (200, None)  # A caches the family, live
    status, body = await call(
        http, "POST", f"{b}/api/auth/refresh", json={"refresh_token": alice["refresh_token"]}
    )
    assert (status, body["code"]) == (401, "TOKEN_REUSED")
    assert await me(http, a, fresh) == (401, "SESSION_REVOKED")


async def test_an_account_disabled_through_one_process_loses_its_socket_on_the_other(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    a, b = (p.url for p in pair.processes)
    result = CliRunner().invoke(
        cli, ["admin", "create", ROOT, "--password-stdin", "-C", str(pair.project)], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    root = await login(http, a, ROOT)
    alice = await register(http, a, "alice@example.com")
    live = await Socket.open(http, b, alice["access_token"])
    await live.subscribe()
    status, body = await call(
        http, "PATCH", f"{a}/api/admin/users/{alice['id']}", root["access_token"], json={"disabled": True}
    )
    assert status == 200, body
    notice = await live.until("error")
    assert notice["payload"]["code"] == "ACCOUNT_DISABLED", notice
    assert await me(http, b, alice["access_token"]) == (403, "ACCOUNT_DISABLED")
    await live.ws.close()


async def test_a_token_revoked_by_the_cli_loses_its_socket_at_once(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    _, b = (p.url for p in pair.processes)
    admin = ["admin", "-C", str(pair.project)]
    created = CliRunner().invoke(cli, [*admin[:1], "create-token", "--name", "ops", *admin[1:]])
    assert created.exit_code == 0, created.output
    live = await Socket.open(http, b, created.stdout.strip())
    await live.subscribe()
    revoked = CliRunner().invoke(cli, [*admin[:1], "revoke-token", "ops", *admin[1:]])
    assert revoked.exit_code == 0, revoked.output
    notice = await live.until("error")
    assert notice["payload"]["code"] == "SESSION_REVOKED", notice
    await live.ws.close()


async def test_a_total_on_one_process_counts_a_row_created_through_the_other(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    a, b = (p.url for p in pair.processes)
    for expected in (0, 1, 2):
        status, page = await call(http, "GET", f"{b}/api/collections/notes?limit=1&total=true")
        assert status == 200, page
        assert page["total"] == expected
        status, _ = await call(http, "POST", f"{a}/api/collections/notes", json={"title": f"n{expected}"})
        assert status == 201


def commits_announced(project: Path) -> int:
    """The shared commit counter of the project's database (db/notify.py)."""
    counter = run_dir(project / "data" / "alyx.db", create=False) / COUNTER_FILE
    return int.from_bytes(counter.read_bytes()[:8], sys.byteorder)


async def test_a_refresh_announces_nothing_and_a_logout_after_refreshes_elsewhere_is_refused_at_once(
    pair: Pair, http: aiohttp.ClientSession
) -> None:
    a, b = (p.url for p in pair.processes)
    alice = await register(http, a, "alice@example.com")
    assert await me(http, b, alice["access_token"]) == (200, None)  # B caches the family
    live = await Socket.open(http, b, alice["access_token"])
    await live.subscribe()
    before = commits_announced(pair.project)
    refresh_token = alice["refresh_token"]
    for _ in range(3):
        status, rotated = await call(
            http, "POST", f"{a}/api/auth/refresh", json={"refresh_token": refresh_token}
        )
        assert status == 200, rotated
        refresh_token = rotated["tokens"]["refresh_token"]
    # A rotation leaves its family live: nothing for B to catch up on, nothing announced.
    assert commits_announced(pair.project) == before
    fresh = rotated["tokens"]["access_token"]
    assert await me(http, b, fresh) == (200, None)
    status, _ = await call(http, "POST", f"{a}/api/auth/logout", json={"refresh_token": refresh_token})
    assert status == 204
    assert commits_announced(pair.project) > before
    assert await me(http, b, fresh) == (401, "SESSION_REVOKED")
    assert await me(http, b, alice["access_token"]) == (401, "SESSION_REVOKED")
    notice = await live.until("error")
    assert notice["payload"]["code"] == "SESSION_REVOKED", notice
    await live.ws.close()
