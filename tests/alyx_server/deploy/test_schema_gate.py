"""The schema gate around a deploy's commit-and-swap (alyx_server/tools/gate.py), and the
deploys that need none: those that only add (deploy.plan.requests_pause).

The server is the real application on a loopback port (`auth_app`); deploys go through
`/api/admin/deploy/prepare` and `execute` as `alyx deploy` sends them. A request "in
flight" on the old schema is the gate's shared side held by the test (what the HTTP
pipeline holds for each request touching documents), so the deploy meets one whatever
the machine's speed; the requests that arrive meanwhile are real HTTP requests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alyx_server.api.deploy import DEPLOYER, DRAIN_TIMEOUT
from alyx_server.api.pipeline import HTTP_POLICY
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.conftest import auth_app, clock, smtp
from tests.alyx_server.api.deploy_support import (
    WITH_BODY,
    WITH_DEFAULTED_BODY,
    columns,
    database_file,
    developer_project,
    execute,
    file_hash,
    prepare,
    token,
)
from tests.alyx_server.auth.support import AppFactory
from tests.alyx_server.functions.test_pools import until

__all__ = ["auth_app", "clock", "smtp"]


async def test_a_deploy_waits_for_requests_in_flight_and_new_ones_wait_for_the_new_schema(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    project = developer_project(tmp_path / "dev", WITH_DEFAULTED_BODY)
    status, plan = await prepare(client, project, secret)  # adds notes.body, with a default
    assert status == 200, plan
    gate = client.app[HTTP_POLICY].gate
    db_file = database_file(client)
    before = file_hash(db_file)

    await gate.enter()  # a request in flight on the old schema
    deploying = asyncio.create_task(execute(client, secret, plan))
    await until(lambda: gate.closed)
    # A request arriving now waits for the swap instead of meeting the new table.
    created = asyncio.create_task(client.post("/api/collections/notes", json={"title": "t", "body": "b"}))
    await until(lambda: gate.waiting == 1)
    assert not deploying.done() and not created.done()
    assert file_hash(db_file) == before, "the deploy committed while a request was in flight"
    gate.leave()

    status, body = await deploying
    assert status == 200, body
    response = await created
    assert response.status == 201, await response.text()
    assert (await response.json())["body"] == "b"
    assert "body" in columns(db_file, "notes")
    assert not gate.closed and gate.readers == 0


async def test_a_request_that_does_not_finish_in_time_makes_the_deploy_change_nothing(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    status, plan = await prepare(client, developer_project(tmp_path / "dev", WITH_DEFAULTED_BODY), secret)
    assert status == 200, plan
    client.app[DEPLOYER].drain_timeout = 0.05
    gate = client.app[HTTP_POLICY].gate
    db_file = database_file(client)
    before = file_hash(db_file)

    await gate.enter()  # a request in flight that outlasts the drain timeout
    try:
        status, body = await execute(client, secret, plan)
        assert status == 409, body
        assert body["code"] == "DEPLOY_IN_PROGRESS"
        assert body["error"].startswith("nothing was changed: 1 request(s) still running after 0.05 s"), body
        assert "run the command again" in body["error"]
        assert file_hash(db_file) == before and "body" not in columns(db_file, "notes")
        # The gate is open again: requests are served on the old schema.
        response = await client.get("/api/collections/notes")
        assert response.status == 200, await response.text()
    finally:
        gate.leave()

    status, body = await execute(client, secret, plan)  # the same plan, once it finished
    assert status == 200, body
    assert "body" in columns(db_file, "notes")


async def test_a_deploy_that_only_adds_a_nullable_field_does_not_pause_requests(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app()
    secret = await token(client, clock)
    status, plan = await prepare(client, developer_project(tmp_path / "dev", WITH_BODY), secret)
    assert status == 200, plan
    gate = client.app[HTTP_POLICY].gate
    client.app[DEPLOYER].drain_timeout = 0.05  # a pause would be refused: none is taken

    await gate.enter()  # a request in flight on the old schema, for the whole deploy
    try:
        status, body = await execute(client, secret, plan)
        assert status == 200, body
        assert not gate.closed and gate.readers == 1
        # The request in flight goes on against the new table: it does not name the new
        # column, which stays NULL for what it writes, as on the new schema.
        assert "body" in columns(database_file(client), "notes")
        created = await client.post("/api/collections/notes", json={"title": "t", "body": "b"})
        assert created.status == 201, await created.text()
        assert (await created.json())["body"] == "b"  # served on the new schema
    finally:
        gate.leave()


def test_the_deploy_guide_states_the_drain_timeout() -> None:
    guide = (Path(__file__).resolve().parents[3] / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert f"have not finished after {DRAIN_TIMEOUT:g} seconds" in guide
