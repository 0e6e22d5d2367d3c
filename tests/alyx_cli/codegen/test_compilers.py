"""Each scaffold's clients compile: `tsc --strict --noEmit` (TypeScript 5 pinned in
tests/codegen_env), `gofmt -l`, `go vet` and `go build` offline, `mypy --strict`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.alyx_cli.codegen.conftest import (
    GOLDEN_PROJECT,
    SCAFFOLDS,
    check_go,
    check_python,
    check_typescript,
    generate_project,
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
    check_typescript(src, tsc, tmp_path)


@pytest.mark.parametrize("project", PROJECTS, ids=IDS)
def test_go_is_formatted_vetted_and_builds(project: Path, go: str, tmp_path: Path, tool_cache: Path) -> None:
    generate_project(project, tmp_path, ("go",))
    check_go(tmp_path / "go", go, tool_cache)


@pytest.mark.parametrize("project", PROJECTS, ids=IDS)
def test_python_is_mypy_strict_clean(project: Path, tmp_path: Path, tool_cache: Path) -> None:
    generate_project(project, tmp_path, ("python",))
    check_python(tmp_path / "python", tool_cache)
