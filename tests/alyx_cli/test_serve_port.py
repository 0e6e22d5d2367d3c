"""A port in use stops `alyx serve` / `alyx dev` with one line, before anything changes.

The port is really taken (a listening socket in this process); the command runs as a
real subprocess. The line names where the port came from (flag, ALYX_SERVER_PORT,
server.port in alyx.yaml) and how to choose another; the database is left as it was.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.alyx_cli.test_serve import SCHEMA, SECRET, environment

NEW_COLLECTION = """\
  tags:
    fields:
      id:   { type: uuid, primary: true, default: auto }
      name: { type: string }
"""


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    """A project whose database is migrated, with a new collection waiting in schema.yaml."""
    (tmp_path / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    applied = subprocess.run(
        [sys.executable, "-m", "alyx_cli", "migrate", "apply"],
        cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    (tmp_path / "schema.yaml").write_text(SCHEMA + NEW_COLLECTION, encoding="utf-8")
    return tmp_path


def alyx(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alyx_cli", *args],
        cwd=project, env=environment(**env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def database_state(project: Path) -> tuple[list[str], list[tuple[object, ...]]]:
    with closing(sqlite3.connect(project / "data" / "alyx.db")) as conn:
        tables = [str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        history = conn.execute("SELECT * FROM _alyx_migrations ORDER BY id").fetchall()
        return sorted(tables), history


def fix(command: str, port: int) -> str:
    other = 8091 if port == 8090 else 8090
    return (
        f"stop the program listening there, or choose another port with `alyx {command} -p {other}`, "
        f"ALYX_SERVER_PORT={other} or server.port in alyx.yaml"
    )


@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_port_from_the_flag_is_named_and_nothing_is_migrated(
    migrated: Path, taken_port: int, command: str
) -> None:
    before = database_state(migrated)

    result = alyx(migrated, command, "-p", str(taken_port), ALYX_AUTH_JWT_SECRET=SECRET)

    assert result.returncode == 1
    assert result.stderr == (
        f"Error: port {taken_port} (from -p/--port) is already in use on 127.0.0.1: "
        f"{fix(command, taken_port)}\n"
    )
    assert result.stdout == ""
    assert database_state(migrated) == before
    assert "tags" not in before[0]


def test_a_port_from_the_environment_is_named(migrated: Path, taken_port: int) -> None:
    before = database_state(migrated)

    result = alyx(migrated, "serve", ALYX_AUTH_JWT_SECRET=SECRET, ALYX_SERVER_PORT=str(taken_port))

    assert result.returncode == 1
    assert result.stderr == (
        f"Error: port {taken_port} (from ALYX_SERVER_PORT) is already in use on 127.0.0.1: "
        f"{fix('serve', taken_port)}\n"
    )
    assert database_state(migrated) == before


def test_a_port_from_alyx_yaml_is_named_with_its_line(tmp_path: Path, taken_port: int) -> None:
    (tmp_path / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    (tmp_path / "alyx.yaml").write_text(f"# settings\nserver:\n  port: {taken_port}\n", encoding="utf-8")

    result = alyx(tmp_path, "dev")

    assert result.returncode == 1
    assert result.stderr == (
        f"Error: port {taken_port} (from server.port in alyx.yaml:3) is already in use on 127.0.0.1: "
        f"{fix('dev', taken_port)}\n"
    )
    assert not (tmp_path / "data" / "alyx.db").exists()
