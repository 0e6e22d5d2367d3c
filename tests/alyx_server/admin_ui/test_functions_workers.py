"""Two `alyx serve` processes on one project (ALYX_WORKER=1 and 2): the functions page of
either lists the recent invocations made on both, through the peer sockets."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.schemas import NOTES
from tests.servers import ALYX, DEADLINE, AlyxProcess, cli_environment

SECRET = "f" * 40
HELLO_PY = """
from alyx_functions import define_function


async def handler(input, ctx):
    ctx.log.info("hello from", input["who"])
    return {"ok": True}


hello = define_function(handler=handler)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "functions").mkdir(parents=True)
    (root / "schema.yaml").write_text(NOTES, encoding="utf-8")
    (root / "functions" / "hello.py").write_text(HELLO_PY, encoding="utf-8")
    return root


@pytest.fixture
def servers(project: Path, tmp_path: Path) -> Iterator[tuple[list[AlyxProcess], str]]:
    running: list[AlyxProcess] = []
    token = ""
    try:
        for name in ("1", "2"):
            env = cli_environment(
                ALYX_AUTH_JWT_SECRET=SECRET,
                ALYX_WORKER=name,
                ALYX_SERVER_WORKERS="1",
                ALYX_FUNCTIONS_POOL_MIN_WARM="0",
            )
            log = tmp_path / f"worker-{name}.log"
            running.append(AlyxProcess(project, "serve", env=env, log=log).start())
            if not token:
                made = subprocess.run(
                    [str(ALYX), "admin", "create-token", "--name", "ui"],
                    cwd=project, env=env, capture_output=True, text=True, timeout=DEADLINE, check=True,
                )  # fmt: skip
                token = made.stdout.strip()
        yield running, token
    finally:
        for process in running:
            process.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE)) as session:
        yield session


async def test_recent_invocations_of_every_worker(
    servers: tuple[list[AlyxProcess], str], http: aiohttp.ClientSession
) -> None:
    (one, two), token = servers
    headers = {"Authorization": f"Bearer {token}"}
    ids: dict[str, str] = {}
    for process, who in ((one, "one"), (two, "two")):
        async with http.post(
            process.url + "/api/functions/hello", json={"input": {"who": who}}, headers=headers
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["logs"][0]["message"] == f"hello from {who}"
            ids[who] = r.headers["X-Request-ID"]
    for process in (one, two):
        async with http.get(process.url + "/_admin/functions/hello/recent.json", headers=headers) as r:
            body = await r.json()
            assert r.status == 200, body
        seen = {(i["id"], i["worker"], i["logs"][0]["message"], i["status"]) for i in body["invocations"]}
        assert seen == {
            (ids["one"], "1", "hello from one", 200),
            (ids["two"], "2", "hello from two", 200),
        }
        assert body["unreachable"] == []
    # The page itself, rendered by worker 2, lists both.
    async with http.get(two.url + "/_admin/functions/hello", headers={**headers, "Accept": "text/html"}) as r:
        assert r.status == 200
        page = await r.text()
    assert ids["one"] in page and ids["two"] in page
