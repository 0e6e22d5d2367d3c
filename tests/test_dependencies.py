"""pyproject.toml's dependencies match the imports of the code.

Every third-party module that the packages import is declared (not inherited from another
package's own dependencies, which may drop it), every declared dependency is imported
somewhere (no dead weight in every install), the tests import only what the test extra
adds, and the Python runtime that runs user functions imports the standard library alone.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterable
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OWN = {"alyx_server", "alyx_cli", "tests", "runtimes", "alyx_functions", "__future__"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(specs: Iterable[str]) -> set[str]:
    names = {_normalise(re.match(r"[A-Za-z0-9._-]+", spec).group(0)) for spec in specs}  # type: ignore[union-attr]
    return names - {"alyx"}


RUNTIME = _declared(PYPROJECT["project"]["dependencies"])
TEST_EXTRA = _declared(PYPROJECT["project"]["optional-dependencies"]["test"])


def _imports(folder: Path) -> dict[str, set[str]]:
    """Top-level module imported -> the files (relative to the checkout) importing it."""
    found: dict[str, set[str]] = {}
    # Virtual environments and node_modules (bench/.work/, tests/codegen_env/) are not ours.
    paths = [
        p
        for p in sorted(folder.rglob("*.py"))
        if not any(part.startswith(".") or part == "node_modules" for part in p.relative_to(folder).parts)
    ]
    local = {p.stem for p in paths}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top in sys.stdlib_module_names or top in OWN or top in local:
                    continue
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _distributions(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """Distribution -> files importing one of its modules, for the installed environment."""
    providers = packages_distributions()
    by_dist: dict[str, set[str]] = {}
    for module, files in imports.items():
        dists = providers.get(module)
        assert dists, f"{sorted(files)} import {module!r}, which no installed distribution provides"
        by_dist.setdefault(_normalise(dists[0]), set()).update(files)
    return by_dist


def _undeclared(by_dist: dict[str, set[str]], declared: set[str]) -> list[str]:
    return [
        f"{dist} (imported by {', '.join(sorted(files))})"
        for dist, files in sorted(by_dist.items())
        if dist not in declared
    ]


def test_every_package_import_is_a_declared_dependency() -> None:
    by_dist = _distributions(_imports(ROOT / "alyx_server") | _imports(ROOT / "alyx_cli"))
    missing = _undeclared(by_dist, RUNTIME)
    assert not missing, f"add to [project] dependencies in pyproject.toml: {missing}"


def test_every_declared_dependency_is_imported() -> None:
    imported = set(_distributions(_imports(ROOT / "alyx_server") | _imports(ROOT / "alyx_cli")))
    unused = sorted(RUNTIME - imported)
    assert not unused, f"declared in [project] dependencies of pyproject.toml but imported nowhere: {unused}"


@pytest.mark.parametrize("folder", ["tests", "bench"])
def test_tests_and_benchmarks_import_only_declared_packages(folder: str) -> None:
    by_dist = _distributions(_imports(ROOT / folder))
    missing = _undeclared(by_dist, RUNTIME | TEST_EXTRA)
    assert not missing, f"add to [project.optional-dependencies] test in pyproject.toml: {missing}"


def test_the_python_function_runtime_needs_only_the_standard_library() -> None:
    # It runs inside the sandbox's interpreter, where none of Alyx's dependencies exist.
    assert _imports(ROOT / "runtimes" / "python") == {}
