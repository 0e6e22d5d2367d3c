"""Generated query parameters and bodies never crash the server nor touch data they should not.

Each example sends hostile text (SQL fragments, quotes, NUL, unicode, long strings: 100 KB
in bodies, 2 KB in URLs, whose request line the HTTP parser caps at 8 KiB) as filters,
sorts, field lists, expansions, paging and document values, and checks that the answer is
a clean 2xx/4xx envelope and that the tables are unchanged by reads and refused writes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import assume, given
from hypothesis import strategies as st
from yarl import URL

from tests.alyx_server.api.projects import table_checksum

FIELDS = ["id", "title", "author_id", "n", "score", "published", "tags", "created_at", "nope", "token"]
OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "like", "contains", "in", "not_in", "is_null", "not_null"]
NASTY = [
    "'", '"', "' OR 1=1 --", "1; DROP TABLE posts", "%", "_", "\\", "\x00", "a\x00b", "é", "🙂",
    "null", "true", "1e309", "-0", "9223372036854775808", "2026-01-31T12:00:00Z", ",", ":", "",
    ") OR (1=1", "title) --", '"; DELETE FROM posts; --',
]  # fmt: skip


def texts(long: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY),
        st.text(max_size=40),
        st.integers().map(str),
        st.floats(allow_nan=True).map(str),
        st.just("x" * long),
        st.just("é" * (long // 2)),
    )


text = texts(2_000)
body_text = texts(100_000)
names = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12))
filters = st.builds(
    lambda f, op, v: f"{f}:{op}:{v}", names, st.one_of(st.sampled_from(OPS), st.text(max_size=8)), text
)
sorts = st.lists(st.tuples(st.sampled_from(["", "-", "+"]), names), max_size=3).map(
    lambda parts: ",".join(sign + name for sign, name in parts)
)
params = st.fixed_dictionaries(
    {},
    optional={
        "sort": sorts,
        "fields": st.lists(names, max_size=3).map(",".join),
        "expand": st.lists(names, max_size=2).map(",".join),
        "limit": text,
        "offset": text,
        "total": text,
    },
)


def clean_answer(status: int, body: Any) -> None:
    assert status < 500, body
    if status >= 400:
        assert set(body) == {"error", "code", "details", "request_id", "timestamp"}


async def seeded(client: TestClient[Any, Any]) -> None:
    if (await (await client.get("/api/collections/posts?limit=0")).json())["total"]:
        return
    author = await (await client.post("/api/collections/authors", json={"name": "a"})).json()
    for i in range(3):
        await client.post(
            "/api/collections/posts", json={"title": f"t{i}", "n": i, "author_id": author["id"]}
        )


@given(filter_list=st.lists(filters, max_size=3), extra=params)
async def test_generated_list_queries(
    client: TestClient[Any, Any], project: Path, filter_list: list[str], extra: dict[str, str]
) -> None:
    await seeded(client)
    before = table_checksum(project / "data" / "alyx.db")
    query = [("filter", f) for f in filter_list] + list(extra.items())
    assume(len(str(URL("/api/collections/posts").with_query(query))) < 8000)
    response = await client.get("/api/collections/posts", params=query)
    clean_answer(response.status, await response.json())
    assert table_checksum(project / "data" / "alyx.db") == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | body_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@given(body=st.dictionaries(names, json_values, max_size=4))
async def test_generated_documents(client: TestClient[Any, Any], project: Path, body: dict[str, Any]) -> None:
    await seeded(client)
    before = table_checksum(project / "data" / "alyx.db")
    # A file-like body: aiohttp's client warns about large raw bytes.
    response = await client.post("/api/collections/posts", data=io.BytesIO(json.dumps(body).encode()))
    answer = await response.json()
    clean_answer(response.status, answer)
    after = table_checksum(project / "data" / "alyx.db")
    if response.status == 201:
        assert len(after) == len(before) + 1
        fetched = await client.get(f"/api/collections/posts/{answer['id']}")
        assert await fetched.json() == answer
    else:
        assert after == before


@given(doc_id=text, fields=st.lists(names, max_size=3).map(",".join))
async def test_generated_ids(client: TestClient[Any, Any], project: Path, doc_id: str, fields: str) -> None:
    await seeded(client)
    before = table_checksum(project / "data" / "alyx.db")
    for collection in ("posts", "counters"):
        path = f"/api/collections/{collection}/{doc_id}"
        response = await client.get(path, params={"fields": fields})
        if response.status != 404 or response.content_type == "application/json":
            clean_answer(response.status, await response.json())
        deleted = await client.delete(path)
        assert deleted.status in (404, 405), await deleted.text()
    assert table_checksum(project / "data" / "alyx.db") == before
