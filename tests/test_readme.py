"""The README's "Try the API" section, run exactly as written against a real `alyx dev`.

The test scaffolds the blog template (what `make run` serves) in a temporary folder,
starts `alyx dev` as a subprocess and feeds the section's ```sh blocks, verbatim and in
order, to one bash process, so the shell variables of one block reach the next; the
virtual environment's `bin` comes first on PATH. Between blocks it only echoes a marker,
to tell each block's output apart.

The README says port 8090. When 8090 is busy on the machine running the tests, the server
starts on a free port instead and the one string `127.0.0.1:8090` in the blocks is
replaced by the address used; nothing else in the blocks is changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Try the API"
ADDRESS = "127.0.0.1:8090"
MARKER = "=== next block ==="
BIN = Path(sys.executable).parent


def tour_blocks() -> list[str]:
    """The ```sh blocks of the README's "Try the API" section, verbatim."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise AssertionError(f"alyx dev exited with {process.returncode}:\n{log.read_text()}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError),
            urllib.request.urlopen(f"{url}/health/ready", timeout=5) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"alyx dev did not get ready:\n{log.read_text()}")


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[str]:
    """`alyx dev` serving a fresh blog scaffold; yields its host:port."""
    subprocess.run(
        [str(BIN / "alyx"), "init", "demo", "-t", "blog"], cwd=tmp_path, check=True, capture_output=True
    )
    port = 8090 if _free(8090) else _any_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "alyx"), "dev", "--no-watch", "-p", str(port)],
            cwd=tmp_path / "demo",
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process, log)
        yield f"127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def run_blocks(blocks: list[str], address: str, cwd: Path) -> list[str]:
    """Each block's standard output, from one bash process running them in order."""
    script = f"\necho '{MARKER}'\n".join(block.replace(ADDRESS, address) for block in blocks)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash"], input=script, capture_output=True, text=True, cwd=cwd, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    outputs = done.stdout.split(f"{MARKER}\n")
    assert len(outputs) == len(blocks), done.stdout
    return outputs


def _json_lines(output: str) -> list[Any]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_the_section_has_the_tour() -> None:
    blocks = tour_blocks()
    assert len(blocks) == 5
    joined = "\n".join(blocks)
    for route in ["/health", "/api/auth/register", "/api/auth/me", "/api/collections/posts"]:
        assert f"http://{ADDRESS}{route}" in joined


def test_the_readme_tour_runs_as_written(demo_server: str, tmp_path: Path) -> None:
    health, register, create, listing, lifecycle = run_blocks(tour_blocks(), demo_server, tmp_path)

    assert json.loads(health)["status"] == "ok"

    user_id = register.strip().removeprefix("signed in as ")
    assert re.fullmatch(r"[0-9a-f-]{36}", user_id), register

    post = json.loads(create.splitlines()[0])
    assert post["title"] == "Hello, Alyx" and post["slug"] == "hello-alyx"
    assert post["author_id"] == user_id and post["published"] is True
    assert post["body"] == "" and post["created_at"].endswith("Z")

    listed = json.loads(listing)
    assert listed["docs"] == [{"id": post["id"], "title": "Hello, Alyx", "slug": "hello-alyx"}]
    assert listed["total"] == 1

    got, updated, after = _json_lines(lifecycle)
    assert got == post
    assert updated["title"] == "Hello again" and updated["id"] == post["id"]
    assert "204" in lifecycle.splitlines()
    assert after["code"] == "DOCUMENT_NOT_FOUND"
    assert after["error"] == f"no document {post['id']!r} in posts"
