"""Deploys that drop and rename a field while clients use it: a production server started
by the first-server path, the blog project deployed with the real `alyx deploy --yes`.

Version 1 adds posts.subtitle and posts.note. While writers create and patch posts naming
both fields (in the body) and readers list and read them naming both (in `fields=` and in
a filter), version 2 drops subtitle (a destructive migration file) and version 3 renames
note to memo; then `alyx deploy rollback --restore-backup` puts back the database copy
taken before version 3 (the rename), so note is back.

What must hold: no request fails, except that a request naming a field a deploy removed
is answered 400 "unknown field" (the correct answer once the new schema serves). Clients
name the new fields from the moment the deploy command answered, so such 400s can only
come from requests that started before it (counted and reported); after each deploy a
probe that names the old field gets the 400, in a body, `fields=` and a filter. Every
acknowledged write is in the database afterwards, and the realtime subscriber stays
connected (writes acknowledged after version 3's copy are taken back by the restore, as
restoring means: those are checked on the live database just before it, and a patch of
a post the restore took back is answered 404). Without the schema gate (tools/gate.py),
requests in flight when the migration commits run the old schema against the new table
and some are answered 500.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

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
READERS = 3
GONE = ("subtitle", "note", "memo")  # the fields the deploys below remove at some point


@dataclass
class Names:
    """The fields the clients name now; the test moves them on once a deploy answered."""

    subtitle: bool = True
    note: str = "note"
    answered_at: list[float] = field(default_factory=list)  # each deploy's answer (monotonic)


@dataclass
class FieldLoad(Load):
    names: Names = field(default_factory=Names)
    refused: list[tuple[float, str]] = field(default_factory=list)  # (started, field) of each 400
    born: dict[str, float] = field(default_factory=dict)  # post id -> when its create started
    restore_started: float = float("inf")
    taken_back: int = 0  # patches answered 404: the restore took their post back


def answer(load: FieldLoad, tally: Tally, response: requests.Response | None, what: str, status: int,
           named: tuple[str, ...], started: float) -> dict[str, object] | None:  # fmt: skip
    """The expected answer, or a 400 "unknown field" for a field this request named that a
    deploy removed (recorded); anything else is a failure."""
    if response is None:
        return None
    if response.status_code == status:
        tally.done += 1
        body: dict[str, object] = response.json()
        return body
    if response.status_code == 400:
        gone = [n for n in named if n in GONE and f"unknown field '{n}'" in response.text]
        if gone:
            tally.done += 1
            with load.lock:
                load.refused.append((started, gone[0]))
            return None
    tally.failures.append(f"{what}: {response.status_code} {response.text[:300]}")
    return None


def send(
    tally: Tally, method: str, session: requests.Session, url: str, **kwargs: object
) -> requests.Response | None:
    try:
        return session.request(method, url, timeout=DEADLINE, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as e:
        tally.failures.append(f"{method} {url}: {type(e).__name__}: {e}")
        return None


def writer(load: FieldLoad, index: int) -> None:
    """Creates published posts and patches them, naming subtitle and note in the bodies."""
    tally = load.tally(f"writer{index}")
    user_id, access = sign_up(load.base, f"writer{index}@example.com")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {access}"
    posts = f"{load.base}/api/collections/posts"
    for n in range(MAX_OPS):
        if load.stop.is_set():
            return
        started, subtitle, note = time.monotonic(), load.names.subtitle, load.names.note
        post: dict[str, object] = {"title": f"post {n}", "author_id": user_id, "published": True, note: "n"}
        post["slug"] = f"w{index}-{n}-{uuid.uuid4().hex[:8]}"
        if subtitle:
            post["subtitle"] = "s"
        named = (note, "subtitle") if subtitle else (note,)
        sent = send(tally, "POST", session, posts, json=post)
        created = answer(load, tally, sent, "POST posts", 201, named, started)
        if created is None:
            continue
        post_id = str(created["id"])
        with load.lock:
            load.created[post_id] = f"post {n}"
            load.born[post_id] = started
        started, note = time.monotonic(), load.names.note
        title = f"post {n} renamed"
        sent = send(tally, "PATCH", session, f"{posts}/{post_id}", json={"title": title, note: "n2"})
        if sent is not None and sent.status_code == 404 and time.monotonic() > load.restore_started:
            tally.done += 1
            with load.lock:
                load.taken_back += 1
            continue
        if answer(load, tally, sent, "PATCH posts", 200, (note,), started) is not None:
            with load.lock:
                load.created[post_id] = title


def reader(load: FieldLoad, index: int) -> None:
    """Lists published posts naming the fields in `fields=` and a filter, and reads one."""
    tally = load.tally(f"reader{index}")
    session = requests.Session()
    posts = f"{load.base}/api/collections/posts"
    for _ in range(MAX_OPS):
        if load.stop.is_set():
            return
        started, subtitle, note = time.monotonic(), load.names.subtitle, load.names.note
        named = (note, "subtitle") if subtitle else (note,)
        params = [("fields", ",".join(("id", "title", *named))), ("filter", "published:eq:true")]
        params.append(("filter", "subtitle:eq:s" if subtitle else f"{note}:eq:n2"))
        listed = answer(load, tally, send(tally, "GET", session, posts, params=params), "GET posts", 200,
                        named, started)  # fmt: skip
        items = listed.get("items") if listed is not None else None
        if isinstance(items, list) and items:
            started = time.monotonic()
            one = send(tally, "GET", session, f"{posts}/{items[0]['id']}", params={"fields": ",".join(named)})
            answer(load, tally, one, "GET post", 200, named, started)


def probe(base: str, user: tuple[str, str], gone: str) -> None:
    """Right after a deploy answered: a request naming `gone` is refused 400, naming it."""
    posts = f"{base}/api/collections/posts"
    user_id, access = user
    headers = {"Authorization": f"Bearer {access}"}
    post = {"title": "t", "slug": "probe", "author_id": user_id, gone: "x"}
    answers = [
        requests.get(posts, params={"fields": f"id,{gone}"}, timeout=DEADLINE),
        requests.get(posts, params={"filter": f"{gone}:eq:x"}, timeout=DEADLINE),
        requests.post(posts, json=post, headers=headers, timeout=DEADLINE),
    ]
    for response in answers:
        assert response.status_code == 400, response.text
        assert f"unknown field '{gone}'" in response.json()["error"], response.text


def acknowledged_writes_kept(load: FieldLoad, server: Path) -> None:
    """Check, on the live database, that every acknowledged write is there (a post's one
    patch may be committed and not yet acknowledged)."""
    with load.lock:
        acknowledged = dict(load.created)
    conn = sqlite3.connect(f"file:{server / 'data' / 'alyx.db'}?mode=ro", uri=True)
    try:
        rows = dict(conn.execute("SELECT id, title FROM posts").fetchall())
    finally:
        conn.close()
    lost = {i: t for i, t in acknowledged.items() if rows.get(i) not in (t, f"{t} renamed")}
    assert lost == {}, f"{len(lost)} acknowledged writes are not in the database: {list(lost.items())[:5]}"
    assert acknowledged


def moved_on(load: FieldLoad, *, subtitle: bool, note: str) -> None:
    with load.lock:
        load.names.answered_at.append(time.monotonic())
        load.names.subtitle, load.names.note = subtitle, note


def test_a_deploy_dropping_and_renaming_a_field_under_load_fails_no_request(tmp_path: Path) -> None:
    port = free_port()
    server, token = first_server(tmp_path, port)
    project = tmp_path / "blog"
    create_project("blog", project, project_name="blog", force=False)
    (project / "alyx.yaml").write_text(APP_CONFIG, encoding="utf-8")
    schema, migrations = project / "schema.yaml", project / "migrations"
    tags = "      tags:       { type: json, nullable: true }\n"
    edit(schema, tags, tags + "      subtitle:   { type: string, nullable: true }\n"
                              "      note:       { type: string, nullable: true }\n")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    env = cli_environment(ALYX_DEPLOY_URL=base, ALYX_DEPLOY_TOKEN=token)
    with AlyxProcess(server, "serve", port=port, log=tmp_path / "serve.log") as process:
        assert "deployed version 1 to " in deploy(project, env, "--yes", "-m", "subtitle and note")
        prober = sign_up(base, "probe@example.com")
        load = FieldLoad(base)
        threads = [threading.Thread(target=writer, args=(load, i), daemon=True) for i in range(WRITERS)]
        threads += [threading.Thread(target=reader, args=(load, i), daemon=True) for i in range(READERS)]
        threads.append(threading.Thread(target=subscriber, args=(load,), daemon=True))
        for thread in threads:
            thread.start()
        try:
            assert load.subscribed.wait(DEADLINE), load.subscriber_closed
            wait_for_more(load, threads)

            edit(schema, "      subtitle:   { type: string, nullable: true }\n", "")
            (migrations / "001_drop_subtitle.yaml").write_text(
                "version: 1\nname: drop_subtitle\noperations:\n"
                "  - drop_field: { collection: posts, field: subtitle }\n",
                encoding="utf-8",
            )
            assert "deployed version 2 to " in deploy(project, env, "--yes", "-m", "drop posts.subtitle")
            moved_on(load, subtitle=False, note="note")
            probe(base, prober, "subtitle")
            wait_for_more(load, threads)

            edit(schema, "      note:       {", "      memo:       {")
            (migrations / "002_rename_note.yaml").write_text(
                "version: 2\nname: rename_note\noperations:\n"
                "  - rename_field: { collection: posts, from: note, to: memo }\n",
                encoding="utf-8",
            )
            assert "deployed version 3 to " in deploy(project, env, "--yes", "-m", "rename posts.note")
            moved_on(load, subtitle=False, note="memo")
            probe(base, prober, "note")
            wait_for_more(load, threads)

            # Every write acknowledged so far is in the database (the restore below takes
            # back the ones made since version 3's copy: that is what restoring means).
            acknowledged_writes_kept(load, server)
            load.restore_started = time.monotonic()
            rolled = deploy(project, env, "rollback", "--restore-backup")
            assert " to version 2 as version 4, database restored from backup-v3.db in " in rolled, rolled
            moved_on(load, subtitle=False, note="note")
            probe(base, prober, "memo")
            wait_for_more(load, threads)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(DEADLINE)
        assert not any(t.is_alive() for t in threads)
        assert load.failures() == [], "\n".join(load.failures()[:20])
        assert load.subscriber_closed == [], load.subscriber_closed
        assert process.process is not None and process.process.poll() is None
    # The 400s the clients got name a removed field; each came from a request that started
    # before the deploy that removed it answered (the clients moved on right after it).
    answered = load.names.answered_at
    after = [(s, f) for s, f in load.refused if s > answered[GONE.index(f)]]
    print(f"requests answered: {sum(load.counts())}; 400 for a removed field: "
          f"{len(load.refused) - len(after)} started before the deploy that removed it answered, "
          f"{len(after)} after (a client between the answer and the test moving it on); "
          f"patches of a post the restore took back: {load.taken_back}")  # fmt: skip

    conn = sqlite3.connect(server / "data" / "alyx.db")
    try:
        rows = dict(conn.execute("SELECT id, title FROM posts").fetchall())
        columns = {r[1] for r in conn.execute("PRAGMA table_info(posts)")}
    finally:
        conn.close()
    assert "subtitle" not in columns and "note" in columns and "memo" not in columns, columns
    since = {i: t for i, t in load.created.items() if load.born[i] > answered[2]}
    lost = {i: t for i, t in since.items() if rows.get(i) != t}
    assert lost == {}, f"{len(lost)} acknowledged writes are not in the database: {list(lost.items())[:5]}"
    assert since
