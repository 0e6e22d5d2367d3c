"""`/api/admin/deploy/*` over the real application on a loopback port, real SQLite files.

A "server" project (tests/alyx_server/auth/support.py's notes schema) is what runs; a
"developer" project in another folder is bundled with `build_bundle` and sent the way
`alyx deploy` sends it. Nothing of Alyx is replaced by a double.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import pytest

from alyx_server.api.runtime import RUNTIME
from alyx_server.app import create_app
from alyx_server.deploy import build_bundle
from alyx_server.tools.timestamps import ManualClock, format_timestamp
from tests.alyx_server.api.deploy_support import (
    WITH_BODY,
    columns,
    database_file,
    deploy,
    developer_project,
    execute,
    file_hash,
    prepare,
    rollback,
    token,
)
from tests.alyx_server.auth.support import AppFactory, bearer, register
from tests.schemas import NOTES


async def test_prepare_answers_the_plan_and_changes_nothing(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    dev = developer_project(tmp_path / "dev")
    (dev / "functions").mkdir()
    (dev / "functions" / "hello.py").write_text("def handler(request):\n    return {'ok': True}\n")
    db_file = database_file(client)
    before = file_hash(db_file)
    server_schema = (client.app[RUNTIME].settings.project_dir / "schema.yaml").read_bytes()

    status, plan = await prepare(client, dev, secret)

    assert status == 200, plan
    assert plan["bundle_sha256"] == build_bundle(dev).sha256 and plan["plan_id"]
    assert plan["version"] == 1
    assert plan["schema"]["changes"] == [
        {
            "collection": "notes",
            "op": "add_field",
            "field": "body",
            "destructive": False,
            "text": plan["schema"]["changes"][0]["text"],
        }
    ]
    assert "notes.body" in plan["schema"]["changes"][0]["text"]
    assert plan["functions"] == {"added": ["hello"], "changed": [], "removed": []}
    assert (plan["destructive"], plan["empty"], plan["warnings"]) == (False, False, [])
    # A dry run: the database file and the project's files are as they were.
    assert file_hash(db_file) == before
    assert (client.app[RUNTIME].settings.project_dir / "schema.yaml").read_bytes() == server_schema
    assert "body" not in columns(db_file, "notes")
    stored = db_file.parent / "deployments" / f"{plan['bundle_sha256']}.tar.gz"
    assert stored.read_bytes() == build_bundle(dev).data


async def test_execute_applies_the_schema_and_records_the_version(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock, name="ci")
    dev = developer_project(tmp_path / "dev")
    _, plan = await prepare(client, dev, secret)

    details = {"message": "add a body", "git_commit": "abc123", "git_dirty": False}
    status, body = await execute(client, secret, plan, **details)

    assert status == 200, body
    assert (body["version"], body["outcome"]) == (1, "applied")
    assert isinstance(body["duration_ms"], int)
    project = client.app[RUNTIME].settings.project_dir
    assert (project / "schema.yaml").read_text(encoding="utf-8") == WITH_BODY
    assert "body" in columns(database_file(client), "notes")
    # The running server serves the new field at once.
    created = await client.post("/api/collections/notes", json={"title": "t", "body": "hello"})
    assert created.status == 201, await created.text()
    assert (await created.json())["body"] == "hello"
    response = await client.get("/api/admin/deploy/history", headers=bearer(secret))
    assert response.status == 200
    [row] = (await response.json())["deployments"]
    assert row["version"] == 1 and row["bundle_sha256"] == plan["bundle_sha256"]
    assert (row["token_name"], row["message"], row["git_commit"], row["git_dirty"]) == (
        "ci", "add a body", "abc123", False,
    )  # fmt: skip
    assert (row["outcome"], row["rollback_of"]) == ("applied", None)
    response = await client.get("/api/admin/deploy/status", headers=bearer(secret))
    assert await response.json() == {"version": 1, "bundle_sha256": plan["bundle_sha256"], "running": False}
    # The plan was used: executing it again is refused.
    status, body = await execute(client, secret, plan)
    assert (status, body["code"]) == (409, "STALE_PLAN")


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("missing", 401, "UNAUTHORIZED"),
        ("wrong", 401, "INVALID_TOKEN"),
        ("expired", 401, "TOKEN_EXPIRED"),
        ("user", 403, "FORBIDDEN"),
        ("admin-without-deploy", 403, "FORBIDDEN"),
    ],
)
async def test_callers_without_the_deploy_permission_are_refused(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock, who: str, status: int, code: str
) -> None:
    client = await auth_app()
    secrets: dict[str, str | None] = {
        "missing": None,
        "wrong": "alyx_deploy_" + "x" * 43,
        "expired": await token(client, clock, expires_at=format_timestamp(clock.now() + timedelta(hours=1))),
        "user": (await register(client)).access,
        "admin-without-deploy": await token(client, clock, kind="admin", name="ops", permissions=("users",)),
    }
    if who == "expired":
        clock.advance(3601)
    dev = developer_project(tmp_path / "dev")
    got, body = await prepare(client, dev, secrets[who])
    assert (got, body["code"]) == (status, code), body
    if who in ("user", "admin-without-deploy"):
        assert "'deploy' permission" in body["error"]
    for path in ("/api/admin/deploy/history", "/api/admin/deploy/status"):
        headers = bearer(s) if (s := secrets[who]) else {}
        response = await client.get(path, headers=headers)
        assert response.status == status
    assert not (database_file(client).parent / "deployments").exists()


async def test_admin_tokens_and_deploy_tokens_may_deploy(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    dev = developer_project(tmp_path / "dev")
    for secret in (await token(client, clock, kind="admin", name="ops"), await token(client, clock)):
        status, body = await prepare(client, dev, secret)
        assert status == 200, body


async def test_a_bundle_whose_hash_does_not_match_is_refused(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    dev = developer_project(tmp_path / "dev")
    status, body = await prepare(client, dev, secret, **{"X-Bundle-SHA256": "0" * 64})
    assert (status, body["code"]) == (400, "INVALID_BUNDLE")
    assert "not '" + "0" * 64 + "' as announced" in body["error"]
    response = await client.post(
        "/api/admin/deploy/prepare", data=build_bundle(dev).data, headers=bearer(secret)
    )
    body = await response.json()
    assert (response.status, body["code"]) == (400, "INVALID_BUNDLE")
    assert body["error"] == "send the bundle's sha256 in the X-Bundle-SHA256 header (alyx deploy does)"
    _, plan = await prepare(client, dev, secret)
    status, body = await execute(client, secret, {**plan, "bundle_sha256": "1" * 64})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    assert body["error"] == "bundle_sha256 is not the hash of the bundle this plan was made for"


async def test_a_change_between_prepare_and_execute_makes_the_plan_stale(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    _, plan = await prepare(client, developer_project(tmp_path / "dev"), secret)
    # Someone changes the server's functions folder after the plan was made.
    functions = client.app[RUNTIME].settings.functions.path
    functions.mkdir(parents=True, exist_ok=True)
    (functions / "notes.txt").write_text("changed by hand\n", encoding="utf-8")
    db_file = database_file(client)
    before = file_hash(db_file)
    status, body = await execute(client, secret, plan)
    assert (status, body["code"]) == (409, "STALE_PLAN")
    assert body["error"] == (
        "the server's schema, migrations, functions or configuration changed since this plan "
        "was made; run alyx deploy again to see the new plan"
    )
    assert file_hash(db_file) == before
    assert "body" not in columns(db_file, "notes")


async def test_two_concurrent_executes_one_is_refused(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    _, first = await prepare(client, developer_project(tmp_path / "a"), secret)
    _, second = await prepare(client, developer_project(tmp_path / "b", WITH_BODY + "\n# b\n"), secret)
    results = await asyncio.gather(execute(client, secret, first), execute(client, secret, second))
    statuses = sorted((status, body.get("code")) for status, body in results)
    assert statuses[0][0] == 200
    # The loser is refused while the winner executes, or finds the server changed after it.
    assert statuses[1] in ((409, "DEPLOY_IN_PROGRESS"), (409, "STALE_PLAN"))
    response = await client.get("/api/admin/deploy/history", headers=bearer(secret))
    assert [r["version"] for r in (await response.json())["deployments"]] == [1]


async def test_a_migration_failing_half_way_leaves_everything_as_it_was(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    _, plan = await prepare(client, developer_project(tmp_path / "v1"), secret)
    assert (await execute(client, secret, plan))[0] == 200
    for title in ("a", "b"):
        assert (await client.post("/api/collections/notes", json={"title": title})).status == 201
    # Version 2: a file whose first step works and whose second fails on the stored rows.
    migration = (
        "version: 2\nname: tighten\noperations:\n"
        "  - add_field: { collection: notes, field: extra, definition: { type: string, nullable: true } }\n"
        "  - sql: { up: \"INSERT INTO notes (id, title) VALUES ((SELECT id FROM notes LIMIT 1), 'dup')\" }\n"
    )
    v2_schema = WITH_BODY.replace(
        "      body:  { type: string, nullable: true }\n",
        "      body:  { type: string, nullable: true }\n      extra: { type: string, nullable: true }\n",
    )
    dev = developer_project(tmp_path / "v2", v2_schema)
    (dev / "migrations").mkdir()
    (dev / "migrations" / "002_tighten.yaml").write_text(migration, encoding="utf-8")
    status, plan2 = await prepare(client, dev, secret)
    assert status == 200, plan2
    assert plan2["schema"]["migrations"] == ["002_tighten.yaml"]
    project = client.app[RUNTIME].settings.project_dir
    schema_before = (project / "schema.yaml").read_bytes()
    db_file = database_file(client)
    before = file_hash(db_file)

    status, body = await execute(client, secret, plan2)

    assert (status, body["code"]) == (409, "MIGRATION_ERROR"), body
    assert body["error"].startswith("migrations/002_tighten.yaml:")
    assert "nothing was changed" in body["error"]
    assert file_hash(db_file) == before
    assert (project / "schema.yaml").read_bytes() == schema_before
    assert not (project / "migrations" / "002_tighten.yaml").exists()
    response = await client.get("/api/admin/deploy/history", headers=bearer(secret))
    assert [r["version"] for r in (await response.json())["deployments"]] == [1]


CONFIG = """\
auth:
  allow_registration: false
realtime:
  send_queue: 500
"""


async def test_config_keys_travel_and_rollback_restores_the_previous_version(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    project = client.app[RUNTIME].settings.project_dir
    v1 = developer_project(tmp_path / "v1")
    (v1 / "functions").mkdir()
    (v1 / "functions" / "notes.txt").write_text("v1\n", encoding="utf-8")
    await deploy(client, secret, v1)
    # Version 2: a new field, a changed and an added file, two deployable keys.
    v2_schema = WITH_BODY.replace(
        "      body:  { type: string, nullable: true }\n",
        "      body:  { type: string, nullable: true }\n      extra: { type: string, nullable: true }\n",
    )
    v2 = developer_project(tmp_path / "v2", v2_schema)
    (v2 / "functions").mkdir()
    (v2 / "functions" / "notes.txt").write_text("v2\n", encoding="utf-8")
    (v2 / "functions" / "more.txt").write_text("new\n", encoding="utf-8")
    (v2 / "alyx.yaml").write_text(CONFIG, encoding="utf-8")
    status, plan = await prepare(client, v2, secret)
    assert status == 200, plan
    assert plan["functions"] == {"added": ["more"], "changed": ["notes"], "removed": []}
    assert plan["config"]["changed"] == [
        {"key": "auth.allow_registration", "from": True, "to": False, "restart": False},
        {"key": "realtime.send_queue", "from": 1000, "to": 500, "restart": True},
    ]
    assert plan["needs_restart"] is True
    assert plan["warnings"] == ["needs a restart to take effect: realtime.send_queue"]
    assert (await execute(client, secret, plan))[0] == 200
    response = await client.post("/api/auth/register", json={"email": "a@example.com", "password": "x" * 12})
    assert (response.status, (await response.json())["code"]) == (403, "REGISTRATION_CLOSED")
    assert "extra" in columns(database_file(client), "notes")
    # The deployed keys hold after a restart (data/deployments/deployed.json), the restart
    # key included, over what the server's own settings say.
    restarted = create_app(client.app[RUNTIME].settings)[RUNTIME].settings
    assert (restarted.auth.allow_registration, restarted.realtime.send_queue) == (False, 500)

    status, body = await rollback(client, secret)

    assert status == 200, body
    assert (body["version"], body["rollback_of"], body["outcome"]) == (3, 1, "applied")
    assert body["functions"] == {"added": [], "changed": ["notes"], "removed": ["more"]}
    assert (project / "schema.yaml").read_text(encoding="utf-8") == WITH_BODY
    assert (project / "functions" / "notes.txt").read_text(encoding="utf-8") == "v1\n"
    assert not (project / "functions" / "more.txt").exists()
    assert "extra" not in columns(database_file(client), "notes")
    response = await client.post("/api/auth/register", json={"email": "a@example.com", "password": "x" * 12})
    assert response.status == 201
    response = await client.get("/api/admin/deploy/history", headers=bearer(secret))
    rows = (await response.json())["deployments"]
    assert [(r["version"], r["outcome"], r["rollback_of"]) for r in rows] == [
        (3, "applied", 1), (2, "rolled_back", None), (1, "applied", None),
    ]  # fmt: skip
    status, body = await rollback(client, secret, version=3)
    assert (status, body["error"]) == (400, "version 3 is not older than the version in force (3)")


async def test_rollback_refuses_to_undo_a_dropped_field(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    await deploy(client, secret, developer_project(tmp_path / "v1"))
    assert (await client.post("/api/collections/notes", json={"title": "t", "body": "kept?"})).status == 201
    v2 = developer_project(tmp_path / "v2", NOTES)
    (v2 / "migrations").mkdir()
    (v2 / "migrations" / "002_drop_body.yaml").write_text(
        "version: 2\nname: drop_body\noperations:\n  - drop_field: { collection: notes, field: body }\n",
        encoding="utf-8",
    )
    status, plan = await prepare(client, v2, secret)
    assert status == 200, plan
    assert plan["destructive"] is True
    assert len(plan["warnings"]) == 2 and plan["warnings"][0].startswith("destructive: 002_drop_body")
    assert (await execute(client, secret, plan))[0] == 200
    db_file = database_file(client)
    before = file_hash(db_file)
    schema_before = (client.app[RUNTIME].settings.project_dir / "schema.yaml").read_bytes()

    status, body = await rollback(client, secret, version=1)

    assert (status, body["code"]) == (409, "IRREVERSIBLE")
    assert body["error"].startswith("cannot go back to version 1: 002_drop_body did ")
    assert body["error"].endswith(
        "restore the database copy taken before it instead (alyx deploy rollback --restore-backup, "
        "or alyx db restore)"
    )
    assert file_hash(db_file) == before
    assert (client.app[RUNTIME].settings.project_dir / "schema.yaml").read_bytes() == schema_before
    # restore_backup: tests/alyx_server/api/test_deploy_restore.py


async def test_rollback_undoes_a_renamed_field_without_losing_its_data(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    await deploy(client, secret, developer_project(tmp_path / "v1"))
    response = await client.post("/api/collections/notes", json={"title": "t", "body": "kept"})
    assert response.status == 201
    note_id = (await response.json())["id"]
    v2 = developer_project(tmp_path / "v2", WITH_BODY.replace("      body:", "      text:"))
    (v2 / "migrations").mkdir()
    (v2 / "migrations" / "002_rename_body.yaml").write_text(
        "version: 2\nname: rename_body\noperations:\n"
        "  - rename_field: { collection: notes, from: body, to: text }\n",
        encoding="utf-8",
    )
    await deploy(client, secret, v2)
    assert (await (await client.get(f"/api/collections/notes/{note_id}")).json())["text"] == "kept"

    status, body = await rollback(client, secret, version=1)

    # A rename is undone by renaming back: nothing is lost, so no --restore-backup is needed.
    assert status == 200, body
    assert body["rollback_of"] == 1
    assert "text" not in columns(database_file(client), "notes")
    assert (await (await client.get(f"/api/collections/notes/{note_id}")).json())["body"] == "kept"


async def test_rollback_with_nothing_deployed_is_refused(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    status, body = await rollback(client, secret)
    assert (status, body["code"]) == (404, "NOT_FOUND")
    assert body["error"] == "nothing was deployed to this server yet: there is no version to go back to"


async def test_the_bundle_limit_is_deploy_max_bundle_size_not_the_api_body_limit(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app(**{"server.max_body_size": "2KiB", "deploy.max_bundle_size": "64KiB"})
    secret = await token(client, clock)
    dev = developer_project(tmp_path / "dev")
    (dev / "functions").mkdir()
    # Random text does not compress: the bundle is over 2 KiB and under 64 KiB.
    (dev / "functions" / "data.txt").write_text(os.urandom(8 * 1024).hex(), encoding="utf-8")
    assert 2 * 1024 < len(build_bundle(dev).data) < 64 * 1024
    status, body = await prepare(client, dev, secret)
    assert status == 200, body
    # Any other route keeps server.max_body_size.
    response = await client.post("/api/collections/notes", json={"title": "x" * 4096})
    assert response.status == 413
    (dev / "functions" / "data.txt").write_text(os.urandom(64 * 1024).hex(), encoding="utf-8")
    bundle = build_bundle(dev, max_size=10 * 1024 * 1024)
    size = len(bundle.data)
    response = await client.post(
        "/api/admin/deploy/prepare",
        data=bundle.data,
        headers={"X-Bundle-SHA256": bundle.sha256, **bearer(secret)},
    )
    body = await response.json()
    assert (response.status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert body["error"] == (
        f"the bundle is over deploy.max_bundle_size (65536 bytes; {size} bytes sent): leave large "
        "files out with .alyxignore, or raise deploy.max_bundle_size on the server"
    )
