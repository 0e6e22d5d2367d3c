"""`alyx serve` hands each request to the pipeline itself (api/pipeline.direct_dispatch),
not through aiohttp's middleware chain: what a client sees stays the same — the error
envelope for unknown routes and methods, `Expect: 100-continue`, the request id and
worker headers, path parameters, and the request counted in `/metrics`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.alyx_server.api.projects import write_project
from tests.servers import AlyxProcess, cli_environment

SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
    rules: { create: "true", read: "true" }
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AlyxProcess]:
    project = write_project(tmp_path / "project", SCHEMA)
    env = cli_environment(ALYX_AUTH_JWT_SECRET="s" * 40)
    with AlyxProcess(project, "serve", "--workers", "1", env=env) as running:
        yield running


async def test_served_requests_keep_the_pipeline_behaviour(server: AlyxProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.url}/api/collections/notes", json={"title": "t"}, expect100=True
        ) as answer:
            assert answer.status == 201, await answer.text()
            assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])
            assert answer.headers["X-Alyx-Worker"]
            doc = await answer.json()
        async with session.get(
            f"{server.url}/api/collections/notes/{doc['id']}", headers={"X-Request-ID": "trace-1"}
        ) as answer:
            assert answer.status == 200
            assert answer.headers["X-Request-ID"] == "trace-1"
            assert await answer.json() == doc

        async with session.get(f"{server.url}/api/nowhere") as answer:
            assert answer.status == 404
            body = await answer.json()
            assert body["code"] == "NOT_FOUND"
            assert body["request_id"] == answer.headers["X-Request-ID"]
        async with session.put(f"{server.url}/api/collections/notes") as answer:
            assert answer.status == 405
            assert (await answer.json())["code"] == "METHOD_NOT_ALLOWED"
            assert "POST" in answer.headers["Allow"]

        async with session.get(f"{server.url}/metrics") as answer:
            text = await answer.text()
    route = 'route="/api/collections/{collection}/{id}"'
    assert f'alyx_http_requests_total{{method="GET",{route},status="200"}} 1.0' in text
    assert 'route="unmatched",status="404"' in text
