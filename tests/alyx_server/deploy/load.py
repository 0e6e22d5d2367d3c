"""What the deploy-under-load tests share: a first server made the way `alyx init
--server` makes one, `alyx deploy` run for real, and the clients' bookkeeping (a Tally
each, the Load they share), the realtime subscriber and the wait for more requests.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import requests
from click.testing import CliRunner

from alyx_cli.main import cli
from tests.servers import ALYX, DEADLINE

PASSWORD = "correct horse battery staple"
MAX_OPS = 100_000  # a bound on each client's loop; the stop event ends it long before
# Deployed with the first version: registrations and logins without a rate limit (the test
# signs up several clients from one address) and a warm function instance.
APP_CONFIG = """\
auth:
  allow_registration: true
  rate_limit: { register: "off", login: "off" }
functions:
  pool: { min_warm: 1 }
"""


@dataclass
class Tally:
    """What one client did: requests answered as expected, and any that were not."""

    name: str
    done: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Load:
    base: str
    stop: threading.Event = field(default_factory=threading.Event)
    tallies: list[Tally] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # post id -> last acknowledged title
    published: set[str] = field(default_factory=set)  # posts the function acknowledged publishing
    lock: threading.Lock = field(default_factory=threading.Lock)
    events: dict[str, int] = field(default_factory=lambda: {"snapshot": 0, "delta": 0})
    subscriber_closed: list[str] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)
    workers: set[str] = field(default_factory=set)  # X-Alyx-Worker of the answers

    def tally(self, name: str) -> Tally:
        t = Tally(name)
        self.tallies.append(t)
        return t

    def counts(self) -> list[int]:
        return [t.done for t in self.tallies]

    def failures(self) -> list[str]:
        return [f"{t.name}: {f}" for t in self.tallies for f in t.failures]


def sign_up(base: str, email: str) -> tuple[str, str]:
    account = {"email": email, "password": PASSWORD}
    response = requests.post(f"{base}/api/auth/register", json=account, timeout=DEADLINE)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["user"]["id"], body["tokens"]["access_token"]


def subscriber(load: Load) -> None:
    """Holds one realtime subscription on the published posts for the whole run."""
    tally = load.tally("subscriber")

    async def run() -> None:
        ws_url = load.base.replace("http", "ws", 1) + "/api/realtime"
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            query = {"collection": "posts", "filter": {"published": True}}
            await ws.send_json({"id": "s1", "type": "subscribe", "payload": query})
            for _ in range(MAX_OPS):
                if load.stop.is_set():
                    break
                try:
                    message = await ws.receive(timeout=0.2)
                except TimeoutError:
                    continue
                if message.type != aiohttp.WSMsgType.TEXT:
                    load.subscriber_closed.append(f"{message.type.name}: {message.data!r}")
                    return
                data = json.loads(message.data)
                if data["type"] == "error":
                    tally.failures.append(f"realtime error: {data}")
                elif data["type"] in load.events:
                    load.events[data["type"]] += 1
                    tally.done += 1
                    load.subscribed.set()
            if ws.closed:
                load.subscriber_closed.append(f"closed with {ws.close_code}")

    try:
        asyncio.run(run())
    except Exception as e:  # the socket could not be held: that is the failure checked
        load.subscriber_closed.append(f"{type(e).__name__}: {e}")


def wait_for_more(load: Load, threads: list[threading.Thread], at_least: int = 5) -> None:
    """Until every client has done `at_least` more requests than now (bounded)."""
    start = load.counts()
    end = time.monotonic() + DEADLINE
    while any(now - before < at_least for now, before in zip(load.counts(), start, strict=True)):
        assert all(t.is_alive() for t in threads), f"a client stopped: {load.failures()}"
        assert time.monotonic() < end, f"the clients made no progress: {load.counts()} {load.failures()}"
        time.sleep(0.05)


def deploy(project: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(ALYX), "deploy", *args], cwd=project, env=env, capture_output=True, text=True,
        timeout=DEADLINE, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path}: {old!r} not found"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def first_server(tmp_path: Path, port: int) -> tuple[Path, str]:
    server = tmp_path / "server"
    args = [
        "init",
        "--server",
        str(server),
        "--admin",
        "ada@example.com",
        "--password-stdin",
        "--port",
        str(port),
    ]
    created = CliRunner().invoke(cli, args, input=PASSWORD + "\n")
    assert created.exit_code == 0, created.output
    return server, created.stdout.splitlines()[1].removeprefix("ALYX_DEPLOY_TOKEN=")
