"""CRUD on /api/collections/{c}: each scenario is a request and the answer it must get."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.alyx_server.api.scenarios import Scenario, run_scenario

UUID_0 = "00000000-0000-4000-8000-000000000000"


SCENARIOS = [
    Scenario("get one", "GET", "/api/collections/posts/{post}", expect={"title": "first", "n": 1}),
    Scenario("get with fields keeps the key", "GET", "/api/collections/posts/{post}?fields=title",
             expect={"title": "first"}),
    Scenario("get missing", "GET", f"/api/collections/posts/{UUID_0}", status=404,
             code="DOCUMENT_NOT_FOUND", message=f"no document '{UUID_0}' in posts"),
    Scenario("get int id beyond 64 bits", "GET", "/api/collections/counters/99999999999999999999999",
             status=404, code="DOCUMENT_NOT_FOUND"),
    Scenario("get int id not a number", "GET", "/api/collections/counters/abc", status=404,
             code="DOCUMENT_NOT_FOUND"),
    Scenario("unknown collection suggests", "GET", "/api/collections/postz", status=404,
             code="COLLECTION_NOT_FOUND", message="unknown collection 'postz'; did you mean posts?"),
    Scenario("system table is no collection", "GET", "/api/collections/_alyx_users", status=404,
             code="COLLECTION_NOT_FOUND", message="unknown collection '_alyx_users'"),
    Scenario("system table by id", "GET", f"/api/collections/_alyx_migrations/{UUID_0}", status=404,
             code="COLLECTION_NOT_FOUND"),
    Scenario("create", "POST", "/api/collections/posts", {"title": "new", "n": 3}, status=201,
             expect={"title": "new", "n": 3, "published": False, "tags": None}),
    Scenario("create with reference", "POST", "/api/collections/posts",
             {"title": "by", "author_id": "{author}"}, status=201, expect={"author_id": "{author}"}),
    Scenario("create int key", "POST", "/api/collections/counters", {"label": "x"}, status=201,
             expect={"id": 1, "label": "x"}),
    Scenario("create missing required", "POST", "/api/collections/posts", {"n": 1}, status=400,
             code="VALIDATION_ERROR", message="title is required"),
    Scenario("create wrong type", "POST", "/api/collections/posts", {"title": "t", "n": "x"},
             status=400, code="VALIDATION_ERROR", message="n must be an integer"),
    Scenario("create unknown field", "POST", "/api/collections/posts", {"title": "t", "nope": 1},
             status=400, code="VALIDATION_ERROR", message="unknown field 'nope'"),
    Scenario("create internal field refused", "POST", "/api/collections/authors",
             {"name": "a", "token": "x"}, status=400, code="VALIDATION_ERROR",
             message="unknown field 'token'"),
    Scenario("create malformed json", "POST", "/api/collections/posts", raw=b'{"title": ',
             status=400, code="INVALID_JSON", message="the request body is not valid JSON"),
    Scenario("create empty body", "POST", "/api/collections/posts", raw=b"", status=400,
             code="INVALID_JSON", message="the request body is empty"),
    Scenario("create array body", "POST", "/api/collections/posts", [{"title": "t"}], status=400,
             code="INVALID_JSON", message="must be a JSON object, not an array"),
    Scenario("create unique violation", "POST", "/api/collections/authors",
             {"name": "b", "email": "ann@example.com"}, status=409, code="UNIQUE_VIOLATION",
             message="authors already has a document with this email"),
    Scenario("create foreign key violation", "POST", "/api/collections/posts",
             {"title": "t", "author_id": UUID_0}, status=409, code="FOREIGN_KEY_VIOLATION",
             message="author_id refers to a authors document that does not exist"),
    Scenario("update", "PATCH", "/api/collections/posts/{post}", {"n": 7}, expect={"n": 7, "title": "first"}),
    Scenario("update missing", "PATCH", f"/api/collections/posts/{UUID_0}", {"n": 7}, status=404,
             code="DOCUMENT_NOT_FOUND"),
    Scenario("update bad value", "PATCH", "/api/collections/posts/{post}", {"title": ""},
             status=400, code="VALIDATION_ERROR", message="title must be at least 1 character long"),
    Scenario("update primary key", "PATCH", "/api/collections/posts/{post}", {"id": UUID_0},
             status=400, code="VALIDATION_ERROR", message="id cannot be changed"),
    Scenario("update unknown field", "PATCH", "/api/collections/posts/{post}", {"x": 1},
             status=400, code="VALIDATION_ERROR", message="unknown field 'x'"),
    Scenario("delete referenced", "DELETE", "/api/collections/authors/{author}", status=409,
             code="FOREIGN_KEY_VIOLATION", message="other documents still reference it"),
    Scenario("delete", "DELETE", "/api/collections/posts/{post}", status=204),
    Scenario("delete missing", "DELETE", f"/api/collections/posts/{UUID_0}", status=404,
             code="DOCUMENT_NOT_FOUND"),
    Scenario("unknown route", "GET", "/api/nothing", status=404, code="NOT_FOUND",
             message="no route for GET /api/nothing"),
    Scenario("method not allowed", "PUT", "/api/collections/posts", {}, status=405,
             code="METHOD_NOT_ALLOWED", message="PUT is not allowed on /api/collections/posts"),
    Scenario("where with an unknown field", "GET", "/api/collections/posts?where=doc.nope%20%3E%201",
             status=400, code="INVALID_QUERY", message="unknown field 'nope' in doc.nope"),
]  # fmt: skip


async def seed(client: TestClient[Any, Any]) -> dict[str, str]:
    author = await client.post("/api/collections/authors", json={"name": "ann", "email": "ann@example.com"})
    assert author.status == 201, await author.text()
    author_id = (await author.json())["id"]
    post = await client.post(
        "/api/collections/posts", json={"title": "first", "n": 1, "author_id": author_id}
    )
    assert post.status == 201, await post.text()
    return {"author": author_id, "post": (await post.json())["id"]}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
async def test_scenario(client: TestClient[Any, Any], scenario: Scenario) -> None:
    await run_scenario(client, scenario, await seed(client))


async def test_created_doc_is_stored_and_read_back(client: TestClient[Any, Any], project: Path) -> None:
    created = await (
        await client.post("/api/collections/posts", json={"title": "kept", "tags": ["a"]})
    ).json()
    fetched = await (await client.get(f"/api/collections/posts/{created['id']}")).json()
    assert fetched == created
    assert created["created_at"].endswith("Z")
    conn = sqlite3.connect(project / "data" / "alyx.db")
    try:
        row = conn.execute(
            "SELECT title, tags, published FROM posts WHERE id = ?", (created["id"],)
        ).fetchone()
    finally:
        conn.close()
    assert row == ("kept", '["a"]', 0)


async def test_internal_fields_never_returned(client: TestClient[Any, Any], project: Path) -> None:
    created = await (await client.post("/api/collections/authors", json={"name": "x"})).json()
    conn = sqlite3.connect(project / "data" / "alyx.db")
    conn.execute("UPDATE authors SET token = 'secret' WHERE id = ?", (created["id"],))
    conn.commit()
    conn.close()
    assert "token" not in created
    one = await (await client.get(f"/api/collections/authors/{created['id']}")).json()
    listed = await (await client.get("/api/collections/authors")).json()
    patched = await (
        await client.patch(f"/api/collections/authors/{created['id']}", json={"name": "y"})
    ).json()
    for doc in (one, listed["docs"][0], patched):
        assert "token" not in doc
    refused = await client.get("/api/collections/authors?fields=token")
    assert refused.status == 400
    assert "unknown field 'token' in fields" in (await refused.json())["error"]


async def test_delete_removes_the_doc(client: TestClient[Any, Any]) -> None:
    ids = await seed(client)
    assert (await client.delete(f"/api/collections/posts/{ids['post']}")).status == 204
    assert (await client.get(f"/api/collections/posts/{ids['post']}")).status == 404


async def test_unique_violation_names_the_field(client: TestClient[Any, Any]) -> None:
    await seed(client)
    response = await client.post("/api/collections/authors", json={"name": "b", "email": "ann@example.com"})
    body = await response.json()
    assert body["details"] == [
        {
            "field": "email",
            "code": "unique_violation",
            "message": "authors already has a document with this email",
        }
    ]


async def test_a_timestamp_before_year_one_in_utc_is_a_field_error(client: TestClient[Any, Any]) -> None:
    body = {"title": "t", "created_at": "0001-01-01T00:00:00+06:06"}
    response = await client.post("/api/collections/posts", json=body)
    assert response.status == 400
    (detail,) = (await response.json())["details"]
    assert detail["field"] == "created_at"
    assert "out of range" in detail["message"] and "0001-01-01 and 9999-12-31" in detail["message"]
    listed = await (await client.get("/api/collections/posts?limit=0")).json()
    assert listed["total"] == 0
