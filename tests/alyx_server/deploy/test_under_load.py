"""Deploys under load: a production server started by the first-server path
(`alyx init --server`, then `alyx serve`), the blog project deployed to it with the real
`alyx deploy --yes`, while clients read, write, call a function and hold a realtime
subscription. Three deploys (a new field and a changed function; a new field elsewhere;
a changed function and a changed key) and a rollback run through the load.

What must hold: no request failed (every answer is the one a quiet server gives), every
acknowledged write is in the database afterwards with its last acknowledged value, and
the subscriber's socket stayed open the whole time, got a fresh snapshot when its
collection changed, and deltas for the writes.

Loops are bounded and the waits poll with a deadline (tests/servers.py's DEADLINE); the
load overlaps each deploy because the test waits, between deploys, until every client has
done more requests, not for a time.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from click.testing import CliRunner

from alyx_cli.commands.init import create_project
from alyx_cli.main import cli
from tests.servers import ALYX, DEADLINE, AlyxProcess, cli_environment, free_port

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
MAX_OPS = 100_000  # a bound on each client's loop; the stop event ends it long before
WRITERS = 3
READERS = 2

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

    def tally(self, name: str) -> Tally:
        t = Tally(name)
        self.tallies.append(t)
        return t

    def counts(self) -> list[int]:
        return [t.done for t in self.tallies]

    def failures(self) -> list[str]:
        return [f"{t.name}: {f}" for t in self.tallies for f in t.failures]


def expect(
    tally: Tally, send: Callable[..., requests.Response], url: str, status: int, body: Any = None
) -> Any:
    """Send one request; an exception or another status is a failure (None returned)."""
    what = f"{getattr(send, '__name__', 'request').upper()} {url.split('/api/', 1)[-1]}"
    try:
        response = send(url, json=body, timeout=DEADLINE)
    except requests.RequestException as e:
        tally.failures.append(f"{what}: {type(e).__name__}: {e}")
        return None
    if response.status_code != status:
        tally.failures.append(f"{what}: {response.status_code} {response.text[:300]}")
        return None
    tally.done += 1
    return response.json()


def sign_up(base: str, email: str) -> tuple[str, str]:
    account = {"email": email, "password": PASSWORD}
    response = requests.post(f"{base}/api/auth/register", json=account, timeout=DEADLINE)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["user"]["id"], body["tokens"]["access_token"]


def writer(load: Load, index: int) -> None:
    """Creates posts, renames them, and publishes each through the function."""
    tally = load.tally(f"writer{index}")
    user_id, access = sign_up(load.base, f"writer{index}@example.com")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {access}"
    posts = f"{load.base}/api/collections/posts"
    for n in range(MAX_OPS):
        if load.stop.is_set():
            return
        slug = f"w{index}-{n}-{uuid.uuid4().hex[:8]}"
        post = {"title": f"post {n}", "slug": slug, "author_id": user_id, "published": n % 2 == 0}
        created = expect(tally, session.post, posts, 201, post)
        if created is None:
            continue
        post_id = created["id"]
        with load.lock:
            load.created[post_id] = f"post {n}"
        title = f"post {n} renamed"
        if expect(tally, session.patch, f"{posts}/{post_id}", 200, {"title": title}) is not None:
            with load.lock:
                load.created[post_id] = title
        call = {"input": {"post_id": post_id}}
        answer = expect(tally, session.post, f"{load.base}/api/functions/publish", 200, call)
        if answer is not None and answer.get("success") is not True:
            tally.failures.append(f"publish: {answer}")
        elif answer is not None:
            with load.lock:
                load.published.add(post_id)


def reader(load: Load, index: int) -> None:
    """Lists the published posts and reads one of them back, anonymously."""
    tally = load.tally(f"reader{index}")
    session = requests.Session()
    posts = f"{load.base}/api/collections/posts"
    for _ in range(MAX_OPS):
        if load.stop.is_set():
            return
        listed = expect(tally, session.get, posts, 200)
        items = listed.get("items") if isinstance(listed, dict) else None
        if items:
            expect(tally, session.get, f"{posts}/{items[0]['id']}", 200)


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


def test_three_deploys_and_a_rollback_under_load_fail_no_request(tmp_path: Path) -> None:
    port = free_port()
    server, token = first_server(tmp_path, port)
    project = tmp_path / "blog"
    create_project("blog", project, project_name="blog", force=False)
    (project / "alyx.yaml").write_text(APP_CONFIG, encoding="utf-8")
    schema, function = project / "schema.yaml", project / "functions" / "publish.mjs"
    base = f"http://127.0.0.1:{port}"
    env = cli_environment(ALYX_DEPLOY_URL=base, ALYX_DEPLOY_TOKEN=token)
    with AlyxProcess(server, "serve", port=port, log=tmp_path / "serve.log") as process:
        assert "deployed version 1 to " in deploy(project, env, "--yes", "-m", "the blog")
        load = Load(base)
        threads = [threading.Thread(target=writer, args=(load, i), daemon=True) for i in range(WRITERS)]
        threads += [threading.Thread(target=reader, args=(load, i), daemon=True) for i in range(READERS)]
        threads.append(threading.Thread(target=subscriber, args=(load,), daemon=True))
        for thread in threads:
            thread.start()
        try:
            assert load.subscribed.wait(DEADLINE), load.subscriber_closed
            wait_for_more(load, threads)

            edit(schema, '      tags:       { type: json, nullable: true }\n',
                 '      tags:       { type: json, nullable: true }\n'
                 '      summary:    { type: string, nullable: true }\n')  # fmt: skip
            edit(function, "`published ${post.id}`", "`v2 published ${post.id}`")
            snapshots = load.events["snapshot"]
            second = deploy(project, env, "--yes", "-m", "posts.summary, publish v2")
            assert "deployed version 2 to " in second and "~ publish (changed)" in second, second
            wait_for_more(load, threads)
            assert load.events["snapshot"] > snapshots, "no fresh snapshot after posts changed"

            edit(schema, "      body:       { type: text, minLength: 1, maxLength: 5000 }\n",
                 "      body:       { type: text, minLength: 1, maxLength: 5000 }\n"
                 "      edited:     { type: bool, nullable: true }\n")  # fmt: skip
            assert "deployed version 3 to " in deploy(project, env, "--yes", "-m", "comments.edited")
            wait_for_more(load, threads)

            v3_function = function.read_bytes()
            edit(function, "`v2 published", "`v4 published")
            (project / "alyx.yaml").write_text(
                APP_CONFIG + "server:\n  max_body_size: 2MiB\n", encoding="utf-8"
            )
            fourth = deploy(project, env, "--yes", "-m", "publish v4, max_body_size")
            assert "deployed version 4 to " in fourth and "server.max_body_size" in fourth, fourth
            wait_for_more(load, threads)

            rolled = deploy(project, env, "rollback")
            assert " to version 3 as version 5 in " in rolled, rolled
            wait_for_more(load, threads)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(DEADLINE)
        assert not any(t.is_alive() for t in threads)
        assert load.failures() == [], "\n".join(load.failures()[:20])
        assert load.subscriber_closed == [], load.subscriber_closed
        assert load.events["delta"] > 0, load.events
        print(f"requests answered: {sum(load.counts())}, realtime events: {load.events}")
        assert (server / "functions" / "publish.mjs").read_bytes() == v3_function
        assert process.process is not None and process.process.poll() is None

    conn = sqlite3.connect(server / "data" / "alyx.db")
    try:
        rows = dict(conn.execute("SELECT id, title FROM posts").fetchall())
        published = {r[0] for r in conn.execute("SELECT id FROM posts WHERE published = 1")}
        outcomes = conn.execute("SELECT version, status FROM _alyx_deployments ORDER BY version").fetchall()
    finally:
        conn.close()
    lost = {i: t for i, t in load.created.items() if rows.get(i) != t}
    assert lost == {}, f"{len(lost)} acknowledged writes are not in the database: {list(lost.items())[:5]}"
    assert load.published <= published
    assert len(load.created) > 0 and len(load.published) > 0
    assert [v for v, _ in outcomes] == [1, 2, 3, 4, 5], outcomes
    assert outcomes[-1][1] == "applied", outcomes
