"""`alyx init`: templates copied into a folder, refusals, and the real `alyx` process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from alyx_cli.commands.init import TEMPLATES
from alyx_cli.main import cli
from alyx_server.resources import data_dir

FUNCTIONS = {
    "basic": ("functions/hello.py", "functions/hello.yaml"),
    "blog": ("functions/publish.mjs", "functions/publish.yaml"),
    "todo": ("functions/clear_completed.py", "functions/clear_completed.yaml"),
}
COMMON_FILES = ("alyx.yaml", "schema.yaml", "README.md", ".gitignore")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_the_template_choices_are_the_scaffold_folders() -> None:
    folders = sorted(p.name for p in data_dir("scaffolds").iterdir() if p.is_dir())
    assert folders == sorted(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_creates_its_project(in_tmp: Path, template: str) -> None:
    result = run("init", "demo", "-t", template)

    assert result.exit_code == 0, result.output
    project = in_tmp / "demo"
    for name in (*COMMON_FILES, *FUNCTIONS[template]):
        assert (project / name).is_file(), name
    assert (project / "data").is_dir()
    assert (project / "migrations").is_dir()
    assert (project / "README.md").read_text().startswith("# demo\n")
    assert "project_name" not in (project / "alyx.yaml").read_text()
    assert "data/" in (project / ".gitignore").read_text().splitlines()
    assert f"Created a {template} project in demo/" in result.stdout
    assert "cd demo" in result.stdout
    assert "alyx migrate apply" in result.stdout
    assert "\x1b[" not in result.output


def test_the_current_directory_is_the_default_target(in_tmp: Path) -> None:
    result = run("init", "-t", "todo")

    assert result.exit_code == 0, result.output
    assert (in_tmp / "schema.yaml").is_file()
    assert (in_tmp / "README.md").read_text().startswith(f"# {in_tmp.name}\n")
    assert "Created a todo project in the current directory" in result.stdout
    assert "cd " not in result.stdout


def test_the_default_template_is_basic(in_tmp: Path) -> None:
    assert run("init", "demo").exit_code == 0
    assert (in_tmp / "demo" / "functions" / "hello.py").is_file()


def test_a_non_empty_folder_is_refused_without_force(in_tmp: Path) -> None:
    (in_tmp / "demo").mkdir()
    (in_tmp / "demo" / "notes.txt").write_text("mine")

    result = run("init", "demo", "-t", "blog")

    assert result.exit_code == 1
    assert result.stderr == "Error: demo/ is not empty; use -f to overwrite\n"
    assert sorted(p.name for p in (in_tmp / "demo").iterdir()) == ["notes.txt"]


def test_a_non_empty_current_directory_is_refused_without_force(in_tmp: Path) -> None:
    (in_tmp / "notes.txt").write_text("mine")

    result = run("init", ".")

    assert result.exit_code == 1
    assert result.stderr == "Error: the current directory is not empty; use -f to overwrite\n"


def test_force_overwrites_template_files_and_keeps_the_others(in_tmp: Path) -> None:
    project = in_tmp / "demo"
    project.mkdir()
    (project / "schema.yaml").write_text("old")
    (project / "notes.txt").write_text("mine")

    result = run("init", "demo", "-t", "blog", "-f")

    assert result.exit_code == 0, result.output
    template = data_dir("scaffolds") / "blog" / "schema.yaml"
    assert (project / "schema.yaml").read_text() == template.read_text()
    assert (project / "notes.txt").read_text() == "mine"
    assert (project / "functions" / "publish.mjs").is_file()


def test_an_unknown_template_lists_the_choices(in_tmp: Path) -> None:
    result = run("init", "demo", "-t", "shop")

    assert result.exit_code == 2
    assert "'shop' is not one of 'basic', 'blog', 'todo'" in result.stderr
    assert not (in_tmp / "demo").exists()


@pytest.mark.parametrize("name", ["my app", "-demo", "../demo", "a/b", ".hidden"])
def test_an_invalid_name_is_refused(in_tmp: Path, name: str) -> None:
    result = run("init", "--", name)

    assert result.exit_code == 2
    assert f"{name!r} is not a valid project name" in result.stderr
    assert "starting with a letter or digit" in result.stderr
    assert list(in_tmp.iterdir()) == []


def test_a_file_in_the_way_is_refused(in_tmp: Path) -> None:
    (in_tmp / "demo").write_text("a file")

    result = run("init", "demo", "-f")

    assert result.exit_code == 1
    assert result.stderr == "Error: demo exists and is not a directory\n"


def test_an_os_error_is_one_line_without_traceback(in_tmp: Path) -> None:
    (in_tmp / "demo" / "schema.yaml").mkdir(parents=True)

    result = run("init", "demo", "-f")

    assert result.exit_code == 1
    assert result.stderr == "Error: Is a directory: demo/schema.yaml\n"


def test_help_shows_an_example() -> None:
    result = run("init", "--help")

    assert result.exit_code == 0
    assert "alyx init myapp -t blog" in result.stdout
    assert "[basic|blog|todo]" in result.stdout


def test_the_alyx_process_creates_and_refuses(tmp_path: Path) -> None:
    """The real entry point, in its own process: `python -m alyx_cli`."""
    command = [sys.executable, "-m", "alyx_cli", "init", "demo", "-t", "todo"]

    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)

    assert first.returncode == 0, first.stderr
    assert "cd demo" in first.stdout
    schema = yaml.safe_load((tmp_path / "demo" / "schema.yaml").read_text())
    assert sorted(schema["collections"]) == ["lists", "todos"]
    assert second.returncode == 1
    assert second.stderr == "Error: demo/ is not empty; use -f to overwrite\n"
