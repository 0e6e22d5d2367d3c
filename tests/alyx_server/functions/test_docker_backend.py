"""The Docker backend end to end: a real engine, real containers, real limits.

These tests need a Docker engine with the base images `alyx-python-base:local` and
`alyx-node-base:local`; `make test` starts one with `tests/env/docker-up.sh`. They fail (never
skip) when no engine answers, so that a CI without Docker cannot pass unnoticed.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from aiohttp.test_utils import TestClient

from alyx_server.api.functions import FUNCTIONS
from alyx_server.config import Settings
from alyx_server.errors import ConfigError
from alyx_server.functions.backend import Backend
from alyx_server.functions.docker_backend import DockerBackend, connect_engine
from alyx_server.functions.manifest import FunctionSpec
from alyx_server.functions.sandbox import Runtimes
from alyx_server.functions.worker import WorkerCrashed
from alyx_server.resources import data_dir
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

WHERE_PY = """
import os
import sys

from alyx_functions import define_function

where = define_function(handler=lambda input, ctx: {
    "container": os.path.exists("/.dockerenv"),
    "version": sys.version.split()[0],
    "cwd": os.getcwd(),
})
"""
WHERE_NODE = """import fs from "node:fs";
import { defineFunction } from "@alyx/functions";

export default defineFunction({
  handler: () => ({ container: fs.existsSync("/.dockerenv"), version: process.version, cwd: process.cwd() }),
});
"""
DOCKER_FILES = {
    **FILES,
    "where.py": WHERE_PY,
    "where.yaml": "rule: 'true'\n",
    "where_node/index.mjs": WHERE_NODE,
    "where_node.yaml": "rule: 'true'\n",
}


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    try:
        client = connect_engine()
    except ConfigError as e:
        pytest.fail(
            f"{e}\nThe Docker backend's tests need an engine: start a private one with\n"
            '  docker_env=$(bash tests/env/docker-up.sh) && eval "$docker_env"\n'
            "(and stop it with tests/env/docker-down.sh)",
            pytrace=False,
        )
    yield client
    client.close()


@pytest.fixture
async def client(engine: docker.DockerClient, tmp_path: Path, aiohttp_client: ClientFactory) -> Client:
    root = write_functions(tmp_path / "project", DOCKER_FILES)
    overrides = {"functions.backend": "docker", "functions.pool.max_instances": 2}
    return await aiohttp_client(make_app(root, **overrides))


def containers_of(engine: docker.DockerClient, name: str) -> list[str]:
    # sparse: names from the list call itself; inspecting each one races with a container
    # removing itself between the list and the inspect (404).
    found = engine.containers.list(all=True, sparse=True, filters={"label": f"alyx.function={name}"})
    return [n.lstrip("/") for c in found for n in c.attrs.get("Names", [])[:1]]


@pytest.mark.parametrize(("name", "runtime"), [("where", "python"), ("where_node", "node")])
async def test_functions_run_in_containers(client: Client, name: str, runtime: str) -> None:
    status, body = await call(client, name, {})
    assert status == 200, body
    out = body["output"]
    assert out["container"] is True and out["cwd"] == "/alyx/function"
    major = int(out["version"].lstrip("v").split(".")[0])
    assert major >= (3 if runtime == "python" else 18)
    backend = service_of(client).backend
    assert isinstance(backend, DockerBackend)
    assert backend.describe()["backend"] == "docker"


@pytest.mark.parametrize("name", ["notes", "notes_node"])
async def test_reads_and_writes_through_the_mounted_socket_under_the_rules(client: Client, name: str) -> None:
    ada = await sign_up(client, "ada@example.com")
    bob = await sign_up(client, "bob@example.com")
    status, body = await call(client, name, {"title": "bob's"}, bob)
    assert status == 200, body
    status, body = await call(client, name, {"title": "ada's", "other": body["output"]["id"]}, ada)
    assert status == 200 and body["success"] is True, body
    output = body["output"]
    assert (output["other"], output["seen"], output["count"]) == ("DOCUMENT_NOT_FOUND", None, 1)
    assert [(line["level"], line["message"]) for line in body["logs"]] == [
        ("info", f"created {output['id']}")
    ]
    rows = table_rows(client, "SELECT owner, title FROM notes ORDER BY title")
    assert rows == [(ada.id, "ada's"), (bob.id, "bob's")]


async def test_a_load_error_names_the_file_on_the_host(client: Client, tmp_path: Path) -> None:
    status, body = await call(client, "broken", {})
    assert (status, body["code"]) == (500, "INVOCATION_ERROR")
    host_file = tmp_path / "project" / "functions" / "broken.mjs"
    assert body["error"].startswith(f"function broken cannot load: {host_file}:3: SyntaxError"), body


async def test_a_timeout_and_a_crash_remove_the_container_and_a_fresh_one_serves(
    client: Client, engine: docker.DockerClient
) -> None:
    status, body = await call(client, "misbehave", {"mode": "ok"})
    assert status == 200, body
    first = containers_of(engine, "misbehave")
    assert len(first) == 1
    status, body = await call(client, "misbehave", {"mode": "loop"})
    assert (status, body["code"]) == (504, "FUNCTION_TIMEOUT")
    assert body["error"] == "function misbehave did not finish within 2s"
    assert first[0] not in containers_of(engine, "misbehave")
    status, body = await call(client, "misbehave", {"mode": "crash"})
    assert (status, body["code"]) == (500, "INVOCATION_ERROR")
    assert body["error"] == "function misbehave crashed (exit status 3); a fresh worker takes its place"
    status, body = await call(client, "misbehave", {"mode": "ok"})
    assert status == 200 and body["output"]["ok"] is True
    assert service_of(client).pools["misbehave"].replaced == 2


async def test_a_1gb_allocation_hits_the_memory_limit(client: Client) -> None:
    status, body = await call(client, "misbehave", {"mode": "memory"})
    assert (status, body["code"]) == (500, "INVOCATION_ERROR")
    assert body["error"] == (
        "function misbehave ran out of memory and was stopped (limit 256MiB); a fresh worker takes its place"
    )
    assert (await call(client, "misbehave", {"mode": "ok"}))[0] == 200


async def test_a_fork_bomb_stops_at_the_pids_limit(client: Client) -> None:
    status, body = await call(client, "misbehave", {"mode": "fork"})
    assert status == 200, body
    assert body["output"]["errno"] == errno.EAGAIN
    assert 0 < body["output"]["forked"] < 64
    # The children it left behind went with its container; the next call gets a fresh one.
    status, body = await call(client, "misbehave", {"mode": "ok"})
    assert status == 200 and service_of(client).pools["misbehave"].replaced == 1


@pytest.mark.parametrize(
    ("name", "network"),
    [("probe", False), ("probe_net", True), ("probe_node", False), ("probe_node_net", True)],
)
async def test_the_container_sees_no_data_no_secret_and_no_network_unless_allowed(
    client: Client, name: str, network: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALYX_AUTH_JWT_SECRET", "s" * 40)  # in the server's environment only
    out = await run_probe(client, name)
    missing = "ENOENT" if "node" in name else "FileNotFoundError"
    assert (out["db"], out["secret_file"], out["secret_env"]) == (missing, missing, None)
    assert out["env"] == {"API_KEY": "k1"} and out["ctx_env"] == {"API_KEY": "k1"}
    assert out["write"] in ("OSError", "EROFS")
    mode = service_of(client).backend.describe()["network"]
    if not network:
        assert out["net"] in ("OSError", "ENETUNREACH", "ConnectionRefusedError", "ECONNREFUSED")
    elif mode == "host":
        # An engine without a bridge (like CI's): network: true shares the host's network,
        # so the server on the host's loopback answers.
        assert out["net"] == "connected"
    else:
        # On the bridge, 127.0.0.1 is the container's own loopback: nothing listens there.
        assert out["net"] in ("ConnectionRefusedError", "ECONNREFUSED")


async def test_no_container_outlives_the_server(
    engine: docker.DockerClient, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_functions(tmp_path / "project", {"where.py": WHERE_PY, "where.yaml": "rule: 'true'\n"})
    app = make_app(root, **{"functions.backend": "docker", "functions.pool.min_warm": 1})
    client = await aiohttp_client(app)
    assert service_of(client).pools["where"].state["idle"] == 1
    assert len(containers_of(engine, "where")) == 1
    await client.close()
    assert containers_of(engine, "where") == []


EXIT_LATER_PY = """
import os
import threading

from alyx_functions import define_function


def handler(input, ctx):
    threading.Timer(0.2, os._exit, (0,)).start()
    return {"bye": True}


exit_later = define_function(handler=handler)
"""


async def test_an_executor_that_exits_while_idle_leaves_no_container(
    engine: docker.DockerClient, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    def quick(settings: Settings, socket: Path) -> Backend:
        return DockerBackend(Runtimes.detect(data_dir("runtimes")), socket, exited_grace=0.1)

    files = {"exit_later.py": EXIT_LATER_PY, "exit_later.yaml": "rule: 'true'\n"}
    app = make_app(write_functions(tmp_path / "project", files))
    app[FUNCTIONS].backend_factory = quick
    client = await aiohttp_client(app)
    assert (await call(client, "exit_later", {}))[0] == 200
    for _ in range(100):
        if not containers_of(engine, "exit_later"):
            break
        await asyncio.sleep(0.05)
    assert containers_of(engine, "exit_later") == []
    # The pool noticed: the next call starts a fresh container.
    assert (await call(client, "exit_later", {}))[0] == 200
    assert service_of(client).pools["exit_later"].started == 2


async def test_a_missing_base_image_is_named(engine: docker.DockerClient, tmp_path: Path) -> None:
    source = tmp_path / "where.py"
    source.write_text(WHERE_PY)
    backend = DockerBackend(
        Runtimes.detect(data_dir("runtimes")),
        tmp_path / "api.sock",
        client=engine,
        base_images={"python": "alyx-missing-base:local"},
    )
    spec = FunctionSpec("where", "python", source, None, timeout=5, memory=64 * 1024 * 1024)
    with pytest.raises(WorkerCrashed) as caught:
        await backend.start_worker(spec, timeout=5)
    assert str(caught.value).startswith(
        "the base image alyx-missing-base:local of the python runtime is missing from the Docker engine; "
        "import a root filesystem with python3 under that name"
    )


def test_an_unreachable_engine_is_a_clear_error_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(ConfigError) as caught:
        connect_engine()
    message = str(caught.value)
    assert message.startswith(
        f"functions.backend: docker: the Docker engine at unix://{tmp_path}/docker.sock does not answer ("
    )
    assert message.endswith("(start the engine, or set DOCKER_HOST to where it listens)")
