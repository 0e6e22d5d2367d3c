"""The README's fast selection leaves out what needs Docker, a toolchain or much time, and
the hypothesis profile is `ci` unless HYPOTHESIS_PROFILE says otherwise.

The selections are asked of pytest itself (`--collect-only` in a process of its own), with
the marker expression the README gives.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from tests.conftest import _FILE_MARKERS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
FAST = "not slow and not docker and not toolchain and not property"


def collected(expression: str) -> list[str]:
    """The test ids pytest selects with `-m expression`."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", expression],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_the_readme_gives_the_fast_selection() -> None:
    assert f"""make test PYTEST_ARGS='-n 2 -m "{FAST}"'""" in README.read_text(encoding="utf-8")


def test_the_fast_selection_leaves_out_docker_toolchains_fuzzing_and_properties() -> None:
    fast = collected(FAST)
    assert len(fast) > 1000
    left_in = [
        test
        for test in fast
        if re.search(
            r"test_docker_backend|\[docker-|test_compilers|test_build_commands|codegen/test_live_|test_schemathesis"
            r"|test_packaging|test_diff_property|test_model\.py|test_readme\.py",
            test,
        )
    ]
    assert left_in == []


def test_each_marker_selects_its_tests() -> None:
    docker = collected("docker")
    assert any("test_docker_backend.py" in t for t in docker)
    assert any("test_sandbox_files.py" in t and "[docker-" in t for t in docker)
    assert not any("[process-" in t for t in docker)
    toolchain = collected("toolchain")
    for name in ("test_compilers.py", "test_build_commands.py", "test_live_go.py", "test_live_typescript.py"):
        assert any(name in t for t in toolchain), name
    # @given tests are found without a list of files.
    assert any("test_diff_property.py" in t for t in collected("property"))


def test_each_file_or_test_given_markers_exists() -> None:
    """A renamed file or test would otherwise rejoin the fast selection unnoticed."""
    marked = collected("slow or docker or toolchain or property")
    missing = []
    for where in _FILE_MARKERS:
        path, _, name = where.partition("::")
        if not any(
            test.startswith(f"tests/{path}::") and (not name or test.split("::")[-1].split("[")[0] == name)
            for test in marked
        ):
            missing.append(where)
    assert missing == []


def test_the_hypothesis_profile_is_ci_unless_dev_is_asked_for() -> None:
    expected = 200 if os.environ.get("HYPOTHESIS_PROFILE") == "dev" else 40
    assert settings.default.max_examples == expected
