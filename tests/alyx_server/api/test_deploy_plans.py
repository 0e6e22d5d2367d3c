"""Prepared plans are shared by every server process of a project: with
`alyx serve --workers N`, `alyx deploy`'s prepare and execute may reach different
processes. Two applications on one project and one SQLite file stand for two workers.
"""

from __future__ import annotations

from pathlib import Path

from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.deploy_support import (
    WITH_BODY,
    columns,
    database_file,
    developer_project,
    execute,
    prepare,
    token,
)
from tests.alyx_server.auth.support import AppFactory

OTHER = WITH_BODY.replace(
    "      body:  { type: string, nullable: true }\n", "      tag:  { type: string, nullable: true }\n"
)


async def test_a_plan_prepared_by_one_process_is_executed_by_another(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    first, second = await auth_app(), await auth_app()
    secret = await token(first, clock)
    status, plan = await prepare(first, developer_project(tmp_path / "dev"), secret)
    assert status == 200, plan

    status, body = await execute(second, secret, plan, message="from the other worker")

    assert status == 200, body
    assert (body["version"], body["outcome"]) == (1, "applied")
    assert "body" in columns(database_file(second), "notes")
    created = await second.post("/api/collections/notes", json={"title": "t", "body": "b"})
    assert created.status == 201, await created.text()
    # Used: neither process executes it again, not even the one that prepared it.
    for client in (first, second):
        status, body = await execute(client, secret, plan)
        assert (status, body["code"]) == (409, "STALE_PLAN"), body


async def test_another_process_refuses_a_plan_the_live_state_moved_past(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    first, second = await auth_app(), await auth_app()
    secret = await token(first, clock)
    _, old = await prepare(first, developer_project(tmp_path / "dev"), secret)
    _, newer = await prepare(first, developer_project(tmp_path / "other", OTHER), secret)
    status, body = await execute(first, secret, newer)
    assert status == 200, body

    status, body = await execute(second, secret, old)

    assert (status, body["code"]) == (409, "STALE_PLAN"), body
    assert "body" not in columns(database_file(second), "notes")


async def test_an_expired_plan_is_refused_by_every_process(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    first, second = await auth_app(), await auth_app()
    secret = await token(first, clock)
    _, plan = await prepare(first, developer_project(tmp_path / "dev"), secret)
    clock.advance(2 * 3600)

    for client in (second, first):
        status, body = await execute(client, secret, plan)
        assert (status, body["code"]) == (409, "STALE_PLAN"), body
