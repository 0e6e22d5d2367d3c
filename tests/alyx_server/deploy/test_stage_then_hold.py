"""The deploy protocol's stage step, on `alyx serve --workers 2` (api/deploy_peers.py): a
sibling stages the schema being deployed while its gate is still open (`stage`), then
closes its gate at the executor's `hold`, which no longer carries the schema, and `swap`
serves what it staged. Here a test plays the executing worker on one worker's peer socket:
the staged schema (its posts rule reads nothing) serves on that worker only, although
schema.yaml on disk never changed.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from alyx_cli.commands.init import create_project
from alyx_server.api.peers import parse_socket_name
from alyx_server.tools.processes import run_dir
from tests.alyx_server.deploy.load import APP_CONFIG, deploy, first_server, sign_up
from tests.servers import DEADLINE, AlyxProcess, cli_environment, free_port

pytestmark = pytest.mark.slow

READ_RULE = 'read:   "doc.published || (auth != null && auth.id == doc.author_id)"'
STAGE_PATH, HOLD_PATH, SWAP_PATH = (f"/peer/v1/deploy/{step}" for step in ("stage", "hold", "swap"))
MAX_TRIES = 200  # rounds of eight new connections until both workers answered


async def _call(socket: Path, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as session,
        session.post(f"http://peer{path}", json=body) as response,
    ):
        return response.status, await response.json()


def _listed(base: str) -> dict[str, set[int]]:
    """How many published posts each worker lists to an anonymous caller. Connections are
    opened eight at a time: one at a time, on an idle server, the kernel may hand every one
    of them to the same worker."""

    def one(_: int) -> tuple[str, int]:
        url = f"{base}/api/collections/posts"
        listed = requests.get(url, headers={"Connection": "close"}, timeout=DEADLINE)
        assert listed.status_code == 200, listed.text
        return listed.headers.get("X-Alyx-Worker", "?"), len(listed.json()["docs"])

    seen: dict[str, set[int]] = {}
    with ThreadPoolExecutor(8) as pool:
        for _ in range(MAX_TRIES):
            for worker, count in pool.map(one, range(8)):
                seen.setdefault(worker, set()).add(count)
            if len(seen) == 2:
                break
    return seen


def test_a_sibling_serves_the_schema_it_staged_before_its_gate_closed(tmp_path: Path) -> None:
    port = free_port()
    server, token = first_server(tmp_path, port)
    project = tmp_path / "blog"
    create_project("blog", project, project_name="blog", force=False)
    (project / "alyx.yaml").write_text(APP_CONFIG, encoding="utf-8")
    base = f"http://127.0.0.1:{port}"
    env = cli_environment(ALYX_DEPLOY_URL=base, ALYX_DEPLOY_TOKEN=token)
    with AlyxProcess(server, "serve", "--workers", "2", port=port, log=tmp_path / "serve.log"):
        assert "deployed version 1 to " in deploy(project, env, "--yes")
        user_id, access = sign_up(base, "ann@example.com")
        post = {"title": "t", "slug": "first", "author_id": user_id, "published": True}
        headers = {"Authorization": f"Bearer {access}"}
        created = requests.post(f"{base}/api/collections/posts", json=post, headers=headers, timeout=DEADLINE)
        assert created.status_code == 201, created.text
        assert _listed(base) == {"1": {1}, "2": {1}}

        sockets = {
            parsed[0]: path
            for path in run_dir(server / "data" / "alyx.db").glob("peer-*.sock")
            if (parsed := parse_socket_name(path.name)) is not None
        }
        schema = (server / "schema.yaml").read_text(encoding="utf-8")
        assert READ_RULE in schema
        staged = schema.replace(READ_RULE, 'read:   "false"')
        hold_id = uuid.uuid4().hex

        async def play_the_executor() -> None:
            sibling = sockets["2"]
            status, body = await _call(sibling, STAGE_PATH, {"hold_id": hold_id, "schema": staged})
            assert (status, body) == (200, {"staged": True})
            assert _listed(base) == {"1": {1}, "2": {1}}  # staged only: its gate is open
            status, body = await _call(sibling, HOLD_PATH, {"hold_id": hold_id, "timeout": 5.0})
            assert (status, body) == (200, {"held": True})
            status, body = await _call(sibling, SWAP_PATH, {"hold_id": hold_id})
            assert (status, body) == (200, {"swapped": True})

        asyncio.run(play_the_executor())

        assert (server / "schema.yaml").read_text(encoding="utf-8") == schema
        assert _listed(base) == {"1": {1}, "2": {0}}
