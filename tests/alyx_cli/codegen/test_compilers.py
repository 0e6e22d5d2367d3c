"""Each scaffold's clients compile: `tsc --strict --noEmit` (TypeScript 5 pinned in
tests/codegen_env), `gofmt -l`, `go vet` and `go build` offline, `mypy --strict`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.alyx_cli.codegen.conftest import (
    GOLDEN_PROJECT,
    SCAFFOLDS,
    generate_project,
    prepare_go_module,
    require,
    run,
)

PROJECTS = [SCAFFOLDS / "basic", SCAFFOLDS / "blog", SCAFFOLDS / "todo", GOLDEN_PROJECT]
IDS = ["basic", "blog", "todo", "golden"]
USAGE = Path(__file__).parent / "programs" / "usage.ts"


@pytest.mark.parametrize("project", PROJECTS, ids=IDS)
def test_typescript_compiles_strict(project: Path, tsc: Path, tmp_path: Path) -> None:
    generate_project(project, tmp_path, ("typescript",))
    src = tmp_path / "typescript"
    if project.name == "blog":
        shutil.copy(USAGE, src / "usage.ts")  # @ts-expect-error lines prove the types bite
    node = require("node", "apt-get install -y nodejs")
    run(
        [
            node,
            str(tsc),
            "--strict",
            "--noEmit",
            "--target",
            "ES2022",
            "--module",
            "ES2022",
            "--moduleResolution",
            "bundler",
            "--lib",
            "ES2022,DOM",
            *sorted(str(p) for p in src.glob("*.ts")),
        ],
        tmp_path,  # outside tests/codegen_env: no Node types, as in a browser
    )


@pytest.mark.parametrize("project", PROJECTS, ids=IDS)
def test_go_is_formatted_vetted_and_builds(project: Path, go: str, tmp_path: Path, tool_cache: Path) -> None:
    generate_project(project, tmp_path, ("go",))
    module = tmp_path / "go"
    gofmt = str(Path(go).resolve().parent / "gofmt")
    assert run([gofmt, "-l", "."], module) == "", "generated Go is not gofmt-clean"
    env = prepare_go_module(module, tool_cache, go)
    run([go, "vet", "./..."], module, env)
    run([go, "build", "./..."], module, env)


@pytest.mark.parametrize("project", PROJECTS, ids=IDS)
def test_python_is_mypy_strict_clean(project: Path, tmp_path: Path, tool_cache: Path) -> None:
    generate_project(project, tmp_path, ("python",))
    cache = tool_cache / "mypy"
    run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(cache),
            "--python-version",
            "3.11",
            "alyx_client",
        ],
        tmp_path / "python",
    )
