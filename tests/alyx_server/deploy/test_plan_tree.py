"""What a deploy compares and replaces on the server: the files a bundle would take, by the
bundle's own rules (deploy/project_files.py), and nothing the server keeps for itself.

A "server" project runs in the real application on a loopback port (the account fixtures of
tests/alyx_server/auth/support.py); a "developer" project in another folder is bundled with
`build_bundle` and sent over HTTP as `alyx deploy` sends it. The server's `.env` files,
`node_modules/`, `__pycache__/` and what its `.alyxignore` lists must not show in a plan, and
no deploy or rollback may delete or overwrite them. Deployable alyx.yaml values holding
`${VAR}` are substituted on the server, from the server's environment.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.api.runtime import RUNTIME
from alyx_server.app import create_app
from alyx_server.deploy import read_bundle
from alyx_server.errors import ValidationError
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.deploy_support import (
    WITH_BODY,
    developer_project,
    execute,
    prepare,
    rollback,
    token,
)
from tests.alyx_server.auth.support import AppFactory, Client, auth_app, bearer, clock, smtp
from tests.alyx_server.deploy.test_bundle import GOOD, pack
from tests.schemas import NOTES
from tests.servers import free_port

__all__ = ["auth_app", "clock", "smtp"]

# Plain text stands for function sources: what a plan compares is files, not code.
HELLO = "hello, version 1\n"
HELPER = "a helper\n"

# The server's own files: none of them comes from a bundle, none may be touched by one.
SERVER_OWN = {
    "functions/.env": "API_KEY=server-secret\n",
    "functions/tools/.env.local": "TOKEN=server-only\n",
    "functions/tools/node_modules/dep/index.js": "module.exports = 'installed on the server'\n",
    "functions/__pycache__/hello.cpython-312.pyc": "bytecode\n",
    "functions/debug.log": "written by the server\n",
    "functions/local.json": '{"server": true}\n',
    "migrations/.env": "MIGRATION_SECRET=1\n",
}
SERVER_IGNORE = "*.log\nfunctions/local.json\n"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def server_project(tmp_path: Path) -> Path:
    """The folder `auth_app` serves (its schema.yaml is written by the fixture): the
    functions of the developer's project plus the server's own files."""
    project = tmp_path / "project"
    write(project, {"functions/hello.txt": HELLO, "functions/tools/index.txt": HELPER, **SERVER_OWN})
    (project / ".alyxignore").write_text(SERVER_IGNORE, encoding="utf-8")
    return project


def same_as_server(root: Path) -> Path:
    """A developer project with the server's schema and functions, and files of its own
    that never travel (its .env, node_modules, an ignored log)."""
    dev = developer_project(root, NOTES)
    write(
        dev,
        {
            "functions/hello.txt": HELLO,
            "functions/tools/index.txt": HELPER,
            "functions/.env": "API_KEY=developer-laptop\n",
            "functions/tools/node_modules/dep/index.js": "module.exports = 'dev copy'\n",
            "functions/trace.log": "dev log\n",
        },
    )
    (dev / ".alyxignore").write_text("*.log\n", encoding="utf-8")
    return dev


async def started(auth_app: AppFactory, clock: ManualClock) -> tuple[Client, str]:
    client = await auth_app()
    return client, await token(client, clock)


async def test_an_identical_project_plans_nothing_whatever_the_server_keeps_of_its_own(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    server_project(tmp_path)
    client, secret = await started(auth_app, clock)

    status, plan = await prepare(client, same_as_server(tmp_path / "dev"), secret)

    assert status == 200, plan
    assert plan["functions"] == {"added": [], "changed": [], "removed": []}
    assert (plan["schema"], plan["config"]) == ({"changes": [], "migrations": []}, {"changed": []})
    assert (plan["empty"], plan["warnings"]) == (True, [])


async def test_deploys_and_rollbacks_neither_delete_nor_overwrite_the_servers_own_files(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    project = server_project(tmp_path)
    client, secret = await started(auth_app, clock)
    own_before = {name: (project / name).read_bytes() for name in SERVER_OWN}
    dev = same_as_server(tmp_path / "dev")
    status, plan = await prepare(client, dev, secret)
    assert (status, plan["empty"]) == (200, True), plan
    assert (await execute(client, secret, plan))[0] == 200
    assert {name: (project / name).read_bytes() for name in SERVER_OWN} == own_before
    # Version 2: hello changes, tools goes, and the developer's local.json (which the
    # server's .alyxignore lists) is neither compared nor written.
    (dev / "functions" / "hello.txt").write_text(HELLO.replace("1", "2"), encoding="utf-8")
    (dev / "functions" / "tools" / "index.txt").unlink()
    (dev / "functions" / "local.json").write_text('{"developer": true}\n', encoding="utf-8")

    status, plan = await prepare(client, dev, secret)
    assert status == 200, plan
    assert plan["functions"] == {"added": [], "changed": ["hello"], "removed": ["tools"]}
    status, body = await execute(client, secret, plan)
    assert status == 200, body

    assert (project / "functions" / "hello.txt").read_text(encoding="utf-8") == HELLO.replace("1", "2")
    assert not (project / "functions" / "tools" / "index.txt").exists()
    assert {name: (project / name).read_bytes() for name in SERVER_OWN} == own_before
    # The same project again: nothing to do (the server's own files are not "removed").
    status, again = await prepare(client, dev, secret)
    assert (status, again["empty"]) == (200, True), again

    status, body = await rollback(client, secret)

    assert status == 200, body
    assert body["functions"] == {"added": ["tools"], "changed": ["hello"], "removed": []}
    assert (project / "functions" / "tools" / "index.txt").read_text(encoding="utf-8") == HELPER
    assert (project / "functions" / "hello.txt").read_text(encoding="utf-8") == HELLO
    assert {name: (project / name).read_bytes() for name in SERVER_OWN} == own_before


def test_putting_files_in_place_again_after_a_crash_half_way_gives_the_same_tree(tmp_path: Path) -> None:
    """Crash recovery runs the swap again over whatever a killed one left: a temporary file,
    some files new, some old. The result is the staged tree plus the server's own files."""
    from alyx_server.deploy.swap import sync_tree  # here: the module is new

    project = tmp_path / "server"
    write(project, {"schema.yaml": NOTES, "functions/old.txt": HELLO, "functions/keep/.env": "S=1\n"})
    staged = tmp_path / "staged"
    write(staged, {"functions/hello.txt": HELLO, "functions/lib/util.txt": HELPER})
    functions = project / "functions"
    # The state a kill during the first run may leave: one file written, one temporary file.
    write(project, {"functions/hello.txt": HELLO, "functions/lib/.util.txt.deploy-tmp": "half"})

    sync_tree(staged / "functions", functions, project, "functions")
    once = tree(functions)
    sync_tree(staged / "functions", functions, project, "functions")

    assert tree(functions) == once
    assert sorted(once) == ["hello.txt", "keep/.env", "lib/util.txt"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("functions/.env", ".env files never travel"),
        ("functions/hello/.env.production", ".env files never travel"),
        ("functions/hello/node_modules/dep/index.js", "a node_modules/ folder never travels"),
        ("functions/__pycache__/hello.cpython-312.pyc", "a __pycache__/ folder never travels"),
        ("migrations/.git/config", "a .git/ folder never travels"),
        ("functions/env/pyvenv.cfg", "a virtualenv never travels"),
    ],
)
def test_a_bundle_member_alyx_deploy_never_packs_is_refused(name: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        read_bundle(pack({**GOOD, name: b"x"}))
    assert caught.value.code == "INVALID_BUNDLE"
    assert caught.value.message == f"invalid bundle: member {name!r}: {reason} (alyx deploy leaves it out)"


async def test_a_hand_built_bundle_cannot_overwrite_the_servers_env_file(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    project = server_project(tmp_path)
    client, secret = await started(auth_app, clock)
    data = pack({"schema.yaml": NOTES.encode(), "functions/.env": b"API_KEY=attacker\n"})
    headers = {"X-Bundle-SHA256": hashlib.sha256(data).hexdigest(), **bearer(secret)}

    response = await client.post("/api/admin/deploy/prepare", data=data, headers=headers)

    body = await response.json()
    assert (response.status, body["code"]) == (400, "INVALID_BUNDLE")
    assert body["error"] == (
        "invalid bundle: member 'functions/.env': .env files never travel (alyx deploy leaves it out)"
    )
    assert (project / "functions" / ".env").read_text(encoding="utf-8") == SERVER_OWN["functions/.env"]


async def test_a_variable_in_a_deployed_value_takes_the_servers_environment(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_TEST_LOG_LEVEL", "error")
    client, secret = await started(auth_app, clock)
    dev = developer_project(tmp_path / "dev", NOTES)
    (dev / "alyx.yaml").write_text(
        "logging:\n  level: ${DEPLOY_TEST_LOG_LEVEL:-warning}\n"
        "server:\n  max_body_size: ${DEPLOY_TEST_BODY:-2MiB}\n",
        encoding="utf-8",
    )

    status, plan = await prepare(client, dev, secret)

    assert status == 200, plan
    changed = {c["key"]: c["to"] for c in plan["config"]["changed"]}
    assert changed == {"logging.level": "error", "server.max_body_size": 2 * 1024 * 1024}
    status, body = await execute(client, secret, plan)
    assert status == 200, body
    settings = client.app[RUNTIME].settings
    assert (settings.values["logging.level"], settings.values["server.max_body_size"]) == ("error", 2097152)
    # Kept as written (data/deployments/deployed.json) and substituted again at each start.
    stored = json.loads((settings.database.path.parent / "deployments" / "deployed.json").read_text())
    assert stored["logging.level"] == "${DEPLOY_TEST_LOG_LEVEL:-warning}"
    monkeypatch.setenv("DEPLOY_TEST_LOG_LEVEL", "debug")
    assert create_app(settings)[RUNTIME].settings.values["logging.level"] == "debug"


async def test_a_variable_the_server_does_not_set_is_refused_by_name(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEPLOY_TEST_UNSET", raising=False)
    client, secret = await started(auth_app, clock)
    dev = developer_project(tmp_path / "dev", WITH_BODY)
    (dev / "alyx.yaml").write_text("logging:\n  level: ${DEPLOY_TEST_UNSET}\n", encoding="utf-8")

    status, body = await prepare(client, dev, secret)

    assert (status, body["code"]) == (400, "INVALID_BUNDLE")
    assert body["error"] == (
        "invalid bundle: its alyx.yaml keys: logging.level: ${DEPLOY_TEST_UNSET} is not set "
        "in this server's environment (set it where alyx serve runs, or give a default in "
        "alyx.yaml: ${DEPLOY_TEST_UNSET:-value})"
    )


def test_alyx_deploy_needs_none_of_the_variables_alyx_yaml_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI job deploys without the server's secrets: `alyx deploy` checks alyx.yaml without
    them, and the request goes out (here to a closed port, whose refusal is the next error)."""
    for name in ("DEPLOY_TEST_SMTP_PASSWORD", "DEPLOY_TEST_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    dev = developer_project(tmp_path / "dev", NOTES)
    (dev / "alyx.yaml").write_text(
        "auth:\n  smtp:\n    password: ${DEPLOY_TEST_SMTP_PASSWORD}\n"
        "logging:\n  level: ${DEPLOY_TEST_LEVEL}\n",
        encoding="utf-8",
    )
    closed = f"http://127.0.0.1:{free_port()}"
    args = ["deploy", "--dry-run", "--url", closed, "--token", "t", "-C", str(dev)]

    result = CliRunner().invoke(cli, args, env={"ALYX_DEPLOY_URL": None, "ALYX_DEPLOY_TOKEN": None})

    assert result.exit_code == 1, result.output
    assert f"cannot reach {closed}: connection refused" in result.stderr, result.stderr
