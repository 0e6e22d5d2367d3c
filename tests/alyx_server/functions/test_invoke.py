"""POST /api/functions/{name} end to end: real server, real sandboxed workers, real limits."""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from alyx_server.functions.backend import ProcessBackend
from tests.alyx_server.functions.projects import (
    call,
    make_app,
    run_probe,
    service_of,
    sign_up,
    table_rows,
    write_functions,
)
from tests.alyx_server.functions.sources import FILES

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: ClientFactory) -> Client:
    root = write_functions(tmp_path / "project", FILES)
    return await aiohttp_client(make_app(root, **{"functions.pool.max_instances": 2}))


@pytest.mark.parametrize("name", ["notes", "notes_node"])
async def test_reads_and_writes_as_the_caller_under_the_rules(client: Client, name: str) -> None:
    ada = await sign_up(client, "ada@example.com")
    bob = await sign_up(client, "bob@example.com")
    status, body = await call(client, name, {"title": "bob's"}, bob)
    assert status == 200, body
    bobs = body["output"]["id"]
    status, body = await call(client, name, {"title": "ada's", "other": bobs}, ada)
    assert status == 200 and body["success"] is True, body
    output = body["output"]
    # Ada's function cannot change, see or even find Bob's note: the policy applies.
    assert output["other"] == "DOCUMENT_NOT_FOUND"
    assert output["seen"] is None and output["count"] == 1
    assert [(line["level"], line["message"]) for line in body["logs"]] == [
        ("info", f"created {output['id']}")
    ]
    assert body["duration_ms"] > 0
    rows = table_rows(client, "SELECT owner, title FROM notes ORDER BY title")
    assert rows == [(ada.id, "ada's"), (bob.id, "bob's")]


async def test_a_transaction_failing_half_way_writes_nothing(client: Client) -> None:
    ada = await sign_up(client, "ada@example.com")
    status, body = await call(client, "tx", {"second": ""}, ada)
    assert status == 200 and body["success"] is False
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["message"].startswith("operation 1 failed, nothing was written: ")
    assert body["error"]["details"][0]["index"] == 1
    assert table_rows(client, "SELECT count(*) FROM notes") == [(0,)]
    status, body = await call(client, "tx", {"second": "second"}, ada)
    assert [r["title"] for r in body["output"]] == ["first", "second"]


async def test_who_may_call(client: Client) -> None:
    status, body = await call(client, "admin_only", {})
    assert (status, body["code"]) == (403, "FORBIDDEN")
    assert body["error"] == "only admins may call function admin_only: its manifest has no rule"
    ada = await sign_up(client, "ada@example.com")
    assert (await call(client, "admin_only", {}, ada))[0] == 403
    root = await sign_up(client, "root@example.com", admin=True)
    status, body = await call(client, "admin_only", {}, root)
    assert (status, body["output"]) == (200, {"who": "root@example.com"})
    status, body = await call(client, "notes", {"title": "x"})
    assert (status, body["error"]) == (403, "the rule of function notes does not allow this call")
    status, body = await call(client, "big_only", {"n": 3}, ada)
    assert (status, body["output"]) == (200, {"who": "ada@example.com"})
    status, body = await call(client, "big_only", {"n": 2}, ada)
    assert (status, body["error"]) == (403, "the rule of function big_only does not allow this call")
    status, body = await call(client, "nothing", {})
    assert (status, body["code"], body["error"]) == (404, "FUNCTION_NOT_FOUND", "no function named 'nothing'")


async def test_input_is_validated_before_dispatch(client: Client) -> None:
    ada = await sign_up(client, "ada@example.com")
    status, body = await call(client, "notes", {"title": "", "spy": 1}, ada)
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    assert {(d["field"], d["code"]) for d in body["details"]} == {
        ("title", "min_length"),
        ("spy", "unknown_field"),
    }
    assert service_of(client).pools["notes"].started == 0
    response = await client.post("/api/functions/notes", json={"input": {}, "x": 1}, headers=ada.headers)
    assert response.status == 400


async def test_timeout_crash_and_raise_then_fresh_workers(client: Client) -> None:
    status, body = await call(client, "misbehave", {"mode": "ok"})
    first_pid = body["output"]["pid"]
    assert body["logs"][0]["message"] == "mode ok"
    status, body = await call(client, "misbehave", {"mode": "loop"})
    assert (status, body["code"]) == (504, "FUNCTION_TIMEOUT")
    assert body["error"] == "function misbehave did not finish within 2s"
    status, body = await call(client, "misbehave", {"mode": "crash"})
    assert (status, body["code"]) == (500, "INVOCATION_ERROR")
    assert body["error"] == "function misbehave crashed (exit status 3); a fresh worker takes its place"
    status, body = await call(client, "misbehave", {"mode": "raise"})
    assert status == 200 and body["success"] is False
    assert body["error"]["code"] == "FUNCTION_ERROR" and body["error"]["message"] == "ValueError: nope"
    status, body = await call(client, "misbehave", {"mode": "ok"})
    assert status == 200 and body["output"]["ok"] is True
    stats = next(f for f in (await admin_list(client))["functions"] if f["name"] == "misbehave")
    assert stats["stats"]["timeouts"] == 1 and stats["stats"]["crashes"] == 1
    assert stats["workers_replaced"] == 2 and first_pid is not None


async def admin_list(client: Client) -> Any:
    root = await sign_up(client, f"admin{id(client)}@example.com", admin=True)
    response = await client.get("/api/admin/functions", headers=root.headers)
    assert response.status == 200
    return await response.json()


async def test_a_fork_bomb_stops_at_the_pids_limit(client: Client) -> None:
    assert service_of(client).backend.describe()["limits"] != "none", (
        "no writable control groups: run the tests as root on a machine with cgroup v1 or v2"
    )
    status, body = await call(client, "misbehave", {"mode": "fork"})
    assert status == 200, body
    assert body["output"]["errno"] == errno.EAGAIN
    assert 0 < body["output"]["forked"] < 64
    # The children it left behind went with its worker; the next call gets a fresh one.
    status, body = await call(client, "misbehave", {"mode": "ok"})
    assert status == 200 and service_of(client).pools["misbehave"].replaced == 1


async def test_a_1gb_allocation_hits_the_memory_limit(client: Client) -> None:
    assert service_of(client).backend.describe()["limits"] != "none", (
        "no writable control groups: run the tests as root on a machine with cgroup v1 or v2"
    )
    status, body = await call(client, "misbehave", {"mode": "memory"})
    assert (status, body["code"]) == (500, "INVOCATION_ERROR")
    assert body["error"] == (
        "function misbehave ran out of memory and was stopped (limit 256MiB); a fresh worker takes its place"
    )
    assert (await call(client, "misbehave", {"mode": "ok"}))[0] == 200


@pytest.mark.parametrize(
    ("name", "network"),
    [
        ("probe", False),
        ("probe_net", True),
        ("probe_node", False),
        ("probe_node_net", True),
    ],
)
async def test_the_sandbox_hides_data_and_secrets(
    client: Client, name: str, network: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALYX_AUTH_JWT_SECRET", "s" * 40)  # in the server's environment only
    out = await run_probe(client, name)
    missing = "FileNotFoundError" if name.startswith("probe_net") or name == "probe" else "ENOENT"
    assert (out["db"], out["secret_file"], out["secret_env"]) == (missing, missing, None)
    assert out["env"] == {"API_KEY": "k1"} and out["ctx_env"] == {"API_KEY": "k1"}
    assert out["write"] in ("OSError", "EROFS", "PermissionError", "EACCES")
    if network:
        assert out["net"] == "connected"
    else:
        assert out["net"] in ("OSError", "ENETUNREACH", "ConnectionRefusedError", "ECONNREFUSED")


async def test_an_internal_token_dies_with_its_invocation(client: Client) -> None:
    _status, body = await call(client, "leak", {})
    token = body["output"]["token"]
    backend = service_of(client).backend
    assert isinstance(backend, ProcessBackend)
    connector = aiohttp.UnixConnector(path=str(backend.sandbox.socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        response = await session.post(
            "http://alyx/internal/v1/db/query",
            json={"collection": "notes"},
            headers={"Authorization": f"Bearer {token}"},
        )
        answer = await response.json()
    assert (response.status, answer["code"]) == (401, "INVALID_TOKEN")
    assert answer["error"] == "invalid internal API token: a token is valid only while its invocation runs"
    assert len(service_of(client).tokens) == 0
