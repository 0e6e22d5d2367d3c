"""Integers beyond SQLite's 64-bit range over HTTP: 400 for filters and bodies, 404 for ids.

The decisions are the database layer's (db/query.py, db/codec.py); these tests send the
requests a client would and read the answers, then check that nothing was written.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]

MAX = 2**63 - 1
MIN = -(2**63)


@pytest.mark.parametrize(
    "query",
    [
        f"filter=n:eq:{MAX + 1}",
        f"filter=n:gt:{MIN - 1}",
        f"filter=n:in:1,{2**64}",
        f"filter=n:not_in:{MAX + 1}",
    ],
)
async def test_integer_filters_beyond_64_bits_are_invalid_query(client: Client, query: str) -> None:
    response = await client.get(f"/api/collections/posts?{query}")
    body = await response.json()
    assert (response.status, body["code"]) == (400, "INVALID_QUERY"), body
    assert f"is outside the 64-bit integer range ({MIN} to {MAX})" in body["error"]


async def test_a_huge_number_against_a_float_field_is_a_plain_comparison(client: Client) -> None:
    created = await client.post("/api/collections/posts", json={"title": "t", "score": 2.5})
    assert created.status == 201
    response = await client.get(f"/api/collections/posts?filter=score:lt:{10**30}")
    body = await response.json()
    assert response.status == 200, body
    assert [d["score"] for d in body["docs"]] == [2.5]


@pytest.mark.parametrize("doc_id", [str(MAX + 1), str(MIN - 1), "1" + "0" * 30])
async def test_integer_ids_beyond_64_bits_are_not_found(client: Client, doc_id: str) -> None:
    assert (await client.post("/api/collections/counters", json={"label": "x"})).status == 201
    path = f"/api/collections/counters/{doc_id}"
    for method, kwargs in [("GET", {}), ("PATCH", {"json": {"label": "y"}}), ("DELETE", {})]:
        response = await client.request(method, path, **kwargs)
        body = await response.json()
        assert (response.status, body["code"]) == (404, "DOCUMENT_NOT_FOUND"), (method, body)
        assert body["error"] == f"no document {doc_id!r} in counters"
    listed = await (await client.get("/api/collections/counters")).json()
    assert [d["label"] for d in listed["docs"]] == ["x"]


async def test_batch_ids_beyond_64_bits_are_not_found(client: Client) -> None:
    ops = [{"method": "POST", "collection": "counters", "body": {"label": "kept?"}},
           {"method": "DELETE", "collection": "counters", "id": MAX + 1}]  # fmt: skip
    response = await client.post("/api/batch", json={"operations": ops})
    body = await response.json()
    assert (response.status, body["code"]) == (404, "DOCUMENT_NOT_FOUND"), body
    assert body["details"][0]["index"] == 1
    listed = await (await client.get("/api/collections/counters")).json()
    assert listed["docs"] == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (str(MAX + 1), "n is outside the 64-bit integer range"),
        (str(2**64), "n is outside the 64-bit integer range"),
        # JSON parsers read this as the float -2**63: storing it would change the number.
        (str(MIN - 1), "n must be written as an integer: -9.223372036854776e+18 is a rounded number"),
    ],
)
async def test_body_integers_beyond_64_bits_are_invalid_type(client: Client, raw: str, message: str) -> None:
    response = await client.post(
        "/api/collections/posts",
        data=f'{{"title": "t", "n": {raw}}}',
        headers={"Content-Type": "application/json"},
    )
    body = await response.json()
    assert (response.status, body["code"]) == (400, "VALIDATION_ERROR"), body
    assert body["details"] == [{"field": "n", "code": "invalid_type", "message": message}]
    listed = await (await client.get("/api/collections/posts")).json()
    assert listed["docs"] == []
