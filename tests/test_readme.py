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

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import AlyxProcess, free_port, port_is_free

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


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[str]:
    """`alyx dev` serving a fresh blog scaffold; yields its host:port."""
    subprocess.run(
        [str(BIN / "alyx"), "init", "demo", "-t", "blog"], cwd=tmp_path, check=True, capture_output=True
    )
    port = 8090 if port_is_free(8090) else free_port()
    with AlyxProcess(tmp_path / "demo", "dev", port=port) as server:
        yield server.address


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
