"""Several `alyx serve` processes on one project (ALYX_WORKER=1 and 2, one worker each,
each on its own port): the admin event stream, /health and /api/admin/stats of one show all of them,
through the peer sockets in the database's run directory; `kill -9` of one leaves the
others' streams working and its socket removed; a restarted one joins again."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from alyx_server.api.peers import parse_socket_name
from alyx_server.tools.processes import run_dir
from tests.schemas import NOTES
from tests.servers import ALYX, DEADLINE, AlyxProcess, cli_environment

SECRET = "w" * 40
Event = dict[str, Any]


class Workers:
    """The project, its admin token, and a way to start worker `name` as a process."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.project = tmp_path / "project"
        self.project.mkdir()
        (self.project / "schema.yaml").write_text(NOTES, encoding="utf-8")
        self.running: list[AlyxProcess] = []
        self.token = ""

    def start(self, name: str) -> AlyxProcess:
        env = cli_environment(
            ALYX_AUTH_JWT_SECRET=SECRET, ALYX_WORKER=name, ALYX_SERVER_WORKERS="1", ALYX_LOGGING_LEVEL="info"
        )
        log = self.tmp / f"worker-{name}-{len(self.running)}.log"
        process = AlyxProcess(self.project, "serve", env=env, log=log).start()
        self.running.append(process)
        if not self.token:
            made = subprocess.run(
                [str(ALYX), "admin", "create-token", "--name", "dash"],
                cwd=self.project, env=env, capture_output=True, text=True, timeout=DEADLINE, check=True,
            )  # fmt: skip
            self.token = made.stdout.strip()
        return process

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def sockets(self) -> list[tuple[str, int]]:
        """(worker, pid) of each peer socket in the run directory."""
        folder = run_dir(self.project / "data" / "alyx.db", create=False)
        found = [parse_socket_name(p.name) for p in folder.iterdir()] if folder.exists() else []
        return sorted(f for f in found if f is not None)

    def stop(self) -> None:
        for process in self.running:
            process.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    group = Workers(tmp_path)
    try:
        yield group
    finally:
        group.stop()


def pid_of(process: AlyxProcess) -> int:
    assert process.process is not None
    return process.process.pid


class Stream:
    """An admin event stream and every event it delivered so far."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[Event] = []
        self._read = 0

    async def next(self, matches: Callable[[Event], bool]) -> Event:
        """The first event after those already returned that `matches` (bounded wait);
        events skipped stay in `seen`."""
        while True:
            while self._read < len(self.seen):
                event = self.seen[self._read]
                self._read += 1
                if matches(event):
                    return event
            message = await self.ws.receive(timeout=DEADLINE / 2)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            self.seen.append(message.json())

    async def any(self, matches: Callable[[Event], bool]) -> Event:
        """An event delivered so far or later that `matches` (bounded wait)."""
        for event in self.seen:
            if matches(event):
                return event
        return await self.next(matches)


def request_to(path: str, worker: str) -> Callable[[Event], bool]:
    return lambda e: (
        e["type"] == "request"
        and (e["payload"]["path"], e["payload"]["worker"])
        == (
            path,
            worker,
        )
    )


def worker_event(name: str, state: str) -> Callable[[Event], bool]:
    return lambda e: (
        e["type"] == "worker"
        and (e["payload"]["worker"], e["payload"]["state"])
        == (
            name,
            state,
        )
    )


async def health_workers(http: aiohttp.ClientSession, url: str) -> list[tuple[str, int, str]]:
    async with http.get(url + "/health") as r:
        body = await r.json()
        assert r.status == 200, body
    return [(w["name"], w["pid"], w["phase"]) for w in body["workers"]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_one_workers_stream_and_health_show_all_workers_through_a_kill_and_a_restart(
    workers: Workers, http: aiohttp.ClientSession
) -> None:
    a = workers.start("1")
    b = workers.start("2")
    assert workers.sockets() == sorted([("1", pid_of(a)), ("2", pid_of(b))])
    assert await health_workers(http, a.url) == [("1", pid_of(a), "ready"), ("2", pid_of(b), "ready")]

    async with http.get(a.url + "/api/admin/stats", headers=workers.headers) as r:
        stats = await r.json()
    assert stats["worker"] == "1"
    # Nobody watches: no worker streams its events to another.
    assert [(w["name"], w["event_streams"]) for w in stats["workers"]] == [("1", 0), ("2", 0)]

    async with http.ws_connect(a.url + "/api/admin/events", headers=workers.headers) as socket:
        ws = Stream(socket)
        hello = await ws.next(lambda e: e["type"] == "hello")
        assert hello["payload"]["worker"] == "1"
        await ws.next(worker_event("2", "joined"))

        async with http.post(b.url + "/api/collections/notes", json={"title": "on b"}) as r:
            assert r.status == 201
            note = await r.json()
        event = await ws.next(request_to("/api/collections/notes", "2"))
        assert event["payload"]["method"] == "POST" and event["payload"]["status"] == 201
        # Each change once, from the watched worker's own feed.
        change = await ws.any(lambda e: e["type"] == "change" and e["payload"]["doc_id"] == note["id"])
        assert change["payload"]["worker"] == "1"

        async with http.get(a.url + "/api/admin/stats", headers=workers.headers) as r:
            stats = await r.json()
        assert [(w["name"], w["event_streams"]) for w in stats["workers"]] == [("1", 0), ("2", 1)]
        assert stats["requests"]["total"] >= 2  # the POST on 2 and this worker's own

        assert b.process is not None
        b.process.kill()
        b.process.wait(timeout=DEADLINE)
        await ws.next(worker_event("2", "left"))

        async with http.get(a.url + "/api/collections/notes") as r:
            assert r.status == 200
        await ws.next(request_to("/api/collections/notes", "1"))
        assert await health_workers(http, a.url) == [("1", pid_of(a), "ready")]
        assert workers.sockets() == [("1", pid_of(a))]  # the dead worker's socket was removed

        again = workers.start("2")
        await ws.next(lambda e: worker_event("2", "joined")(e) and e["payload"]["pid"] == pid_of(again))
        async with http.get(again.url + "/api/collections/notes/" + note["id"]) as r:
            assert r.status == 200
        await ws.next(request_to("/api/collections/notes/" + note["id"], "2"))
        assert await health_workers(http, a.url) == [
            ("1", pid_of(a), "ready"),
            ("2", pid_of(again), "ready"),
        ]

        changes = [e["payload"]["worker"] for e in ws.seen if e["type"] == "change"]
        assert changes == ["1"]  # not relayed by 2 as well

    # The dashboard left: worker 2 stops streaming to worker 1 (bounded wait).
    for _ in range(int(DEADLINE * 10)):
        async with http.get(a.url + "/api/admin/stats", headers=workers.headers) as r:
            stats = await r.json()
        if [w["event_streams"] for w in stats["workers"]] == [0, 0]:
            break
        await asyncio.sleep(0.1)
    assert [w["event_streams"] for w in stats["workers"]] == [0, 0]


async def test_a_stopped_worker_removes_its_socket(workers: Workers) -> None:
    a = workers.start("1")
    assert workers.sockets() == [("1", pid_of(a))]
    assert a.stop() == 0
    assert workers.sockets() == []
