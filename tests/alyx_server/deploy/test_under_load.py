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

import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from alyx_cli.commands.init import create_project
from tests.alyx_server.deploy.load import (
    APP_CONFIG,
    MAX_OPS,
    Load,
    Tally,
    deploy,
    edit,
    first_server,
    sign_up,
    subscriber,
    wait_for_more,
)
from tests.servers import DEADLINE, AlyxProcess, cli_environment, free_port

pytestmark = pytest.mark.slow

WRITERS = 3
READERS = 2


def expect(
    tally: Tally,
    send: Callable[..., requests.Response],
    url: str,
    status: int,
    body: Any = None,
    workers: set[str] | None = None,
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
    if workers is not None:
        workers.add(response.headers.get("X-Alyx-Worker", "?"))
    return response.json()


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
    # A new connection for each request: the workers take turns accepting them, so the
    # readers reach both (the writers' kept-alive connections may all sit on one).
    session.headers["Connection"] = "close"
    posts = f"{load.base}/api/collections/posts"
    for _ in range(MAX_OPS):
        if load.stop.is_set():
            return
        listed = expect(tally, session.get, posts, 200, workers=load.workers)
        items = listed.get("items") if isinstance(listed, dict) else None
        if items:
            expect(tally, session.get, f"{posts}/{items[0]['id']}", 200)


def test_three_deploys_and_a_rollback_under_load_fail_no_request(tmp_path: Path) -> None:
    port = free_port()
    server, token = first_server(tmp_path, port)
    project = tmp_path / "blog"
    create_project("blog", project, project_name="blog", force=False)
    (project / "alyx.yaml").write_text(APP_CONFIG, encoding="utf-8")
    schema, function = project / "schema.yaml", project / "functions" / "publish.mjs"
    base = f"http://127.0.0.1:{port}"
    env = cli_environment(ALYX_DEPLOY_URL=base, ALYX_DEPLOY_TOKEN=token)
    # Two workers: a deploy executed by one switches the other (api/deploy_peers.py).
    serving = AlyxProcess(server, "serve", "--workers", "2", port=port, log=tmp_path / "serve.log")
    with serving as process:
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
        assert load.workers == {"1", "2"}, load.workers
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
