"""`kill -9` of a real `alyx serve` while it executes a deploy: after a restart the old
version or the new one is fully in place, never a mix, and history says which.

The server folder is made by the first-server path (`alyx init --server`); the developer's
project is another folder, bundled with `build_bundle` and sent over HTTP the way `alyx
deploy` sends it. Nothing in the product is slowed down for the test: every deploy carries
a migration that rewrites every row of a 300,000-row table (`UPDATE big SET n = n + 1`), a
new field and a changed function, so execute spends real time in its transaction, then in
the file swap and the warm-up of the new function pool. An unkilled deploy is timed first,
and the kills land at fractions of that time (before, around and after the commit point);
a version the kill left out is then shipped unkilled (and timed again), so each killed
execute carries exactly one migration. After each kill the server starts again on the same
folder and the test checks that schema.yaml, migrations/, functions/, the database's
columns, the rows (every `n` equal to the number of applied migrations: no half-run
UPDATE) and the history (no row left `swapping`) all name one version, the old or the new.

Also here: SPEC §13's `alyx deploy --history` and `--rollback VERSION` spellings run
against the same real server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.deploy import build_bundle
from tests.servers import ALYX, DEADLINE, AlyxProcess, cli_environment, free_port

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
ROWS = 300_000
FILL = f"""\
version: 2
name: fill
operations:
  - sql:
      up: >-
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {ROWS})
        INSERT INTO big (id, n) SELECT printf('%08x-0000-4000-8000-%012x', x, x), 0 FROM c
      down: "DELETE FROM big"
"""
BUMP = """\
version: {version}
name: bump_{version}
operations:
  - sql:
      up: "UPDATE big SET n = n + 1"
      down: "UPDATE big SET n = n - 1"
"""


def schema(extra_fields: int) -> str:
    fields = "".join(f"      f{i}: {{ type: string, nullable: true }}\n" for i in range(extra_fields))
    return (
        "version: 1\ncollections:\n  big:\n    fields:\n"
        "      id: { type: uuid, primary: true, default: auto }\n"
        "      n:  { type: int, default: 0 }\n" + fields + '    rules: { read: "true" }\n'
    )


@dataclass(frozen=True)
class Shipped:
    """What one bundle puts in place: the expected state of a server running it."""

    schema: str
    function: str
    migrations: tuple[str, ...]
    fields: int
    bumps: int


class Developer:
    """The developer's project folder, one version after another."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "migrations").mkdir(parents=True)
        (root / "functions").mkdir()
        self.fields = 0
        self.bumps = 0
        self.shipped: dict[str, Shipped] = {}

    def write(self, *, fill: bool = False, bump: bool = False) -> str:
        """The next version of the project; returns its bundle hash."""
        if fill:
            (self.root / "migrations" / "002_fill.yaml").write_text(FILL, encoding="utf-8")
        if bump:
            version = 3 + self.bumps
            name = f"{version:03d}_bump_{version}.yaml"
            (self.root / "migrations" / name).write_text(BUMP.format(version=version), encoding="utf-8")
            self.bumps += 1
            self.fields += 1
        text = schema(self.fields)
        (self.root / "schema.yaml").write_text(text, encoding="utf-8")
        function = f"def handler(request):\n    return {{'version': {self.bumps}}}\n"
        (self.root / "functions" / "hello.py").write_text(function, encoding="utf-8")
        sha = build_bundle(self.root).sha256
        migrations = tuple(sorted(p.name for p in (self.root / "migrations").iterdir()))
        self.shipped[sha] = Shipped(text, function, migrations, self.fields, self.bumps)
        return sha


def call(url: str, token: str, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
    request = urllib.request.Request(
        url + path, data=body, method=method, headers={"Authorization": f"Bearer {token}", **headers}
    )
    with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
        return json.loads(answer.read())


def prepare(url: str, token: str, project: Path) -> dict[str, Any]:
    bundle = build_bundle(project)
    headers = {"Content-Type": "application/gzip", "X-Bundle-SHA256": bundle.sha256}
    plan: dict[str, Any] = call(url, token, "POST", "/api/admin/deploy/prepare", bundle.data, **headers)
    return plan


def execute_body(plan: dict[str, Any]) -> bytes:
    return json.dumps({"plan_id": plan["plan_id"], "bundle_sha256": plan["bundle_sha256"]}).encode()


def deploy(url: str, token: str, project: Path) -> dict[str, Any]:
    plan = prepare(url, token, project)
    body = execute_body(plan)
    done: dict[str, Any] = call(
        url, token, "POST", "/api/admin/deploy/execute", body, **{"Content-Type": "application/json"}
    )
    return done


def first_server(tmp_path: Path, port: int) -> tuple[Path, str]:
    server = tmp_path / "server"
    args = ["init", "--server", str(server), "--admin", "ada@example.com", "--password-stdin"]
    created = CliRunner().invoke(cli, [*args, "--port", str(port)], input=PASSWORD + "\n")
    assert created.exit_code == 0, created.output
    return server, created.stdout.splitlines()[1].removeprefix("ALYX_DEPLOY_TOKEN=")


def check_one_version(server: Path, url: str, token: str, developer: Developer) -> dict[str, Any]:
    """Files, database and history agree on one shipped version; returns its history row."""
    rows = call(url, token, "GET", "/api/admin/deploy/history")["deployments"]
    assert all(r["outcome"] in ("applied", "rolled_back") for r in rows), rows
    current = next(r for r in rows if r["outcome"] == "applied")
    expected = developer.shipped[current["bundle_sha256"]]
    assert (server / "schema.yaml").read_text(encoding="utf-8") == expected.schema
    assert (server / "functions" / "hello.py").read_text(encoding="utf-8") == expected.function
    on_disk = tuple(sorted(p.name for p in (server / "migrations").iterdir()))
    assert on_disk == expected.migrations
    conn = sqlite3.connect(server / "data" / "alyx.db")
    try:
        columns = [str(r[1]) for r in conn.execute('PRAGMA table_info("big")')]
        counts = conn.execute("SELECT COUNT(*), MIN(n), MAX(n) FROM big").fetchone()
    finally:
        conn.close()
    assert columns == ["id", "n", *(f"f{i}" for i in range(expected.fields))]
    assert tuple(counts) == (ROWS, expected.bumps, expected.bumps)
    status = call(url, token, "GET", "/api/admin/deploy/status")
    assert (status["version"], status["running"]) == (current["version"], False)
    return dict(current)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (children first found, then theirs)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_during_execute(
    process: AlyxProcess, url: str, token: str, plan: dict[str, Any], delay: float
) -> str:
    """Send execute, SIGKILL the server `delay` seconds later; what the client saw."""
    seen: list[str] = []

    def send() -> None:
        try:
            call(
                url,
                token,
                "POST",
                "/api/admin/deploy/execute",
                execute_body(plan),
                **{"Content-Type": "application/json"},
            )
            seen.append("answered")
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            seen.append(f"cut: {type(e).__name__}")

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(delay)  # where the kill lands, not a claim about speed
    assert process.process is not None
    # The whole server at once, as a power cut or the OOM killer of its cgroup would: the
    # supervisor and every worker (a worker alone would finish the execute and drain).
    for pid in [*descendants(process.process.pid), process.process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.process.wait(timeout=DEADLINE)
    sender.join(timeout=DEADLINE)
    return seen[0] if seen else "no answer"


def test_kill_9_during_execute_leaves_the_old_or_the_new_version(tmp_path: Path) -> None:
    port = free_port()
    server, token = first_server(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    developer = Developer(tmp_path / "app")
    process = AlyxProcess(server, "serve", port=port, log=tmp_path / "serve.log").start()
    outcomes: list[tuple[float, str, str]] = []
    try:
        developer.write()
        deploy(url, token, developer.root)
        developer.write(fill=True)
        deploy(url, token, developer.root)
        developer.write(bump=True)
        started = time.monotonic()
        deploy(url, token, developer.root)
        took = time.monotonic() - started  # only to spread the kills over one execute
        check_one_version(server, url, token, developer)

        for fraction in (0.05, 0.3, 0.6, 0.85, 1.0, 1.3):
            before = check_one_version(server, url, token, developer)
            new = developer.write(bump=True)
            plan = prepare(url, token, developer.root)
            assert plan["bundle_sha256"] == new, plan
            seen = kill_during_execute(process, url, token, plan, took * fraction)
            process = AlyxProcess(server, "serve", port=port, log=tmp_path / f"serve-{fraction}.log").start()
            after = check_one_version(server, url, token, developer)
            if after["bundle_sha256"] == new:
                assert after["version"] == before["version"] + 1
                outcomes.append((fraction, "new", seen))
            else:
                assert after == before, (after, before)
                outcomes.append((fraction, "old", seen))
                # The old version is in force: ship the new one unkilled (and time it
                # again), so that every killed execute carries exactly one migration.
                started = time.monotonic()
                assert deploy(url, token, developer.root)["version"] == before["version"] + 1
                took = time.monotonic() - started
            assert "answered" not in seen or after["bundle_sha256"] == new, (seen, after)
    finally:
        process.stop()
    print("kills:", outcomes)


def test_the_spec_spellings_history_and_rollback_run_the_subcommands(tmp_path: Path) -> None:
    port = free_port()
    server, token = first_server(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    developer = Developer(tmp_path / "app")
    env = cli_environment(ALYX_DEPLOY_URL=url, ALYX_DEPLOY_TOKEN=token)

    def alyx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ALYX), "deploy", *args], cwd=developer.root, env=env, capture_output=True, text=True,
            timeout=DEADLINE, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    with AlyxProcess(server, "serve", port=port, log=tmp_path / "serve.log"):
        first = developer.write()
        deploy(url, token, developer.root)
        developer.write(fill=True)
        deploy(url, token, developer.root)

        history = alyx("--history")
        assert history.returncode == 0, history.stderr
        assert history.stdout == alyx("history").stdout
        assert [line.split()[0] for line in history.stdout.splitlines()] == ["v2", "v1"]

        rolled = alyx("--rollback", "1")
        assert rolled.returncode == 0, rolled.stderr
        assert " to version 1 as version 3 in " in rolled.stdout
        assert (
            call(url, token, "GET", "/api/admin/deploy/history")["deployments"][0]["bundle_sha256"] == first
        )
        assert (server / "schema.yaml").read_text(encoding="utf-8") == schema(0)
        # A destructive deploy (it drops the field n) takes a copy of the database; the
        # subcommand's --restore-backup puts it back and says so.
        developer.write(fill=True)
        (developer.root / "migrations" / "003_drop_n.yaml").write_text(
            "version: 3\nname: drop_n\noperations:\n  - drop_field: { collection: big, field: n }\n",
            encoding="utf-8",
        )
        without_n = schema(0).replace("      n:  { type: int, default: 0 }\n", "")
        (developer.root / "schema.yaml").write_text(without_n, encoding="utf-8")
        assert deploy(url, token, developer.root)["plan"]["backup"] is True
        restored = alyx("rollback", "--restore-backup")
        assert restored.returncode == 0, restored.stderr
        assert " to version 3 as version 5, database restored from backup-v4.db in " in restored.stdout
        conn = sqlite3.connect(server / "data" / "alyx.db")
        try:
            assert [str(r[1]) for r in conn.execute('PRAGMA table_info("big")')] == ["id", "n"]
        finally:
            conn.close()
        assert (server / "schema.yaml").read_text(encoding="utf-8") == schema(0)

        both = alyx("--history", "--rollback", "1")
        assert (both.returncode, both.stderr) == (1, "Error: --history and --rollback go one at a time\n")
        dry = alyx("--rollback", "1", "--dry-run")
        assert (dry.returncode, dry.stderr) == (
            1, "Error: --dry-run does not go with --rollback (alyx deploy rollback)\n"
        )  # fmt: skip
        mixed = alyx("--history", "status")
        assert (mixed.returncode, mixed.stderr) == (
            1, "Error: --history is alyx deploy history; leave out status\n"
        )  # fmt: skip
