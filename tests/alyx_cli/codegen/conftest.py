"""Shared pieces of the codegen tests: the toolchains, generating a project's clients,
and a real `alyx dev` server for the live round trips.

Node (with the TypeScript compiler pinned in tests/codegen_env) and Go are required, not
optional: a missing toolchain fails the test with what to install (`make test` installs
them), so a green run always means the generated clients were compiled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alyx_cli.codegen import generate
from alyx_server.functions import Defaults, discover_functions
from alyx_server.schema.loader import load_schema
from tests.servers import AlyxProcess, cli_environment

REPO = Path(__file__).resolve().parents[3]
CODEGEN_ENV = REPO / "tests" / "codegen_env"
SCAFFOLDS = REPO / "scaffolds"
GORILLA = Path("/usr/share/gocode/src/github.com/gorilla/websocket")
LANGUAGES = ("typescript", "go", "python")
GOLDEN_PROJECT = Path(__file__).parent / "golden" / "project"


def require(tool: str, hint: str) -> str:
    """The path of `tool`, or a failure naming what to install."""
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is not installed: {hint} (make test installs it)", pytrace=False)
    return found


@pytest.fixture(scope="session")
def tsc() -> Path:
    """The pinned TypeScript compiler; `npm ci` runs first when node_modules is missing."""
    require("node", "apt-get install -y nodejs npm")
    npm = require("npm", "apt-get install -y npm")
    compiler = CODEGEN_ENV / "node_modules" / "typescript" / "bin" / "tsc"
    if not compiler.is_file():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=CODEGEN_ENV, capture_output=True, text=True
        )
        assert done.returncode == 0, f"npm ci in tests/codegen_env failed:\n{done.stdout}\n{done.stderr}"
    return compiler


@pytest.fixture(scope="session")
def tool_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build caches (Go, mypy) shared by the session's tests: each build reuses the last."""
    return tmp_path_factory.mktemp("tool-cache")


@pytest.fixture(scope="session")
def go() -> str:
    found = require("go", "apt-get install -y golang-go golang-github-gorilla-websocket-dev")
    if not GORILLA.is_dir():
        pytest.fail(
            f"{GORILLA} is missing: apt-get install -y golang-github-gorilla-websocket-dev", pytrace=False
        )
    return found


def go_env(home: Path) -> dict[str, str]:
    """Offline module builds: no proxy, no checksum database, caches under `home`."""
    env = dict(os.environ)
    env.update(
        GOPROXY="off",
        GOFLAGS="-mod=mod",
        GONOSUMDB="*",
        GOSUMDB="off",
        GOTOOLCHAIN="local",
        GOCACHE=str(home / "gocache"),
        GOPATH=str(home / "gopath"),
        CGO_ENABLED="0",
    )
    return env


def prepare_go_module(folder: Path, home: Path, go_bin: str) -> dict[str, str]:
    """Point the generated module's gorilla/websocket at Debian's copy (test-only)."""
    env = go_env(home)
    run([go_bin, "mod", "edit", f"-replace=github.com/gorilla/websocket={GORILLA}"], folder, env)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def generate_project(project: Path, output: Path, languages: tuple[str, ...] = LANGUAGES) -> None:
    schema = load_schema(project / "schema.yaml")
    found = discover_functions(project / "functions", Defaults(), root=project)
    assert not found.problems, found.problems
    generate(schema, found.functions, languages, output)


def check_typescript(src: Path, tsc: Path, cwd: Path) -> None:
    """`tsc --strict --noEmit` over the `.ts` files in `src`, run from `cwd` (outside
    tests/codegen_env: no Node types, as in a browser)."""
    node = require("node", "apt-get install -y nodejs")
    flags = ["--strict", "--noEmit", "--target", "ES2022", "--module", "ES2022"]
    flags += ["--moduleResolution", "bundler", "--lib", "ES2022,DOM"]
    run([node, str(tsc), *flags, *sorted(str(p) for p in src.glob("*.ts"))], cwd)


def check_go(module: Path, go_bin: str, tool_cache: Path) -> None:
    """The generated Go module is gofmt-clean, vets and builds offline."""
    gofmt = str(Path(go_bin).resolve().parent / "gofmt")
    assert run([gofmt, "-l", "."], module) == "", "generated Go is not gofmt-clean"
    env = prepare_go_module(module, tool_cache, go_bin)
    run([go_bin, "vet", "./..."], module, env)
    run([go_bin, "build", "./..."], module, env)


def check_python(folder: Path, tool_cache: Path) -> None:
    """`mypy --strict` over the generated `alyx_client` package in `folder`."""
    cache = str(tool_cache / "mypy")
    mypy = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", cache]
    run([*mypy, "--python-version", "3.11", "alyx_client"], folder)


# -- a live server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveServer:
    url: str
    project: Path


LIVE_SCHEMA = SCAFFOLDS / "blog"


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`alyx dev` on the blog scaffold plus a Python function `hello`, on a free port.

    Registration is not rate-limited here: each language's round trip registers two users.
    """
    project = tmp_path_factory.mktemp("live") / "blog"
    shutil.copytree(LIVE_SCHEMA, project)
    (project / "alyx.yaml").write_text("dev:\n  generate:\n    languages: [typescript, go, python]\n")
    shutil.copy(SCAFFOLDS / "basic" / "functions" / "hello.py", project / "functions" / "hello.py")
    shutil.copy(SCAFFOLDS / "basic" / "functions" / "hello.yaml", project / "functions" / "hello.yaml")
    env = cli_environment(
        ALYX_AUTH_RATE_LIMIT_REGISTER="off", ALYX_AUTH_RATE_LIMIT_LOGIN="off", ALYX_LOGGING_LEVEL="warning"
    )
    with AlyxProcess(project, "dev", env=env, log=project / "server.log") as server:
        yield LiveServer(server.url, project)


def round_trip_expectations(result: dict[str, object]) -> None:
    """What every language's round trip must have observed (see the programs' steps)."""
    assert result["registered"] is True
    assert result["listed"] == ["p-b"], result
    assert result["updated_body"] == "edited"
    assert result["snapshot"] == ["p-a", "p-b"]
    assert result["after_insert"] == ["p-0", "p-a"], result
    assert result["inserted"] == ["p-0"], result
    assert result["after_delete"] == ["p-a", "p-b"], result
    assert result["deleted"] is True, result
    assert result["function"] == "Hello, Ada!"
    assert result["forbidden_code"] == "FORBIDDEN", result
    assert result["forbidden_status"] == 403
    assert result["forbidden_message"] == "the delete rule of posts refuses this request", result


def parse_result(stdout: str) -> dict[str, object]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result line in:\n{stdout}"
    parsed: dict[str, object] = json.loads(lines[-1])
    return parsed
