"""A sandboxed function may write only to its private /tmp: its own folder, /alyx and the
root of the sandbox are read-only, whether the function is one file or a folder, under
bubblewrap (the process backend) and in a container (the Docker backend; like
test_docker_backend.py, this fails rather than skips when no Docker engine answers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from alyx_server.errors import ConfigError
from alyx_server.functions.docker_backend import connect_engine
from tests.alyx_server.functions.projects import call, make_app, write_functions

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]

SCRIBBLE_PY = """
import os

from alyx_functions import define_function


def attempt(path):
    try:
        with open(path, "w") as f:
            f.write("planted")
        return "written"
    except OSError as e:
        return type(e).__name__


def handler(input, ctx):
    here = os.path.dirname(os.path.abspath(__file__))
    return {
        "here": here,
        "beside": attempt(os.path.join(here, "planted.py")),
        "alyx": attempt("/alyx/planted"),
        "root": attempt("/planted"),
        "tmp": attempt("/tmp/scratch"),
    }


scribble = define_function(handler=handler)
"""
SCRIBBLE_NODE = """import fs from "node:fs";
import path from "node:path";
import { defineFunction } from "@alyx/functions";

const attempt = (file) => {
  try { fs.writeFileSync(file, "planted"); return "written"; } catch (e) { return e.code || String(e); }
};

export default defineFunction({
  handler() {
    const here = path.dirname(new URL(import.meta.url).pathname);
    return {
      here,
      beside: attempt(path.join(here, "planted.mjs")),
      alyx: attempt("/alyx/planted"),
      root: attempt("/planted"),
      tmp: attempt("/tmp/scratch"),
    };
  },
});
"""
OPEN = "rule: 'true'\n"
FILES = {
    "scribble.py": SCRIBBLE_PY,
    "scribble.yaml": OPEN,
    "scribble_dir/index.py": SCRIBBLE_PY,
    "scribble_dir.yaml": OPEN,
    "scribble_node.mjs": SCRIBBLE_NODE,
    "scribble_node.yaml": OPEN,
}
REFUSED = ("OSError", "PermissionError", "EROFS", "EACCES")


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
async def client(request: pytest.FixtureRequest, tmp_path: Path, aiohttp_client: ClientFactory) -> Client:
    if request.param == "docker":
        try:
            connect_engine().close()
        except ConfigError as e:
            pytest.fail(f"{e}\nstart an engine with tests/env/docker-up.sh", pytrace=False)
    root = write_functions(tmp_path / "project", FILES)
    return await aiohttp_client(make_app(root, **{"functions.backend": request.param}))


@pytest.mark.parametrize("name", ["scribble", "scribble_dir", "scribble_node"])
async def test_a_function_cannot_write_beside_itself_only_in_tmp(
    client: Client, tmp_path: Path, name: str
) -> None:
    status, body = await call(client, name, {})
    assert status == 200, body
    out = body["output"]
    assert out["here"] == "/alyx/function"
    assert out["beside"] in REFUSED, out
    assert out["alyx"] in REFUSED, out
    assert out["root"] in REFUSED, out
    assert out["tmp"] == "written"
    functions = tmp_path / "project" / "functions"
    assert sorted(p.name for p in functions.rglob("planted*")) == []
