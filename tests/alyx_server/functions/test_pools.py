"""Warm pools under load, load failures, isolation warnings and the admin listing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from alyx_server.api.functions import FUNCTIONS
from alyx_server.config import Settings
from alyx_server.functions.backend import Backend, ProcessBackend
from alyx_server.functions.sandbox import Runtimes
from alyx_server.resources import data_dir
from tests.alyx_server.functions.projects import call, make_app, service_of, sign_up, until, write_functions
from tests.alyx_server.functions.sources import FILES

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]


async def test_more_calls_than_instances_queue_and_more_than_the_queue_are_refused(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_functions(
        tmp_path / "p", {"misbehave.py": FILES["misbehave.py"], "misbehave.yaml": FILES["misbehave.yaml"]}
    )
    overrides = {"functions.pool.max_instances": 1, "functions.pool.max_queue": 1}
    client = await aiohttp_client(make_app(root, **overrides))
    pool = service_of(client).pools["misbehave"]
    running = asyncio.ensure_future(call(client, "misbehave", {"mode": "sleep", "seconds": 0.3}))
    await until(lambda: pool.state["busy"] == 1)
    queued = asyncio.ensure_future(call(client, "misbehave", {"mode": "ok"}))
    await until(lambda: pool.state["queued"] == 1)
    status, body = await call(client, "misbehave", {"mode": "ok"})
    assert (status, body["code"]) == (503, "FUNCTIONS_BUSY")
    assert body["error"] == (
        "function misbehave is busy: 1 instances running and 1 invocations waiting; try again later"
    )
    assert (await running)[0] == 200 and (await queued)[0] == 200
    assert pool.started == 1  # the queued call reused the one worker


async def test_a_function_that_cannot_load_is_reported_and_the_others_work(
    tmp_path: Path, aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    files = {name: FILES[name] for name in ("broken.mjs", "broken.yaml", "leak.py", "leak.yaml")}
    files["bad.yaml"] = "rule: [\n"
    files["bad.py"] = ""
    files["badrule.yaml"] = "timeout: 1s\nrule: auth != null && doc.x\n"
    files["badrule.py"] = ""
    root = write_functions(tmp_path / "p", files)
    with caplog.at_level(logging.ERROR, "alyx.functions"):
        client = await aiohttp_client(make_app(root, **{"functions.pool.min_warm": 1}))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "functions/broken.mjs:3: SyntaxError: Unexpected token" in logged
    assert "functions/bad.yaml:2:1: invalid YAML" in logged
    assert (
        "functions/badrule.yaml:2:23: rule: the rule of function badrule does not compile: "
        "undeclared reference to 'doc' (known: auth, input, request) (CEL column 17)"
    ) in logged
    status, body = await call(client, "broken", {})
    assert (status, body["code"]) == (500, "INVOCATION_ERROR")
    assert (
        body["error"].startswith("function broken cannot load: ")
        and "broken.mjs:3: SyntaxError" in body["error"]
    )
    assert (await call(client, "leak", {}))[0] == 200
    admin = await sign_up(client, "root@example.com", admin=True)
    listing = await (await client.get("/api/admin/functions", headers=admin.headers)).json()
    by_name = {f["name"]: f for f in listing["functions"]}
    assert {by_name[n]["state"] for n in ("broken", "bad", "badrule")} == {"failed"}
    assert by_name["leak"]["runtime"] == "python" and by_name["leak"]["state"] == "ready"
    assert by_name["leak"]["stats"]["invocations"] == 1
    assert listing["backend"]["backend"] == "process"


async def test_the_listing_is_for_admins(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(write_functions(tmp_path / "p", {})))
    assert (await client.get("/api/admin/functions")).status == 401
    ada = await sign_up(client, "ada@example.com")
    response = await client.get("/api/admin/functions", headers=ada.headers)
    assert (response.status, (await response.json())["code"]) == (403, "FORBIDDEN")


async def test_running_without_sandbox_or_limits_warns_and_still_works(
    tmp_path: Path, aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def bare(settings: Settings, socket: Path) -> Backend:
        return ProcessBackend(Runtimes.detect(data_dir("runtimes")), socket, bwrap=False, cgroups=False)

    root = write_functions(tmp_path / "p", {"leak.py": FILES["leak.py"], "leak.yaml": FILES["leak.yaml"]})
    app = make_app(root)
    app[FUNCTIONS].backend_factory = bare
    with caplog.at_level(logging.WARNING, "alyx.functions"):
        client = await aiohttp_client(app)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("bubblewrap (bwrap) is not installed: functions run unsandboxed" in w for w in warnings)
    assert any(
        "no memory or process limits for functions (control groups are turned off)" in w for w in warnings
    )
    assert (await call(client, "leak", {}))[0] == 200
    assert service_of(client).backend.describe() == {
        "backend": "process",
        "sandbox": "none",
        "limits": "none",
    }
