"""A deploy that changes a function while a call to it runs and another waits for a worker:
both finish on the old code (their answers are the old ones), the next call runs the new
code, and nothing fails.

The server is the real application on a loopback port (`auth_app`); the deploys go through
`/api/admin/deploy/prepare` and `execute` as `alyx deploy` sends them. The "slow" call is
held by a gate instead of a sleep: the function connects to a TCP server the test runs and
answers only once the test lets it, so the deploy happens while it is in flight whatever
the machine's speed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alyx_server.api.functions import FUNCTIONS
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.conftest import auth_app, clock, smtp
from tests.alyx_server.api.deploy_support import developer_project, execute, prepare, token
from tests.alyx_server.auth.support import AppFactory, Client
from tests.alyx_server.functions.test_pools import until
from tests.schemas import NOTES

__all__ = ["auth_app", "clock", "smtp"]

GATE_PY = """
import socket

from alyx_functions import define_function


async def handler(input, ctx):
    if input.get("port"):
        with socket.create_connection(("127.0.0.1", input["port"])) as gate:
            gate.recv(1)
    return {"code": "CODE"}


gate = define_function(handler=handler)
"""
GATE_YAML = """\
timeout: 30s
network: true
input:
  port: { type: int, default: 0 }
output:
  code: { type: string }
rule: "true"
"""


def with_gate(root: Path, code: str) -> Path:
    project = developer_project(root, NOTES)
    (project / "functions").mkdir(exist_ok=True)
    (project / "functions" / "gate.py").write_text(GATE_PY.replace("CODE", code), encoding="utf-8")
    (project / "functions" / "gate.yaml").write_text(GATE_YAML, encoding="utf-8")
    return project


async def deploy(client: Client, project: Path, secret: str) -> dict[str, Any]:
    status, plan = await prepare(client, project, secret)
    assert status == 200, plan
    status, body = await execute(client, secret, plan)
    assert status == 200, body
    answered: dict[str, Any] = plan
    return answered


async def invoke(client: Client, data: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post("/api/functions/gate", json={"input": data})
    return response.status, await response.json()


async def test_a_call_in_flight_finishes_on_the_old_code_and_the_next_runs_the_new(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await auth_app(**{"functions.pool.min_warm": 1, "functions.pool.max_instances": 1})
    service = client.app[FUNCTIONS].service
    assert service is not None
    secret = await token(client, clock)
    await deploy(client, with_gate(tmp_path / "v1", "old"), secret)
    status, body = await invoke(client, {})
    assert (status, body["output"]) == (200, {"code": "old"})

    connected: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await connected.put(writer)

    gate = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = gate.sockets[0].getsockname()[1]
    async with gate:
        in_flight = asyncio.ensure_future(invoke(client, {"port": port}))
        held = await asyncio.wait_for(connected.get(), 30)  # the old code is running the call
        old_pool = service.pools["gate"]
        queued = asyncio.ensure_future(invoke(client, {}))  # waits for the one old worker
        await until(lambda: old_pool.state["queued"] == 1)

        plan = await deploy(client, with_gate(tmp_path / "v2", "new"), secret)
        assert plan["functions"] == {"added": [], "changed": ["gate"], "removed": []}
        # New calls run the new code while the old call still waits at the gate.
        status, body = await invoke(client, {})
        assert (status, body["output"]) == (200, {"code": "new"})
        assert not in_flight.done() and not queued.done()

        held.write(b"x")
        await held.drain()
        status, body = await asyncio.wait_for(in_flight, 30)
        held.close()
    assert (status, body["success"], body["output"]) == (200, True, {"code": "old"})
    # The call queued on the old pool before the cut-over ran on the old code too.
    status, body = await asyncio.wait_for(queued, 30)
    assert (status, body["output"]) == (200, {"code": "old"})
    status, body = await invoke(client, {})
    assert (status, body["output"]) == (200, {"code": "new"})
    assert service.describe()[0]["stats"]["failed"] == 0
