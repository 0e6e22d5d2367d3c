"""The data folders load from an installed wheel and from the editable checkout.

The wheel is built the way a release is (sdist first, then the wheel from the sdist) and
installed into a fresh virtualenv. Every lookup runs in its own interpreter with its
working directory outside the checkout, so the source tree cannot be imported by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# What each data folder must hold, wherever it is found.
EXPECTED = {
    "scaffolds": ("blog/schema.yaml", "basic/.gitignore", "todo/functions/clear_completed.yaml"),
    "runtimes": ("python", "node"),
    "codegen_templates": ("typescript", "go", "python"),
}
LOOKUP = "import sys, alyx_server.resources as r; print(r.data_dir(sys.argv[1]))"
SITE_PACKAGES = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def python_output(python: Path | str, code: str, *args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(python), "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def run(*command: str | Path, cwd: Path) -> None:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the Alyx wheel installed; returns its python."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, REPO, cwd=work)
    (wheel,) = dist.glob("alyx-*.whl")
    venv = work / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        wheel, cwd=work)  # fmt: skip
    return python


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_an_installed_wheel_finds_its_data_folders(
    wheel_venv: Path, folder: str, tmp_path: Path
) -> None:
    site_packages = Path(python_output(wheel_venv, SITE_PACKAGES, cwd=tmp_path))

    found = Path(python_output(wheel_venv, LOOKUP, folder, cwd=tmp_path))

    assert found == site_packages / "alyx_server" / "_data" / folder
    for entry in EXPECTED[folder]:
        assert (found / entry).exists(), entry


def test_an_installed_wheel_has_the_alyx_script(wheel_venv: Path) -> None:
    script = wheel_venv.parent / "alyx"

    assert "alyx_cli.main" in script.read_text()


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_the_editable_install_reads_the_checkout(folder: str, tmp_path: Path) -> None:
    found = Path(python_output(sys.executable, LOOKUP, folder, cwd=tmp_path))

    assert found == REPO / folder
    for entry in EXPECTED[folder]:
        assert (found / entry).exists(), entry


def test_the_editable_install_copies_no_data_into_site_packages(tmp_path: Path) -> None:
    site_packages = Path(python_output(sys.executable, SITE_PACKAGES, cwd=tmp_path))

    assert not (site_packages / "alyx_server").exists()
