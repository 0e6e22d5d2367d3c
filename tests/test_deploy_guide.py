"""docs/deploy.md's configuration blocks, run for real.

- The systemd unit the page shows is what `alyx deploy systemd-unit` prints.
- The page's `tls internal` Caddyfile runs in Debian's caddy in front of a real `alyx dev`:
  its local authority issues the certificate offline, and a REST write and a realtime
  subscription (snapshot, then the delta of that write) go through it over TLS, the
  client trusting only Caddy's root certificate. Only what cannot hold in a test is
  changed: the site's name and ports, and the global options that keep Caddy offline and
  in the test's folder (TOOLING: `admin off`, `storage file_system DIR`).
- Against a first server (`alyx init --server`, then `alyx serve`): `alyx deploy --dry-run`
  changes nothing in its database file, nor does `alyx deploy` without a terminal or
  --yes; two deploys and `alyx deploy rollback` bring the first function back, and
  `history` and `status` say so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import time
from contextlib import closing
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from alyx_cli.commands.init import create_project
from alyx_cli.main import cli
from tests.alyx_server.deploy.load import first_server
from tests.servers import ALYX, DEADLINE, AlyxProcess, cli_environment, free_port
from tests.test_docs_examples import DOCS, page_examples

PASSWORD = "correct horse battery"


def guide_block(contains: str) -> str:
    """The one block of docs/deploy.md without a language (a file's text) holding `contains`."""
    hits = [ex.text for ex in page_examples(DOCS / "deploy.md") if not ex.language and contains in ex.text]
    assert len(hits) == 1, f"docs/deploy.md: expected one block with {contains!r}, found {len(hits)}"
    return hits[0]


def test_the_guide_shows_the_unit_systemd_unit_prints() -> None:
    result = CliRunner().invoke(cli, ["deploy", "systemd-unit", "-C", "/srv/alyx", "--user", "alyx"])
    assert result.exit_code == 0, result.output
    shown = guide_block("[Service]\nType=simple").replace("/opt/alyx/venv/bin/alyx", str(ALYX))
    assert result.stdout == shown


def caddyfile(folder: Path, https_port: int, app_port: int) -> Path:
    text = guide_block("tls internal")
    assert "https://alyx.internal {" in text and "reverse_proxy 127.0.0.1:8090" in text
    text = text.replace("https://alyx.internal", f"https://localhost:{https_port}")
    text = text.replace("127.0.0.1:8090", f"127.0.0.1:{app_port}")
    offline = f"{{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system {folder / 'storage'}\n"
    assert text.startswith("{\n")
    path = folder / "Caddyfile"
    path.write_text(offline + text.removeprefix("{\n"))
    return path


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, object]:
    """The next message of type `kind`, past any other (the server's greeting first)."""
    while True:
        message = await ws.receive_json(timeout=DEADLINE)
        assert message["type"] != "error", message
        if message["type"] == kind:
            return dict(message)


async def through_caddy(base: str, context: ssl.SSLContext) -> None:
    async with aiohttp.ClientSession() as session:
        account = {"email": "ada@example.com", "password": PASSWORD}
        async with session.post(f"{base}/api/auth/register", json=account, ssl=context) as answer:
            assert answer.status == 201, await answer.text()
            body = await answer.json()
        user_id, access = body["user"]["id"], body["tokens"]["access_token"]
        async with session.ws_connect(f"{base.replace('https', 'wss')}/api/realtime", ssl=context) as ws:
            query = {"collection": "posts", "filter": {"published": True}}
            await ws.send_json({"id": "s1", "type": "subscribe", "payload": query})
            snapshot = await next_of(ws, "snapshot")
            assert snapshot["id"] == "s1", snapshot
            post = {
                "title": "Through Caddy",
                "slug": "through-caddy",
                "author_id": user_id,
                "published": True,
            }
            headers = {"Authorization": f"Bearer {access}"}
            async with session.post(
                f"{base}/api/collections/posts", json=post, headers=headers, ssl=context
            ) as answer:
                assert answer.status == 201, await answer.text()
            delta = await next_of(ws, "delta")
            [inserted] = delta["payload"]["changes"]["inserts"]
            assert inserted["title"] == "Through Caddy"
        async with session.get(f"{base}/api/collections/posts", ssl=context) as answer:
            assert answer.status == 200
            assert "Through Caddy" in json.dumps(await answer.json())


def wait_for_root_certificate(storage: Path, caddy: subprocess.Popen[bytes], log: Path) -> Path:
    root = storage / "pki" / "authorities" / "local" / "root.crt"
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        assert caddy.poll() is None, f"caddy exited:\n{log.read_text()}"
        if root.is_file() and list(storage.glob("certificates/local/localhost/*.crt")):
            return root
        time.sleep(0.1)
    raise AssertionError(f"caddy issued no certificate:\n{log.read_text()}")


def test_the_guides_caddy_config_serves_rest_and_realtime_over_tls(tmp_path: Path) -> None:
    if shutil.which("caddy") is None:
        pytest.fail("Debian's caddy is missing: apt-get install caddy (make test installs it)", pytrace=False)
    project = tmp_path / "app"
    create_project("blog", project, project_name="app", force=False)
    (project / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n")
    https_port = free_port()
    with AlyxProcess(project, "dev", log=tmp_path / "alyx.log") as server:
        config = caddyfile(tmp_path, https_port, server.port)
        log = tmp_path / "caddy.log"
        env = {
            **cli_environment(),
            "HOME": str(tmp_path),
            "XDG_DATA_HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path),
        }
        with log.open("wb") as out:
            caddy = subprocess.Popen(
                ["caddy", "run", "--config", str(config), "--adapter", "caddyfile"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            root = wait_for_root_certificate(tmp_path / "storage", caddy, log)
            context = ssl.create_default_context(cafile=str(root))
            asyncio.run(_ready_then(f"https://localhost:{https_port}", context, log))
        finally:
            os.killpg(caddy.pid, signal.SIGTERM)
            caddy.wait(timeout=DEADLINE)


async def _ready_then(base: str, context: ssl.SSLContext, log: Path) -> None:
    end = time.monotonic() + DEADLINE
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{base}/health/ready", ssl=context) as answer:
                    if answer.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < end, f"no answer through caddy:\n{log.read_text()}"
            await asyncio.sleep(0.1)
    await through_caddy(base, context)


def digest(folder: Path) -> str:
    """The hash of the database's schema and rows, read through SQLite (read-only). Not its
    files' bytes: a running server checkpoints its WAL into alyx.db at any moment, and its
    background loops may commit writes that change no row. Less the webhook dispatcher's
    cursor, which follows the change log at moments of its own (webhooks/service.py)."""
    cursor_row = 'INSERT INTO "_alyx_webhook_cursor" '
    with closing(sqlite3.connect(f"file:{folder / 'data' / 'alyx.db'}?mode=ro", uri=True)) as conn:
        lines = [line for line in conn.iterdump() if not line.startswith(cursor_row)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_dry_run_changes_nothing_then_deploys_and_a_rollback(tmp_path: Path) -> None:
    port = free_port()
    server, token = first_server(tmp_path, port)
    project = tmp_path / "app"
    create_project("blog", project, project_name="app", force=False)
    env = cli_environment(ALYX_DEPLOY_URL=f"http://127.0.0.1:{port}", ALYX_DEPLOY_TOKEN=token)
    with AlyxProcess(server, "serve", port=port, log=tmp_path / "serve.log"):
        before = digest(server)
        dry = subprocess.run(
            [str(ALYX), "deploy", "--dry-run"], cwd=project, env=env, capture_output=True, text=True,
            timeout=DEADLINE, check=False,
        )  # fmt: skip
        assert dry.returncode == 0, dry.stderr
        assert "+ publish (added)" in dry.stdout and dry.stdout.endswith("dry run: nothing was changed\n")
        assert digest(server) == before
        assert not (server / "functions" / "publish.mjs").exists()
        # Without a terminal and without --yes, nothing is uploaded at all.
        refused = subprocess.run(
            [str(ALYX), "deploy"], cwd=project, env=env, capture_output=True, text=True, timeout=DEADLINE,
            check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert refused.returncode == 1
        assert refused.stderr.startswith("Error: no terminal to confirm the plan on: pass --yes")
        assert digest(server) == before
        first = (project / "functions" / "publish.mjs").read_bytes()
        deploy_and_roll_back(project, server, env, first)


def alyx(project: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(ALYX), "deploy", *args], cwd=project, env=env, capture_output=True, text=True,
        timeout=DEADLINE, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def deploy_and_roll_back(project: Path, server: Path, env: dict[str, str], first: bytes) -> None:
    """Deploy, change a function, deploy again, roll back: the first function serves again."""
    assert "deployed version 1 to " in alyx(project, env, "--yes", "-m", "one")
    (project / "functions" / "publish.mjs").write_bytes(first + b"\n// two\n")
    second = alyx(project, env, "--yes", "-m", "two")
    assert "~ publish (changed)" in second and "deployed version 2 to " in second, second
    assert (server / "functions" / "publish.mjs").read_bytes().endswith(b"// two\n")
    rolled = alyx(project, env, "rollback")
    assert rolled.startswith("rolled back http://127.0.0.1:") and " to version 1 as version 3 in " in rolled
    assert (server / "functions" / "publish.mjs").read_bytes() == first
    history = alyx(project, env, "history").splitlines()
    assert [line.split()[0] for line in history] == ["v3", "v2", "v1"], history
    assert "rollback of v1" in history[0] and history[1].endswith("two"), history
    assert alyx(project, env, "status").endswith(": version 3, idle\n")
