"""A fresh clone gets to green with the README's two commands, and carries what it needs.

- `.ci/run` runs nothing but `make lint` and `make test`: whatever CI needs, a user's
  `make test` does too.
- No file under tests/ reads the folder beside the repository (`../shared`): the test
  data the suite uses is in the repository.
- tests/env/fresh_clone.sh clones HEAD into an empty folder, times a cold `make run` until
  the demo answers /health (60 s at most), checks that it says where `alyx` is and that it
  installs no test tools, then runs `make test` on a small part of the suite. It installs
  a whole virtual environment twice (about a minute with pip's cache warm), so it is
  marked slow.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import cli_environment

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "env" / "fresh_clone.sh"


def test_ci_runs_only_make_lint_and_make_test() -> None:
    lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    code = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    commands = [line for line in code if not re.match(r"(set |cd |export |status=|echo |exit )", line)]
    assert commands == ["make lint || status=1", "make test || status=1"]


def test_nothing_under_tests_reads_the_folder_beside_the_repository() -> None:
    readers = []
    for path in sorted((REPO / "tests").rglob("*")):
        if not path.is_file() or "node_modules" in path.parts or path.suffix in {".png", ".db", ".pyc"}:
            continue
        if path in {SCRIPT, Path(__file__)}:
            continue  # these two name ../shared only to check that it is absent
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"\.\./shared|parents?\[\d\]\s*/\s*[\"']shared|/work/shared", text):
            readers.append(str(path.relative_to(REPO)))
    assert readers == [], f"these read ../shared; copy what they need into tests/: {readers}"


@pytest.mark.slow
def test_a_fresh_clone_runs_and_tests_with_the_readme_commands() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    done = subprocess.run(
        ["bash", str(SCRIPT), "-k", "test_the_section_has_the_tour", "-q"],
        capture_output=True,
        text=True,
        env=cli_environment(),
        timeout=1200,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "ok: make run served /health" in report
    assert "ok: make run says where the alyx command is" in report
    assert "fresh-clone: all checks passed" in report
