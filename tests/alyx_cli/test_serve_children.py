"""`alyx serve` reaps its own function workers even when started with SIGCHLD ignored.

An ignored SIGCHLD is inherited across exec (some supervisors and shells leave it so). The
kernel then reaped the workers itself: each stop logged `Unknown child process pid N, will
report returncode 255`, and a crashed worker was reported with status 255 instead of its
own. The server is run as a real process started that way.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.alyx_cli.test_serve import SCHEMA, SECRET
from tests.alyx_server.functions.sources import MISBEHAVE_PY, MISBEHAVE_YAML
from tests.servers import cli_environment as environment
from tests.servers import free_port


def ignore_sigchld() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def call(url: str, mode: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{url}/api/functions/misbehave",
        data=json.dumps({"input": {"mode": mode}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_workers_are_reaped_by_the_server_with_their_real_status(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "misbehave.py").write_text(MISBEHAVE_PY, encoding="utf-8")
    (tmp_path / "functions" / "misbehave.yaml").write_text(MISBEHAVE_YAML, encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "alyx_cli", "serve", "-p", str(port)],
        cwd=tmp_path, env=environment(ALYX_AUTH_JWT_SECRET=SECRET), preexec_fn=ignore_sigchld,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "serving" in banner, process.communicate(timeout=30)[1]
        url = f"http://127.0.0.1:{port}"

        crashed = call(url, "crash")
        fine = call(url, "ok")
    finally:
        process.send_signal(signal.SIGTERM)
        _out, stderr = process.communicate(timeout=30)

    assert crashed[0] == 500, crashed
    assert crashed[1]["error"] == "function misbehave crashed (exit status 3); a fresh worker takes its place"
    assert fine[0] == 200 and fine[1]["output"]["ok"] is True, fine
    assert process.returncode == 0, stderr
    assert "Unknown child process" not in stderr
    assert "returncode 255" not in stderr
