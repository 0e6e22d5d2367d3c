"""The job queue end to end: real server, real Node and Python function workers, a real
SQLite file; retries and backoff on an injected clock (the test moves it, never sleeps)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from jsonschema_rs import Draft202012Validator

from alyx_server.api.jobs import JOBS
from alyx_server.api.runtime import RUNTIME
from alyx_server.app import create_app
from alyx_server.config import default_settings
from alyx_server.errors import NotFound, SchemaError
from alyx_server.functions.manifest import Defaults, parse_manifest
from alyx_server.jobs import JobQueue
from alyx_server.jobs.store import claim_jobs, complete_job, enqueue_job
from alyx_server.migrations import apply_system_migrations
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.functions.projects import OwnerPolicy, sign_up, table_rows, write_functions

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]
DEADLINE = 60.0  # a bound on each wait, never a claim about speed

RECORD_PY = """
from alyx_functions import define_function


async def handler(input, ctx):
    await ctx.db.notes.create({"owner": input["owner"], "title": input["title"]})
    return {"attempt": ctx.job["attempt"]}


record = define_function(handler=handler)
"""
RECORD_YAML = """\
input:
  owner: { type: string }
  title: { type: string, minLength: 1 }
rule: "auth != null && input.owner == auth.id"
privileged: true
job: { max_attempts: 3 }
"""
KICK_PY = """
from alyx_functions import define_function


async def handler(input, ctx):
    return await ctx.jobs.enqueue("record", {"owner": ctx.auth["id"], "title": input["title"]})


kick = define_function(handler=handler)
"""
KICK_NODE = """import { defineFunction } from "@alyx/functions";

export default defineFunction({
  async handler(input, ctx) {
    const payload = { owner: ctx.auth.id, title: input.title };
    return ctx.jobs.enqueue("record", payload, { dedupeKey: input.key, delay: input.delay });
  },
});
"""
KICK_YAML = 'rule: "auth != null"\n'
FLAKY_PY = """
from alyx_functions import AlyxError, define_function


async def handler(input, ctx):
    raise AlyxError(f"upstream down (attempt {ctx.job['attempt']})", code="UPSTREAM", status=502)


flaky = define_function(handler=handler)
"""
FLAKY_YAML = "job: { max_attempts: 3, backoff: 10s }\n"
SLOW_PY = """
import asyncio
from alyx_functions import define_function


async def handler(input, ctx):
    await asyncio.sleep(0.2)
    return {}


slow = define_function(handler=handler)
"""
SLOW_YAML = "job: { concurrency: 1 }\n"
FILES = {
    "record.py": RECORD_PY, "record.yaml": RECORD_YAML,
    "kick.py": KICK_PY, "kick.yaml": KICK_YAML,
    "kick_node.mjs": KICK_NODE, "kick_node.yaml": KICK_YAML,
    "flaky.py": FLAKY_PY, "flaky.yaml": FLAKY_YAML,
    "slow.py": SLOW_PY, "slow.yaml": SLOW_YAML,
}  # fmt: skip
START = "2030-01-01T00:00:00Z"


def make_app(root: Path, clock: ManualClock | None = None) -> Any:
    values: dict[str, object] = {
        "auth.bcrypt_cost": 4,
        "auth.rate_limit.register": "off",
        "auth.rate_limit.login": "off",
        "functions.pool.min_warm": 0,
        "jobs.poll_interval": "50ms",
    }
    settings = default_settings(root, "dev", overrides=values)
    if clock is None:
        return create_app(settings, policy=OwnerPolicy())
    return create_app(settings, policy=OwnerPolicy(), clock=clock)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_functions(tmp_path / "project", FILES)


def queue_of(client: Client) -> JobQueue:
    queue = client.app[JOBS].queue
    assert queue is not None
    return queue


def job_row(client: Client, job_id: str) -> dict[str, Any]:
    db_file = client.app[RUNTIME].settings.database.path
    with sqlite3.connect(db_file) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM _alyx_jobs WHERE id = ?", (job_id,)).fetchone()
    assert row is not None
    return dict(row)


async def until(check: Callable[[], Any]) -> Any:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not hold in time")


async def test_functions_enqueue_from_both_sdks_and_the_http_route_under_the_rule(
    project: Path, aiohttp_client: ClientFactory
) -> None:
    client = await aiohttp_client(make_app(project))
    ada = await sign_up(client, "ada@example.com")
    response = await client.post(
        "/api/functions/kick", json={"input": {"title": "from python"}}, headers=ada.headers
    )
    body = await response.json()
    assert response.status == 200 and body["success"], body
    assert body["output"]["created"] is True
    first = body["output"]["id"]
    # The same dedupe key twice while the first is still queued (delayed): one job.
    answers = []
    for data in (
        {"title": "later", "key": "k1", "delay": "1h"},
        {"title": "later", "key": "k1"},
        {"title": "from node"},
    ):
        response = await client.post("/api/functions/kick_node", json={"input": data}, headers=ada.headers)
        body = await response.json()
        assert response.status == 200 and body["success"], body
        answers.append(body["output"])
    assert [a["created"] for a in answers] == [True, False, True]
    assert answers[0]["id"] == answers[1]["id"] != answers[2]["id"]
    # POST /api/jobs/{name}: the job function's rule decides who may queue it.
    payload = {"owner": ada.id, "title": "from http"}
    refused = await client.post("/api/jobs/record", json={"payload": payload})
    assert refused.status == 403, await refused.text()
    bob = await sign_up(client, "bob@example.com")
    refused = await client.post("/api/jobs/record", json={"payload": payload}, headers=bob.headers)
    assert (refused.status, (await refused.json())["error"]) == (
        403, "the rule of function record does not allow this call",
    )  # fmt: skip
    bad = await client.post("/api/jobs/record", json={"payload": {"owner": ada.id}}, headers=ada.headers)
    assert bad.status == 400
    missing = await client.post("/api/jobs/kick", json={"payload": {}}, headers=ada.headers)
    assert (missing.status, (await missing.json())["code"]) == (404, "JOB_NOT_FOUND")
    response = await client.post("/api/jobs/record", json={"payload": payload}, headers=ada.headers)
    assert response.status == 202, await response.text()
    titles = await until(
        lambda: (
            (rows := table_rows(client, "SELECT title FROM notes ORDER BY title")) and len(rows) == 3 and rows
        )
    )
    assert [t for (t,) in titles] == ["from http", "from node", "from python"]
    done = await until(lambda: job_row(client, first)["state"] == "done" and job_row(client, first))
    assert (done["attempts"], done["result"]) == (1, '{"attempt":1}')


async def test_a_failing_job_backs_off_exponentially_then_is_dead(
    project: Path, aiohttp_client: ClientFactory
) -> None:
    clock = ManualClock(START)
    client = await aiohttp_client(make_app(project, clock))
    queue = queue_of(client)
    queued = await queue.enqueue("flaky", {})
    waits = []
    for attempt in (1, 2):

        def failed(attempt: int = attempt) -> Any:
            row = job_row(client, queued.id)
            return row["attempts"] == attempt and row["state"] == "queued" and row

        row = await until(failed)
        assert row["last_error"] == f"UPSTREAM: upstream down (attempt {attempt})"
        waits.append(row["run_at"] - clock.now().timestamp())
        # Not due before its backoff: a pass of the runner now leaves it queued.
        assert await queue.run_due() == 0
        clock.advance(waits[-1] + 0.001)  # the clock counts whole microseconds
        queue.wake()
    # base 10s doubled, each with equal jitter: [5, 10] then [10, 20].
    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20, waits
    row = await until(lambda: (r := job_row(client, queued.id))["state"] == "dead" and r)
    assert row["attempts"] == 3 and row["last_error"] == "UPSTREAM: upstream down (attempt 3)"
    # The admin API shows it and queues it again.
    root = await sign_up(client, "root@example.com", admin=True)
    listed = await (await client.get("/api/admin/jobs?state=dead", headers=root.headers)).json()
    assert [j["id"] for j in listed["jobs"]] == [queued.id] and listed["counts"]["dead"] == 1
    retried = await client.post(f"/api/admin/jobs/{queued.id}/retry", headers=root.headers)
    assert retried.status == 200 and (await retried.json())["state"] in ("queued", "running")
    await until(lambda: job_row(client, queued.id)["attempts"] >= 1)
    refused = await client.get("/api/admin/jobs", headers=(await sign_up(client, "eve@example.com")).headers)
    assert refused.status == 403


async def test_dedupe_key_holds_while_queued(project: Path, aiohttp_client: ClientFactory) -> None:
    clock = ManualClock(START)
    client = await aiohttp_client(make_app(project, clock))
    queue = queue_of(client)
    payload = {"owner": "x", "title": "t"}
    first = await queue.enqueue("record", payload, delay="1h", dedupe_key="daily")
    again = await queue.enqueue("record", payload, delay=5, dedupe_key="daily")
    other = await queue.enqueue("record", payload, delay="1h", dedupe_key="weekly")
    assert (first.created, again.created, again.id) == (True, False, first.id)
    assert other.created and other.id != first.id
    with pytest.raises(NotFound, match="no job named 'kick'"):
        await queue.enqueue("kick", {})


async def test_concurrency_is_respected(project: Path, aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(project))
    queue = queue_of(client)
    ids = [(await queue.enqueue("slow", {})).id for _ in range(4)]
    db_file = client.app[RUNTIME].settings.database.path
    most = 0

    def all_done() -> bool:
        nonlocal most
        with sqlite3.connect(db_file) as conn:
            states = [s for (s,) in conn.execute("SELECT state FROM _alyx_jobs WHERE name = 'slow'")]
        most = max(most, states.count("running"))
        return states == ["done"] * len(ids)

    await until(all_done)
    assert most == 1


def test_claims_from_two_processes_share_the_concurrency_and_leases(tmp_path: Path) -> None:
    """Two connections to one file, as two server processes: the single-UPDATE claim."""
    path = tmp_path / "jobs.db"
    first = sqlite3.connect(path, isolation_level=None)
    apply_system_migrations(first)
    second = sqlite3.connect(path, isolation_level=None)
    for _ in range(3):
        enqueue_job(first, "mail", {"n": 1}, now=0.0)
    a = claim_jobs(first, "mail", now=1.0, limit=5, visibility_timeout=30, concurrency=2)
    b = claim_jobs(second, "mail", now=1.0, limit=5, visibility_timeout=30, concurrency=2)
    assert (len(a), len(b)) == (2, 0)
    assert complete_job(first, a[0], {"ok": True}, now=2.0)
    b = claim_jobs(second, "mail", now=2.0, limit=5, visibility_timeout=30, concurrency=2)
    assert len(b) == 1
    # a[1]'s process died: its lease ends at 31; then the job is claimed again.
    assert claim_jobs(second, "mail", now=30.0, limit=5, visibility_timeout=30, concurrency=None) == []
    again = claim_jobs(second, "mail", now=31.5, limit=5, visibility_timeout=30, concurrency=None)
    assert [c.job.id for c in again] == [a[1].job.id] and again[0].job.attempts == 2
    # The old run finishing late cannot overwrite the new run's outcome.
    assert not complete_job(first, a[1], {"late": True}, now=32.0)
    assert complete_job(second, again[0], {"ok": True}, now=33.0)


def test_job_manifest_errors_name_file_and_line(tmp_path: Path) -> None:
    source = tmp_path / "functions" / "mail.py"
    source.parent.mkdir()
    source.write_text("")
    manifest = source.with_suffix(".yaml")
    cases = {
        "timeout: 30s\njob:\n  visibility_timeout: 10s\n": "functions/mail.yaml:3:23: "
        "job.visibility_timeout: 10s must be longer than the function's timeout (30s)",
        "job: { max_attempts: 0 }\n": "functions/mail.yaml:1:22: job.max_attempts: must be a whole number "
        "from 1 to 100, not 0",
        "job: { retries: 3 }\n": 'functions/mail.yaml:1:8: job.retries: unknown job option "retries"',
        "job: { backoff: soon }\n": "functions/mail.yaml:1:17: job.backoff: must be a duration "
        "such as 1s or 5m, not 'soon'",
    }
    for text, expected in cases.items():
        manifest.write_text(text)
        with pytest.raises(SchemaError) as caught:
            parse_manifest("mail", source, manifest, Defaults(), tmp_path)
        assert str(caught.value).startswith(expected), str(caught.value)
    manifest.write_text("timeout: 5s\njob: true\n")
    spec = parse_manifest("mail", source, manifest, Defaults(), tmp_path)
    assert spec.job is not None and spec.job.visibility_timeout == 35.0 and spec.job.max_attempts == 5


def _schema(document: dict[str, Any], name: str) -> Draft202012Validator:
    """The document's component `name`, with its `$ref`s in reach."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return Draft202012Validator(schema)


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        ({"delay": "1h", "dedupe_key": "k"}, True),
        ({"delay": " 1h30m "}, True),
        ({"delay": 5, "dedupe_key": None}, True),
        ({"delay": "\u0663s"}, False),  # an Arabic-Indic digit: durations are ASCII
        ({"delay": "\x1c3s"}, False),
        ({"delay": -1}, False),
        ({"delay": True}, False),
        ({"dedupe_key": ""}, False),
        ({"dedupe_key": "x" * 201}, False),
        ({"extra": 1}, False),
    ],
)
async def test_a_job_request_is_what_the_openapi_document_says(
    project: Path, aiohttp_client: ClientFactory, body: dict[str, Any], accepted: bool
) -> None:
    client = await aiohttp_client(make_app(project))
    ada = await sign_up(client, "ada@example.com")
    document = await (await client.get("/api/openapi.json")).json()
    body = {"payload": {"owner": ada.id, "title": "t"}, **body}
    assert _schema(document, "JobRequest").is_valid(body) is accepted
    answer = await client.post("/api/jobs/record", json=body, headers=ada.headers)
    assert (answer.status == 202) is accepted, await answer.text()
    if accepted:
        assert _schema(document, "JobQueued").is_valid(await answer.json())
    else:
        assert answer.status == 400


async def test_the_admin_job_routes_answer_as_the_openapi_document_says(
    project: Path, aiohttp_client: ClientFactory
) -> None:
    client = await aiohttp_client(make_app(project))
    root = await sign_up(client, "root@example.com", admin=True)
    document = await (await client.get("/api/openapi.json")).json()
    queued = await queue_of(client).enqueue("record", {"owner": "x", "title": "t"}, delay="1h")
    listed = await client.get("/api/admin/jobs?limit=1000", headers=root.headers)
    assert listed.status == 200 and _schema(document, "JobList").is_valid(await listed.json())
    shown = await client.get(f"/api/admin/jobs/{queued.id}", headers=root.headers)
    assert _schema(document, "Job").is_valid(await shown.json())
    purged = await client.delete("/api/admin/jobs?dead=true", headers=root.headers)
    assert _schema(document, "JobsPurged").is_valid(await purged.json())
    # `limit` is a whole number from 1 to 1000, in ASCII digits: "²" passes str.isdigit().
    for limit in ["0", "1001", "\u00b2", "\u0663", "-1"]:
        for path in ["/api/admin/jobs", "/api/admin/webhooks/deliveries"]:
            refused = await client.get(path, params={"limit": limit}, headers=root.headers)
            code = (await refused.json())["code"]
            assert (refused.status, code) == (400, "VALIDATION_ERROR"), (path, limit)
