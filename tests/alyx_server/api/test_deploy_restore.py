"""Deploy's database copy and `rollback --restore-backup`, and the deploy lease across
processes, over the real application on a loopback port and real SQLite files.

A deploy whose plan drops data copies the database first (the plan says so); a rollback
that could not bring that data back is refused by name, unless `restore_backup`, which
puts the copy back into the running server: the documents as they were before that
deploy, the deploy history kept, the server serving throughout. The lease is an flock on
data/deployments/.lock: a second process holding it (here a real Python process taking
it through the product's own `deploy_lock`) makes execute and rollback answer 409
DEPLOY_IN_PROGRESS without touching the database.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alyx_server.api.runtime import RUNTIME
from alyx_server.deploy.execute import deployments_folder
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.deploy_support import (
    WITH_BODY,
    database_file,
    deploy,
    developer_project,
    execute,
    file_hash,
    prepare,
    rollback,
    token,
)
from tests.alyx_server.auth.support import AppFactory, Client, bearer
from tests.schemas import NOTES

DROP_BODY = "version: 2\nname: drop_body\noperations:\n  - drop_field: { collection: notes, field: body }\n"


def dropping_project(root: Path) -> Path:
    """NOTES without `body`, and the migration that drops it (a destructive step)."""
    project = developer_project(root, NOTES)
    (project / "migrations").mkdir()
    (project / "migrations" / "002_drop_body.yaml").write_text(DROP_BODY, encoding="utf-8")
    return project


async def notes(client: Client) -> list[dict[str, object]]:
    response = await client.get("/api/collections/notes?sort=title")
    assert response.status == 200
    items: list[dict[str, object]] = (await response.json())["docs"]
    return items


async def next_of(ws: Any, kind: str) -> dict[str, Any]:
    """The next message of type `kind`, past any other (the server's greeting first)."""
    while True:
        message = await ws.receive_json(timeout=30)
        assert message["type"] != "error", message
        if message["type"] == kind:
            return dict(message)


def change_ids(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = '_alyx_changes'")
        return [int(r[0]) for r in rows]
    finally:
        conn.close()


async def test_a_destructive_deploy_takes_a_copy_and_restore_backup_puts_it_back(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    settings = client.app[RUNTIME].settings
    await deploy(client, secret, developer_project(tmp_path / "v1"))
    response = await client.post("/api/collections/notes", json={"title": "a", "body": "kept"})
    assert response.status == 201

    status, plan = await prepare(client, dropping_project(tmp_path / "v2"), secret)

    assert status == 200, plan
    assert (plan["destructive"], plan["backup"]) == (True, True)
    assert plan["warnings"][0].startswith("destructive: 002_drop_body")
    assert plan["warnings"][1] == (
        "a database backup is taken just before this deploy (data/deployments/backup-v2.db): "
        "alyx deploy rollback --restore-backup brings it back"
    )
    assert (await execute(client, secret, plan))[0] == 200
    copy = deployments_folder(settings) / "backup-v2.db"
    assert copy.is_file()
    assert [n["title"] for n in await notes(client)] == ["a"] and "body" not in (await notes(client))[0]
    history = await (await client.get("/api/admin/deploy/history", headers=bearer(secret))).json()
    assert history["deployments"][0]["summary"]["backup"] == "backup-v2.db"
    # Written after the destructive deploy: the restore takes the database back before it.
    assert (await client.post("/api/collections/notes", json={"title": "b"})).status == 201
    db_file = database_file(client)
    before = file_hash(db_file)
    sequence_before = change_ids(db_file)

    status, body = await rollback(client, secret, version=1)
    assert (status, body["code"]) == (409, "IRREVERSIBLE")
    assert body["error"].startswith("cannot go back to version 1: 002_drop_body did ")
    assert body["error"].endswith(
        "restore the database copy taken before it instead (alyx deploy rollback --restore-backup, "
        "or alyx db restore)"
    )
    assert file_hash(db_file) == before

    subscriber = await client.ws_connect("/api/realtime")
    await subscriber.send_json(
        {"id": "s1", "type": "subscribe", "payload": {"collection": "notes", "sort": ["title"]}}
    )
    first = await next_of(subscriber, "snapshot")
    assert [d["title"] for d in first["payload"]["docs"]] == ["a", "b"], first

    status, body = await rollback(client, secret, version=1, restore_backup=True)

    assert status == 200, body
    # The subscriber stays connected and gets the restored rows as a fresh snapshot.
    fresh = await next_of(subscriber, "snapshot")
    assert [(d["title"], d.get("body")) for d in fresh["payload"]["docs"]] == [("a", "kept")], fresh
    await subscriber.close()
    assert (body["version"], body["rollback_of"], body["restored_backup"]) == (3, 1, "backup-v2.db")
    assert [(n["title"], n.get("body")) for n in await notes(client)] == [("a", "kept")]
    assert (settings.project_dir / "schema.yaml").read_text(encoding="utf-8") == WITH_BODY
    history = await (await client.get("/api/admin/deploy/history", headers=bearer(secret))).json()
    assert [(r["version"], r["outcome"], r["rollback_of"]) for r in history["deployments"]] == [
        (3, "applied", 1), (2, "rolled_back", None), (1, "applied", None),
    ]  # fmt: skip
    assert history["deployments"][0]["summary"] == {"restored_backup": "backup-v2.db", "rollback_of": 1}
    # The server kept its connections: it writes on, and change ids are never reused.
    response = await client.post("/api/collections/notes", json={"title": "c", "body": "new"})
    assert response.status == 201, await response.json()
    assert [(n["title"], n.get("body")) for n in await notes(client)] == [("a", "kept"), ("c", "new")]
    assert change_ids(db_file)[0] > sequence_before[0]


async def test_restore_backup_is_refused_when_that_deploy_took_no_copy(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    await deploy(client, secret, developer_project(tmp_path / "v1", NOTES))
    status, plan = await prepare(client, developer_project(tmp_path / "v2"), secret)
    assert (status, plan["destructive"], plan["backup"]) == (200, False, False)
    assert (await execute(client, secret, plan))[0] == 200
    db_file = database_file(client)
    before = file_hash(db_file)

    status, body = await rollback(client, secret, restore_backup=True)

    assert (status, body["code"]) == (409, "IRREVERSIBLE")
    assert body["error"] == (
        "cannot restore the database as it was at version 1: version 2 took no database copy "
        "(deploys take one only when their plan has destructive steps) or it was pruned; restore "
        "a backup of your own with alyx db restore"
    )
    assert file_hash(db_file) == before
    status, body = await rollback(client, secret, restore_backup="yes")
    assert (status, body["error"]) == (400, "restore_backup must be true or false")


@contextmanager
def lease_held_elsewhere(folder: Path) -> Iterator[None]:
    """Another process holding the deploy lease of `folder` until the block ends."""
    code = (
        "import sys; from pathlib import Path\n"
        "from alyx_server.deploy.execute import deploy_lock\n"
        "with deploy_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        yield
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


async def test_a_deploy_leased_by_another_process_is_refused_and_changes_nothing(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    await deploy(client, secret, developer_project(tmp_path / "v1", NOTES))
    status, plan = await prepare(client, developer_project(tmp_path / "v2"), secret)
    assert status == 200, plan
    db_file = database_file(client)
    project = client.app[RUNTIME].settings.project_dir
    before = (file_hash(db_file), (project / "schema.yaml").read_bytes())
    folder = deployments_folder(client.app[RUNTIME].settings)

    with lease_held_elsewhere(folder):
        status, body = await execute(client, secret, plan)
        assert (status, body["code"]) == (409, "DEPLOY_IN_PROGRESS")
        assert body["error"] == (
            "another deploy or rollback is executing on this server; wait for it to finish "
            "(alyx deploy status shows it), then run this one again"
        )
        assert (file_hash(db_file), (project / "schema.yaml").read_bytes()) == before
        status, body = await rollback(client, secret)
        assert (status, body["code"]) == (409, "DEPLOY_IN_PROGRESS")
        response = await client.get("/api/admin/deploy/status", headers=bearer(secret))
        assert (await response.json())["running"] is True

    status, body = await execute(client, secret, plan)
    assert status == 200, body
    response = await client.get("/api/admin/deploy/status", headers=bearer(secret))
    assert (await response.json())["running"] is False
