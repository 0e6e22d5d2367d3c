"""`alyx admin`: real projects, the real CLI, then the database file reopened and checked."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import bcrypt
import pytest
from click.testing import CliRunner, Result

from alyx_cli.main import cli

SCHEMA = "version: 1\ncollections: {}\n"
PASSWORD = "correct horse battery"


def alyx(project: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["admin", *args, "-C", str(project)], input=stdin)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    (root / "schema.yaml").write_text(SCHEMA)
    (root / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n")
    return root


def rows(project: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(project / "data" / "alyx.db")) as conn:
        return conn.execute(sql).fetchall()


def test_create_with_password_stdin(project: Path) -> None:
    result = alyx(project, "create", " Root@Example.com ", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("administrator root@example.com created (id ")
    [(email, role, verified, password_hash)] = rows(
        project, "SELECT email, role, verified, password_hash FROM _alyx_users"
    )
    assert (email, role, verified) == ("root@example.com", "admin", 1)
    assert isinstance(password_hash, str) and password_hash.startswith("$2b$04$")
    assert bcrypt.checkpw(PASSWORD.encode(), password_hash.encode())


def test_create_prompts_twice_for_the_password(project: Path) -> None:
    result = alyx(project, "create", "root@example.com", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Password: " in result.stderr and "Repeat for confirmation: " in result.stderr
    assert PASSWORD not in result.output


def test_create_refuses_weak_passwords_and_existing_accounts(project: Path) -> None:
    result = alyx(project, "create", "root@example.com", "--password-stdin", stdin="short\n")
    assert result.exit_code == 1
    assert result.stderr == "Error: password must be at least 8 characters long\n"
    assert alyx(project, "create", "root@example.com", "--password-stdin", stdin=PASSWORD).exit_code == 0
    result = alyx(project, "create", "ROOT@example.com", "--password-stdin", stdin=PASSWORD)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: root@example.com already has an account; pass --promote to make it an administrator\n"
    )
    result = alyx(project, "create", "not-an-email", "--password-stdin", stdin=PASSWORD)
    assert result.stderr == "Error: email must be an email address like name@example.com\n"


def test_tokens_are_shown_once_and_stored_hashed(project: Path) -> None:
    result = alyx(project, "create-token", "--name", "ci", "--kind", "deploy", "--expires", "30d")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("alyx_deploy_") and len(secret) > 40
    assert "deploy token 'ci' (deploy) until 20" in result.stderr
    [(name, kind, token_hash, permissions, expires_at)] = rows(
        project, "SELECT name, kind, token_hash, permissions, expires_at FROM _alyx_tokens"
    )
    assert (name, kind, json.loads(str(permissions))) == ("ci", "deploy", ["deploy"])
    assert secret not in str(token_hash) and len(str(token_hash)) == 64
    assert expires_at is not None
    listed = alyx(project, "list-tokens", "--json")
    [entry] = json.loads(listed.stdout)
    assert (entry["name"], entry["kind"], entry["revoked_at"]) == ("ci", "deploy", None)
    assert secret not in listed.output
    table = alyx(project, "list-tokens").stdout
    assert "ci" in table and "live" in table


def test_token_options_are_checked(project: Path) -> None:
    result = alyx(project, "create-token", "--name", "x", "--permission", "user")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: unknown permission 'user' (did you mean users?); known: *, ")
    result = alyx(project, "create-token", "--name", "x", "--expires", "soon")
    assert result.stderr == "Error: --expires: bad duration 'soon' (use e.g. 30s, 15m, 7d)\n"
    assert alyx(project, "create-token", "--name", "x").exit_code == 0
    result = alyx(project, "create-token", "--name", "x")
    assert result.stderr == "Error: a live token named 'x' exists; revoke it or pick another name\n"


def test_revoke_token(project: Path) -> None:
    alyx(project, "create-token", "--name", "ops", "--permission", "users", "--permission", "stats")
    result = alyx(project, "revoke-token", "ops")
    assert result.exit_code == 0 and result.stdout.startswith("token 'ops' (")
    [(revoked_at,)] = rows(project, "SELECT revoked_at FROM _alyx_tokens")
    assert revoked_at is not None
    result = alyx(project, "revoke-token", "ops")
    assert result.exit_code == 1
    assert result.stderr == "Error: no live token with id or name 'ops' (see `alyx admin list-tokens`)\n"
    assert "revoked" in alyx(project, "list-tokens").stdout


def test_admin_create_as_a_process(project: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "alyx_cli",
            "admin",
            "create",
            "ops@example.com",
            "--password-stdin",
            "-C",
            str(project),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert rows(project, "SELECT role FROM _alyx_users WHERE email = 'ops@example.com'") == [("admin",)]
