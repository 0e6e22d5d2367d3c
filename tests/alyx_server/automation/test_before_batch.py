"""Before-write hooks on `/api/batch`: each create and update goes through them, all or nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.alyx_server.automation.support import make_app, rows, write_project
from tests.alyx_server.automation.test_before_and_schedules import GUARD_PY, GUARD_YAML

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


async def _batch(client: TestClient[Any, Any], *operations: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post("/api/batch", json={"operations": list(operations)})
    return response.status, await response.json()


async def test_batch_writes_go_through_before_hooks_all_or_nothing(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_project(tmp_path / "p", {"guard.py": GUARD_PY, "guard.yaml": GUARD_YAML})
    client = await aiohttp_client(make_app(root))
    response = await client.post("/api/collections/posts", json={"title": "locked"})
    locked = (await response.json())["id"]
    response = await client.post("/api/collections/posts", json={"title": "open"})
    opened = (await response.json())["id"]

    # Creates and updates are changed by the hook as through the REST routes.
    status, body = await _batch(
        client,
        {"method": "POST", "collection": "posts", "body": {"title": "  first "}},
        {"method": "PATCH", "collection": "posts", "id": opened, "body": {"title": " again"}},
        {"method": "GET", "collection": "posts", "id": opened},
    )
    assert status == 200, body
    assert [r["body"]["title"] for r in body["results"]] == ["First", "Again", "Again"]

    # A refusal of any operation fails the batch with its status, naming the index.
    status, body = await _batch(
        client,
        {"method": "POST", "collection": "posts", "body": {"title": "kept?"}},
        {"method": "DELETE", "collection": "posts", "id": opened},
        {"method": "POST", "collection": "posts", "body": {"title": "forbidden fruit"}},
    )
    assert status == 403, body
    assert body["error"] == "operation 2 failed, nothing was written: no forbidden titles"
    assert body["details"] == [{"index": 2, "code": "FORBIDDEN", "message": "no forbidden titles"}]

    status, body = await _batch(
        client,
        {"method": "POST", "collection": "posts", "body": {"title": "kept?"}},
        {"method": "PATCH", "collection": "posts", "id": locked, "body": {"title": "unlocked"}},
    )
    assert status == 403, body
    assert body["details"][0]["index"] == 1
    assert body["details"][0]["message"] == "this post is locked"

    status, body = await _batch(client, {"method": "POST", "collection": "posts", "body": {"title": ""}})
    assert status == 400, body
    assert body["code"] == "VALIDATION_ERROR"
    assert body["error"] == "operation 0 failed, nothing was written: a title is required"

    titles = sorted(r[0] for r in rows(root, "SELECT title FROM posts"))
    assert titles == ["Again", "First", "Locked"]
