"""POST /api/batch: all or nothing, results in order, the failing operation named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.alyx_server.api.projects import table_checksum

UUID_0 = "00000000-0000-4000-8000-000000000000"


async def test_operations_apply_in_order(client: TestClient[Any, Any]) -> None:
    author = await (await client.post("/api/collections/authors", json={"name": "a"})).json()
    ops = [
        {"method": "POST", "collection": "posts", "body": {"id": UUID_0, "title": "one"}},
        {"method": "PATCH", "collection": "posts", "id": UUID_0, "body": {"n": 5}},
        {"method": "GET", "collection": "posts", "id": UUID_0},
        {"method": "delete", "collection": "authors", "id": author["id"]},
    ]
    response = await client.post("/api/batch", json={"operations": ops})
    assert response.status == 200, await response.text()
    results = (await response.json())["results"]
    assert [r["status"] for r in results] == [201, 200, 200, 204]
    assert results[1]["body"]["n"] == 5
    assert results[2]["body"]["title"] == "one"
    assert results[3]["body"] is None
    assert (await client.get(f"/api/collections/authors/{author['id']}")).status == 404


async def test_a_failure_rolls_everything_back(client: TestClient[Any, Any], project: Path) -> None:
    await client.post("/api/collections/authors", json={"name": "a", "email": "a@example.com"})
    before = table_checksum(project / "data" / "alyx.db")
    ops = [
        {"method": "POST", "collection": "posts", "body": {"title": "kept?"}},
        {"method": "POST", "collection": "authors", "body": {"name": "b"}},
        {"method": "POST", "collection": "authors", "body": {"name": "c", "email": "a@example.com"}},
        {"method": "POST", "collection": "posts", "body": {"title": "never run"}},
    ]
    response = await client.post("/api/batch", json={"operations": ops})
    body = await response.json()
    assert response.status == 409
    assert body["code"] == "UNIQUE_VIOLATION"
    assert body["error"].startswith("operation 2 failed, nothing was written: ")
    assert body["details"][0]["index"] == 2
    assert body["details"][0]["code"] == "UNIQUE_VIOLATION"
    assert "email" in body["details"][0]["message"]
    assert table_checksum(project / "data" / "alyx.db") == before


async def test_a_missing_document_fails_the_batch(client: TestClient[Any, Any], project: Path) -> None:
    before = table_checksum(project / "data" / "alyx.db")
    ops = [
        {"method": "POST", "collection": "posts", "body": {"title": "x"}},
        {"method": "DELETE", "collection": "posts", "id": UUID_0},
    ]
    response = await client.post("/api/batch", json={"operations": ops})
    body = await response.json()
    assert (response.status, body["code"]) == (404, "DOCUMENT_NOT_FOUND")
    assert body["details"] == [
        {"index": 1, "code": "DOCUMENT_NOT_FOUND", "message": f"no document '{UUID_0}' in posts"}
    ]
    assert table_checksum(project / "data" / "alyx.db") == before


async def test_validation_failure_carries_field_details(client: TestClient[Any, Any]) -> None:
    ops = [{"method": "POST", "collection": "posts", "body": {"title": ""}}]
    body = await (await client.post("/api/batch", json={"operations": ops})).json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"][0]["index"] == 0
    assert body["details"][0]["details"][0]["field"] == "title"


@pytest.mark.parametrize(
    ("payload", "status", "code", "message"),
    [
        ({"operations": [{}] * 101}, 400, "VALIDATION_ERROR", "at most 100 operations, this one has 101"),
        ({"operations": {}}, 400, "VALIDATION_ERROR", "operations must be an array"),
        ({"ops": []}, 400, "VALIDATION_ERROR", 'must be {"operations": [...]}'),
        ({"operations": [1]}, 400, "VALIDATION_ERROR", "operation 0: expected an object"),
        ({"operations": [{"method": "PUT", "collection": "posts"}]}, 400, "VALIDATION_ERROR",
         "operation 0: method must be one of GET, POST, PATCH, DELETE"),
        ({"operations": [{"method": "PATCH", "collection": "posts", "body": {}}]}, 400,
         "VALIDATION_ERROR", "PATCH needs the id of a document"),
        ({"operations": [{"method": "POST", "collection": "posts", "id": "x", "body": {}}]}, 400,
         "VALIDATION_ERROR", "put its id in body"),
        ({"operations": [{"method": "POST", "collection": "posts"}]}, 400, "VALIDATION_ERROR",
         "POST needs a body object"),
        ({"operations": [{"method": "GET", "collection": "posts", "id": "x", "extra": 1}]}, 400,
         "VALIDATION_ERROR", "unknown key 'extra'"),
        ({"operations": [{"method": "GET", "collection": "nope", "id": "x"}]}, 404,
         "COLLECTION_NOT_FOUND", "operation 0 failed"),
        ({"operations": [{"method": "GET", "collection": "_alyx_users", "id": "x"}]}, 404,
         "COLLECTION_NOT_FOUND", "unknown collection '_alyx_users'"),
    ],
)  # fmt: skip
async def test_malformed_batches_are_refused(
    client: TestClient[Any, Any], payload: Any, status: int, code: str, message: str
) -> None:
    response = await client.post("/api/batch", json=payload)
    body = await response.json()
    assert response.status == status, body
    assert body["code"] == code
    assert message in body["error"]


async def test_empty_batch(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/batch", json={"operations": []})
    assert (response.status, await response.json()) == (200, {"results": []})
