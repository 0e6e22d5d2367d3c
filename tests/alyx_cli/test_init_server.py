"""`alyx init --server DIR`: from an empty folder to a server `alyx deploy` can reach.

The command runs for real; then `alyx serve` starts in the folder as a real process (no
JWT secret in the environment: it reads data/.jwt_secret) and answers the deploy token
it printed and the administrator it created.
"""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request
from pathlib import Path

from click.testing import CliRunner, Result

from alyx_cli.main import cli
from tests.servers import AlyxProcess, free_port

PASSWORD = "correct horse battery"


def init_server(folder: Path, *args: str, stdin: str = PASSWORD + "\n") -> Result:
    return CliRunner().invoke(cli, ["init", "--server", str(folder), *args], input=stdin)


def call(
    url: str, token: str | None = None, body: dict[str, object] | None = None
) -> tuple[int, dict[str, object]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_init_server_prints_the_ci_lines_and_serve_accepts_them(tmp_path: Path) -> None:
    folder = tmp_path / "srv" / "alyx"
    port = free_port()
    args = ("--admin", "Ada@Example.com", "--password-stdin", "--port", str(port))
    result = init_server(folder, *args, "--url", "https://api.example.com")
    assert result.exit_code == 0, result.output
    url_line, token_line = result.stdout.splitlines()
    assert url_line == "ALYX_DEPLOY_URL=https://api.example.com"
    assert token_line.startswith("ALYX_DEPLOY_TOKEN=") and len(token_line) > len("ALYX_DEPLOY_TOKEN=") + 20
    token = token_line.removeprefix("ALYX_DEPLOY_TOKEN=")
    assert f"Created an Alyx server in {folder}/ with administrator ada@example.com." in result.stderr
    assert PASSWORD not in result.output
    secret = folder / "data" / ".jwt_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text().strip()) >= 32
    assert sorted(p.name for p in folder.iterdir()) == [
        "alyx.yaml",
        "data",
        "functions",
        "migrations",
        "schema.yaml",
    ]

    with AlyxProcess(folder, "serve", port=port, log=tmp_path / "serve.log") as server:
        status, body = call(f"{server.url}/api/admin/deploy/status", token)
        assert status == 200, body
        status, body = call(f"{server.url}/api/admin/deploy/status", "not-a-token")
        assert status == 401, body
        status, body = call(
            f"{server.url}/api/auth/login", body={"email": "ada@example.com", "password": PASSWORD}
        )
        assert status == 200, body
        user = body["user"]
        assert isinstance(user, dict) and user["role"] == "admin"


def test_init_server_refuses_a_folder_that_is_not_empty_and_a_weak_password(tmp_path: Path) -> None:
    folder = tmp_path / "srv"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    result = init_server(folder, "--admin", "ada@example.com", "--password-stdin")
    assert result.exit_code == 1
    assert (
        result.stderr == f"Error: {folder} exists and is not an empty folder; pick a new one for the server\n"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    result = init_server(
        tmp_path / "other", "--admin", "ada@example.com", "--password-stdin", stdin="short\n"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "password" in result.stderr
    assert not (tmp_path / "other").exists()
