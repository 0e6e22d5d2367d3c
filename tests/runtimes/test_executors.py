"""The executors over stdio, without a server: the JSON protocol of SPEC section 11."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alyx_server.resources import data_dir

RUNTIMES = data_dir("runtimes")
NODE = shutil.which("node")

PY_OK = """
from alyx_functions import define_function

async def handler(input, ctx):
    print("printed", 1)
    ctx.log.warn("careful", {"n": 2})
    return {"double": input["n"] * 2, "env": ctx.env, "auth": ctx.auth}

double = define_function(input={"n": {"type": "int"}}, handler=handler)
"""
PY_SYNC = """
from alyx_functions import define_function

def handler(input, ctx):
    if input.get("fail"):
        raise ValueError("no thanks")
    return {"sync": True}

f = define_function(handler=handler)
"""
PY_BAD_OUTPUT = (
    "from alyx_functions import define_function\nf = define_function(handler=lambda i, c: {1, 2})\n"
)
PY_BROKEN = "from alyx_functions import define_function\n\nraise RuntimeError('broken at import')\n"
PY_NONE = "x = 1\n"
NODE_OK = """import { defineFunction } from "@alyx/functions";

export default defineFunction({
  input: { n: { type: "int" } },
  async handler(input, ctx) {
    console.log("printed", 1);
    ctx.log.warn("careful", { n: 2 });
    if (input.fail) throw new TypeError("no thanks");
    return { double: input.n * 2, env: ctx.env, auth: ctx.auth };
  },
});
"""
NODE_CJS = """const { defineFunction } = require("@alyx/functions");
module.exports = defineFunction({ handler: (input) => ({ cjs: true, n: input.n }) });
"""
NODE_BROKEN = (
    'import { defineFunction } from "@alyx/functions";\n\nexport default defineFunction({ handler( });\n'
)


def command(runtime: str, file: Path) -> list[str]:
    if runtime == "python":
        return [sys.executable, "-I", str(RUNTIMES / "python" / "executor.py"), "f", str(file)]
    assert NODE is not None
    hook = RUNTIMES / "node" / "register-hook.mjs"
    return [NODE, "--import", hook.as_uri(), str(RUNTIMES / "node" / "executor.mjs"), "f", str(file)]


def exchange(runtime: str, file: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    env = {"NODE_PATH": str(RUNTIMES / "node" / "packages"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        command(runtime, file), input=lines, capture_output=True, text=True, timeout=30, env=env
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def request(request_id: str, data: dict[str, Any]) -> dict[str, Any]:
    context = {"auth": {"id": "u1"}, "env": {"A": "b"}, "alyx_url": "unix:///nowhere", "internal_token": "t"}
    return {"request_id": request_id, "function": "f", "input": data, "context": context}


@pytest.mark.parametrize(
    ("runtime", "name", "source"),
    [("python", "f.py", PY_OK), ("node", "f.mjs", NODE_OK)],
)
def test_answers_each_request_with_output_and_logs(
    tmp_path: Path, runtime: str, name: str, source: str
) -> None:
    file = tmp_path / name
    file.write_text(source)
    ready, first, second = exchange(runtime, file, [request("r1", {"n": 21}), request("r2", {"n": 1})])
    # No internal API url on the command line: no warm-up ping, so not warm.
    assert ready == {"type": "ready", "warm": False}
    assert first["request_id"] == "r1" and first["success"] is True
    assert first["output"] == {"double": 42, "env": {"A": "b"}, "auth": {"id": "u1"}}
    assert [(line["level"], line["message"]) for line in first["logs"]] == [
        ("info", "printed 1"),
        ("warn", "careful {'n': 2}" if runtime == "python" else "careful { n: 2 }"),
    ]
    assert second["output"]["double"] == 2 and len(second["logs"]) == 2


def test_python_plain_handler_and_raised_errors(tmp_path: Path) -> None:
    file = tmp_path / "f.py"
    file.write_text(PY_SYNC)
    _, ok, failed = exchange("python", file, [request("a", {}), request("b", {"fail": True})])
    assert ok["output"] == {"sync": True}
    assert failed["success"] is False
    assert failed["error"]["code"] == "FUNCTION_ERROR"
    assert failed["error"]["message"] == "ValueError: no thanks"
    assert 'raise ValueError("no thanks")' in failed["error"]["stack"]


def test_node_raised_errors_and_commonjs(tmp_path: Path) -> None:
    file = tmp_path / "f.mjs"
    file.write_text(NODE_OK)
    _, failed = exchange("node", file, [request("b", {"n": 1, "fail": True})])
    assert failed["success"] is False
    assert failed["error"]["message"] == "TypeError: no thanks"
    cjs = tmp_path / "g.js"
    cjs.write_text(NODE_CJS)
    _, ok = exchange("node", cjs, [request("c", {"n": 5})])
    assert ok["output"] == {"cjs": True, "n": 5}


def test_python_output_that_is_not_json_fails_the_invocation(tmp_path: Path) -> None:
    file = tmp_path / "f.py"
    file.write_text(PY_BAD_OUTPUT)
    _, answer = exchange("python", file, [request("a", {})])
    assert answer["success"] is False
    assert answer["error"]["message"] == "TypeError: set is not JSON serializable"


@pytest.mark.parametrize(
    ("runtime", "name", "source", "line", "message"),
    [
        ("python", "f.py", PY_BROKEN, 3, "RuntimeError: broken at import"),
        ("python", "f.py", PY_NONE, None, "defines no functions"),
        ("node", "f.mjs", NODE_BROKEN, 3, "SyntaxError: Unexpected token"),
    ],
)
def test_a_module_that_cannot_load_says_where(
    tmp_path: Path, runtime: str, name: str, source: str, line: int | None, message: str
) -> None:
    file = tmp_path / name
    file.write_text(source)
    (ready,) = exchange(runtime, file, [request("a", {})])
    assert ready["type"] == "ready"
    assert ready["error"]["file"] == str(file) and ready["error"]["line"] == line
    assert message in ready["error"]["message"]
