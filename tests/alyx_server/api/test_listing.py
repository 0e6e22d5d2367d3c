"""List parameters: filter, sort, limit, offset, total, fields, expand (one query per field)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

LIST = "/api/collections/posts"


async def seed_posts(client: TestClient[Any, Any], count: int = 12) -> list[str]:
    """`count` posts; post i has n=i, title t<i>, author a<i % 3>, published when i is even."""
    authors = []
    for k in range(3):
        r = await client.post("/api/collections/authors", json={"name": f"a{k}"})
        authors.append((await r.json())["id"])
    ops = [
        {"method": "POST", "collection": "posts",
         "body": {"title": f"t{i}", "n": i, "author_id": authors[i % 3], "published": i % 2 == 0}}
        for i in range(count)
    ]  # fmt: skip
    response = await client.post("/api/batch", json={"operations": ops})
    assert response.status == 200, await response.text()
    return authors


async def listing(client: TestClient[Any, Any], query: str) -> dict[str, Any]:
    response = await client.get(f"{LIST}?{query}")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_default_page_shape(client: TestClient[Any, Any]) -> None:
    await seed_posts(client)
    body = await listing(client, "")
    assert set(body) == {"docs", "total", "limit", "offset"}
    assert (body["total"], body["limit"], body["offset"], len(body["docs"])) == (12, 100, 0, 12)


async def test_empty_collection_lists_an_empty_array(client: TestClient[Any, Any]) -> None:
    assert await listing(client, "") == {"docs": [], "total": 0, "limit": 100, "offset": 0}


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ("filter=n:gte:9&sort=n", ["t9", "t10", "t11"]),
        ("filter=n:gte:3&filter=n:lt:6&sort=-n", ["t5", "t4", "t3"]),
        ("filter=published:eq:true&filter=n:lt:5&sort=n", ["t0", "t2", "t4"]),
        ("filter=title:in:t1,t3,zz&sort=title", ["t1", "t3"]),
        ("filter=title:like:T1%25&sort=n", ["t1", "t10", "t11"]),
        ("filter=title:contains:1&filter=n:ne:1&sort=n", ["t10", "t11"]),
        ("filter=score:is_null&filter=n:lte:1&sort=n", ["t0", "t1"]),
        ("filter=title:eq:t2:x&sort=n", []),
        ("sort=-published,-n&limit=2", ["t10", "t8"]),
        ("sort=n&limit=3&offset=4", ["t4", "t5", "t6"]),
    ],
)
async def test_filters_and_sorts(client: TestClient[Any, Any], query: str, titles: list[str]) -> None:
    await seed_posts(client)
    body = await listing(client, query)
    assert [d["title"] for d in body["docs"]] == titles


async def test_total_counts_all_matches_and_total_false_skips_it(
    client: TestClient[Any, Any], statements: list[str]
) -> None:
    await seed_posts(client)
    counted = await listing(client, "filter=published:eq:true&limit=2")
    assert (counted["total"], len(counted["docs"])) == (6, 2)
    statements.clear()
    skipped = await listing(client, "filter=published:eq:true&limit=2&total=false")
    assert "total" not in skipped
    assert len(skipped["docs"]) == 2
    assert not [s for s in statements if "count(" in s]


async def test_limit_zero_counts_only(client: TestClient[Any, Any]) -> None:
    await seed_posts(client)
    assert await listing(client, "limit=0") == {"docs": [], "total": 12, "limit": 0, "offset": 0}


async def test_fields_returns_those_and_the_key(client: TestClient[Any, Any]) -> None:
    await seed_posts(client, 2)
    body = await listing(client, "fields=title,n&sort=n")
    assert [sorted(d) for d in body["docs"]] == [["id", "n", "title"]] * 2
    one = await (await client.get(f"{LIST}/{body['docs'][0]['id']}?fields=n")).json()
    assert sorted(one) == ["id", "n"]


async def test_expand_in_list_is_one_query_per_field(
    client: TestClient[Any, Any], statements: list[str]
) -> None:
    authors = await seed_posts(client, 30)
    statements.clear()
    body = await listing(client, "expand=author_id&sort=n&limit=30")
    assert len(body["docs"]) == 30
    for i, doc in enumerate(body["docs"]):
        assert doc["expand"]["author_id"] == {
            "id": authors[i % 3],
            "name": f"a{i % 3}",
            "email": None,
            "owner": None,
        }
    author_reads = [s for s in statements if 'FROM "authors"' in s]
    assert len(author_reads) == 1, statements


async def test_expand_with_fields_hides_the_reference_unless_asked(client: TestClient[Any, Any]) -> None:
    authors = await seed_posts(client, 3)
    body = await listing(client, "fields=title&expand=author_id&sort=n")
    assert body["docs"][0]["expand"]["author_id"]["id"] == authors[0]
    assert sorted(body["docs"][0]) == ["expand", "id", "title"]


async def test_expand_in_get_and_null_reference(client: TestClient[Any, Any], statements: list[str]) -> None:
    authors = await seed_posts(client, 1)
    post = (await listing(client, ""))["docs"][0]
    statements.clear()
    one = await (await client.get(f"{LIST}/{post['id']}?expand=author_id")).json()
    assert one["expand"] == {"author_id": {"id": authors[0], "name": "a0", "email": None, "owner": None}}
    assert len([s for s in statements if 'FROM "authors"' in s]) == 1
    orphan = await (await client.post(LIST, json={"title": "orphan"})).json()
    one = await (await client.get(f"{LIST}/{orphan['id']}?expand=author_id")).json()
    assert one["expand"] == {"author_id": None}


async def test_expand_user_reference_shows_only_the_profile(
    client: TestClient[Any, Any], project: Path
) -> None:
    conn = sqlite3.connect(project / "data" / "alyx.db")
    conn.execute(
        "INSERT INTO _alyx_users (id, email, password_hash, metadata, app_metadata) "
        "VALUES ('11111111-1111-4111-8111-111111111111', 'u@example.com', 'hash', '{\"nick\": \"u\"}', "
        '\'{"plan": "pro"}\')'
    )
    conn.commit()
    conn.close()
    created = await (
        await client.post(
            "/api/collections/authors", json={"name": "x", "owner": "11111111-1111-4111-8111-111111111111"}
        )
    ).json()
    one = await (await client.get(f"/api/collections/authors/{created['id']}?expand=owner")).json()
    assert one["expand"]["owner"] == {"id": "11111111-1111-4111-8111-111111111111", "metadata": {"nick": "u"}}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=1001", "invalid limit '1001': expected an integer from 0 to 1000"),
        ("limit=-1", "invalid limit '-1'"),
        ("limit=ten", "invalid limit 'ten'"),
        ("offset=1.5", "invalid offset '1.5'"),
        ("total=maybe", "invalid total 'maybe': expected true or false"),
        ("filter=nope:eq:1", "unknown field 'nope' in filter 'nope:eq:1'"),
        ("filter=n:eq:abc", "n is an int field and 'abc' is not an integer"),
        ("filter=n:eq:99999999999999999999999", "outside the 64-bit integer range"),
        ("filter=n:zz:1", "unknown operator 'zz'"),
        ("filter=title", "expected field:op:value"),
        ("sort=nope", "unknown field 'nope' in sort"),
        ("fields=title,nope", "unknown field 'nope' in fields"),
        ("expand=title", "cannot expand 'title': it is not a reference field"),
        ("expand=nope", "unknown field 'nope' in expand"),
        ("where=doc.nope", "unknown field 'nope' in doc.nope"),
        ("where=doc.title%20%3D%3D", "invalid where: syntax error"),
    ],
)
async def test_bad_parameters_are_invalid_query(
    client: TestClient[Any, Any], query: str, message: str
) -> None:
    response = await client.get(f"{LIST}?{query}")
    body = await response.json()
    assert response.status == 400, body
    assert body["code"] == "INVALID_QUERY"
    assert message in body["error"]
