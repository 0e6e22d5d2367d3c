"""The query builder: every filter operator, bad values, injection attempts, sort, paging."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from alyx_server.db import (
    Condition,
    Database,
    ListQuery,
    Predicate,
    build_list_sql,
    condition_check,
    condition_predicate,
    insert_doc,
    list_docs,
    parse_condition,
    parse_filter,
    parse_sort,
)
from alyx_server.errors import InvalidQuery
from alyx_server.schema.ddl import collection_sql
from alyx_server.schema.model import Collection, Default, Field, FieldType, Index
from tests.alyx_server.db.conftest import COUNTERS, POSTS, post

ROWS = [
    post("alpha", title="Alpha 100%", views=5, score=1.5, published=True, status="live",
         created_at="2026-01-01T00:00:00Z"),
    post("beta", title="beta_x", views=10, score=None, published=False, status="draft",
         created_at="2026-02-01T00:00:00Z"),
    post("gamma", title="Gamma", views=15, score=9.0, published=True, status=None,
         created_at="2026-03-01T00:00:00Z"),
    post("delta", title="ALPHA two", views=0, score=3.0, published=False, status="live",
         created_at="2026-04-01T00:00:00Z"),
]  # fmt: skip


@pytest.fixture
async def seeded(db: Database) -> Database:
    await asyncio.gather(*(db.write(lambda c, r=r: insert_doc(c, POSTS, r)) for r in ROWS))
    return db


async def _slugs(db: Database, *filters: str, **options: Any) -> list[str]:
    preds = [parse_filter(POSTS, f) for f in filters]
    query = ListQuery(POSTS, preds, sort=[("slug", False)], **options)
    result = await db.read(lambda c: list_docs(c, query))
    return [d["slug"] for d in result.docs]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("views:eq:10", ["beta"]),
        ("views:ne:10", ["alpha", "delta", "gamma"]),
        ("score:ne:1.5", ["beta", "delta", "gamma"]),
        ("views:gt:5", ["beta", "gamma"]),
        ("views:gte:5", ["alpha", "beta", "gamma"]),
        ("views:lt:5", ["delta"]),
        ("views:lte:5", ["alpha", "delta"]),
        ("published:eq:true", ["alpha", "gamma"]),
        ("published:eq:0", ["beta", "delta"]),
        ("created_at:gte:2026-02-01T00:00:00+00:00", ["beta", "delta", "gamma"]),
        ("created_at:lt:2026-02-01", ["alpha"]),
        ("title:like:alpha%", ["alpha", "delta"]),
        ("title:like:%100\\%", ["alpha"]),
        ("title:like:beta\\_%", ["beta"]),
        ("title:like:beta_x", ["beta"]),
        ("title:like:%a", ["gamma"]),
        ("title:contains:lpha", ["alpha"]),
        ("title:contains:%", ["alpha"]),
        ("title:contains:_", ["beta"]),
        ("status:in:live,draft", ["alpha", "beta", "delta"]),
        ("status:not_in:live", ["beta", "gamma"]),
        ("views:in:0,15", ["delta", "gamma"]),
        ("score:is_null", ["beta"]),
        ("score:not_null:", ["alpha", "delta", "gamma"]),
        ("status:eq:a:b:c", []),
    ],
)
async def test_filter_operators(seeded: Database, text: str, expected: list[str]) -> None:
    assert await _slugs(seeded, text) == expected


async def test_filters_combine_with_and(seeded: Database) -> None:
    assert await _slugs(seeded, "published:eq:true", "views:gt:5") == ["gamma"]


POST_FIELDS = (
    "id, title, slug, author_id, published, views, score, status, site, ref, tags, body, "
    "created_at, updated_at"
)
OPS = "eq, ne, gt, gte, lt, lte, like, contains, in, not_in, is_null, not_null"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("views:gt:abc", "views is an int field and 'abc' is not an integer"),
        ("score:lt:x", "score is a float field and 'x' is not a number"),
        ("score:lt:nan", "score is a float field and 'nan' is not a number"),
        ("published:eq:yes", "published is a bool field and 'yes' is not true or false"),
        (
            "created_at:gt:soon",
            "created_at is a timestamp field and 'soon' is not an ISO-8601 timestamp",
        ),
        ("views:in:1,x", "views is an int field and 'x' is not an integer"),
        ("views:between:1", f"unknown operator 'between'; operators are: {OPS}"),
        ("views:like:1%", "operator 'like' does not apply to int field 'views'"),
        ("tags:eq:1", "operator 'eq' does not apply to json field 'tags'"),
        ("views", "expected field:op:value, e.g. title:eq:hello"),
        ("views:eq", "expected field:op:value, e.g. title:eq:hello"),
        ("score:is_null:false", "is_null takes no value"),
    ],
)
def test_bad_filters_name_the_filter_and_field(text: str, detail: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse_filter(POSTS, text)
    assert caught.value.code == "INVALID_QUERY"
    assert str(caught.value) == f"invalid filter {text!r}: {detail}"


@pytest.mark.parametrize("text", ["nope:eq:1", "secret:like:%"])
def test_unknown_and_internal_filter_fields(text: str) -> None:
    name = text.split(":")[0]
    with pytest.raises(InvalidQuery) as caught:
        parse_filter(POSTS, text)
    assert str(caught.value) == (
        f"unknown field {name!r} in filter {text!r}; fields of posts are: {POST_FIELDS}"
    )


@pytest.mark.parametrize(
    "text",
    [
        "title:eq:x' OR '1'='1",
        "title:eq:x'; DROP TABLE posts; --",
        "title:like:%' OR 1=1 --",
        "status:in:x') OR 1=1 --,y",
        'title:contains:"); DELETE FROM posts; --',
    ],
)
async def test_injection_looking_values_are_bound(seeded: Database, text: str) -> None:
    assert await _slugs(seeded, text) == []
    assert len(await _slugs(seeded)) == 4
    pred = parse_filter(POSTS, text)
    assert pred.sql is not None and "DROP" not in pred.sql and "OR 1" not in pred.sql


def test_injection_looking_identifiers_are_refused() -> None:
    with pytest.raises(InvalidQuery, match="unknown field 'title\\\"; DROP TABLE posts; --' in sort"):
        parse_sort(POSTS, 'title"; DROP TABLE posts; --')


def test_unknown_sort_field_message() -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse_sort(POSTS, "-created_at,x")
    assert str(caught.value) == f"unknown field 'x' in sort; fields of posts are: {POST_FIELDS}"
    assert parse_sort(POSTS, "-created_at, +title") == [("created_at", True), ("title", False)]


async def test_sort_ties_broken_by_primary_key(db: Database) -> None:
    for n in (2, 1, 2, 1, 2):
        await db.write(lambda c, n=n: insert_doc(c, COUNTERS, {"n": n}))
    # Ties follow the direction of the last sort key, so an index ending with the primary
    # key serves the whole order.
    query = ListQuery(COUNTERS, sort=[("n", True)])
    result = await db.read(lambda c: list_docs(c, query))
    assert [(d["n"], d["id"]) for d in result.docs] == [(2, 5), (2, 3), (2, 1), (1, 4), (1, 2)]
    query = ListQuery(COUNTERS, sort=[("n", False)])
    result = await db.read(lambda c: list_docs(c, query))
    assert [(d["n"], d["id"]) for d in result.docs] == [(1, 2), (1, 4), (2, 1), (2, 3), (2, 5)]
    result = await db.read(lambda c: list_docs(c, ListQuery(COUNTERS)))
    assert [d["id"] for d in result.docs] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("sort", ["-n", "n", "-author,-n"])
def test_sorted_page_is_read_from_the_index_without_a_sort_step(tmp_path: Path, sort: str) -> None:
    entries = Collection(
        "entries",
        (
            Field("id", FieldType.UUID, primary=True, default=Default("auto")),
            Field("author", FieldType.STRING),
            Field("n", FieldType.INT),
        ),
        indexes=(Index("idx_entries_author_n", ("author", "n")),),
    )
    conn = sqlite3.connect(tmp_path / "plan.db")
    for statement in collection_sql(entries):
        conn.execute(statement)
    query = ListQuery(entries, [condition_predicate(entries, parse_condition(entries, "author:eq:u7"))],
                      sort=parse_sort(entries, sort), limit=20)  # fmt: skip
    plan = build_list_sql(query)
    details = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + plan.select, plan.params)]
    assert any("idx_entries_author_n" in d for d in details), details
    assert not any("TEMP B-TREE" in d for d in details), details


async def test_paging_total_and_fields(seeded: Database) -> None:
    query = ListQuery(POSTS, sort=[("views", False)], limit=2, offset=1, fields=["slug", "views"])
    result = await seeded.read(lambda c: list_docs(c, query))
    assert result.to_dict() == {
        "docs": [{"slug": "alpha", "views": 5}, {"slug": "beta", "views": 10}],
        "total": 4,
        "limit": 2,
        "offset": 1,
    }
    no_total = ListQuery(POSTS, limit=5000, with_total=False)
    result = seeded.read_now(lambda c: list_docs(c, no_total))
    assert (result.total, result.limit, len(result.docs)) == (None, 1000, 4)
    assert "total" not in result.to_dict()
    assert "secret" not in result.docs[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": -1}, "invalid limit -1: expected an integer from 0 to 1000"),
        ({"offset": -5}, "invalid offset -5: expected an integer of 0 or more"),
        ({"fields": ["slug", "secret"]}, "unknown field 'secret' in fields; fields of posts are: "),
    ],
)
def test_bad_paging(options: dict[str, Any], message: str) -> None:
    from alyx_server.db import build_list_sql

    with pytest.raises(InvalidQuery, match="^" + message.replace("(", "\\(")):
        build_list_sql(ListQuery(POSTS, **options))


async def test_python_check_predicates_page_and_count_only_passing_rows(db: Database) -> None:
    for n in range(20):
        await db.write(lambda c, n=n: insert_doc(c, COUNTERS, {"n": n}))
    seen_internal: list[bool] = []

    def odd(doc: dict[str, Any]) -> bool:
        seen_internal.append("label" in doc)
        return bool(doc["n"] % 2)

    preds = [Predicate("n >= ?", (4,)), Predicate(check=odd)]
    query = ListQuery(COUNTERS, preds, sort=[("n", False)], limit=3, offset=2, fields=["n"])
    result = await db.read(lambda c: list_docs(c, query))
    assert ([d for d in result.docs], result.total) == ([{"n": 9}, {"n": 11}, {"n": 13}], 8)

    seen_internal.clear()
    no_total = ListQuery(COUNTERS, preds, sort=[("n", False)], limit=3, offset=2, with_total=False)
    result = await db.read(lambda c: list_docs(c, no_total))
    assert [d["n"] for d in result.docs] == [9, 11, 13]
    assert result.total is None
    assert len(seen_internal) == 10  # stopped once the page was full


@pytest.mark.parametrize(
    ("cond", "doc", "expected"),
    [
        (Condition("views", "gt", 5), {"views": 6}, True),
        (Condition("views", "gt", "5"), {"views": 5}, False),
        (Condition("views", "gt", 5), {"views": None}, False),
        (Condition("score", "ne", 1.5), {"score": None}, True),
        (Condition("published", "eq", True), {"published": True}, True),
        (Condition("title", "like", "al%"), {"title": "ALPHA"}, True),
        (Condition("title", "like", "al%"), {"title": "Ålpha"}, False),
        (Condition("title", "contains", "Lp"), {"title": "alpha"}, False),
        (Condition("status", "in", ["live"]), {"status": "live"}, True),
        (Condition("status", "not_in", ["live"]), {"status": None}, True),
        (Condition("score", "is_null"), {"score": None}, True),
        (
            Condition("created_at", "lt", "2026-02-01"),
            {"created_at": "2026-01-31T23:59:59.999Z"},
            True,
        ),
    ],
)
def test_condition_check_matches_the_sql_meaning(
    cond: Condition, doc: dict[str, Any], expected: bool
) -> None:
    assert condition_check(POSTS, cond)(doc) is expected


def test_structured_condition_rejects_wrong_types() -> None:
    with pytest.raises(InvalidQuery, match="views is an int field and True is not an integer"):
        condition_check(POSTS, Condition("views", "eq", True))


async def test_totals_are_remembered_until_any_write_commits(seeded: Database, db_path: Path) -> None:
    counts: list[str] = []

    def listed(conn: sqlite3.Connection) -> int | None:
        conn.set_trace_callback(lambda sql: counts.append(sql) if sql.startswith("SELECT count") else None)
        try:
            return list_docs(conn, ListQuery(POSTS, limit=1)).total
        finally:
            conn.set_trace_callback(None)

    first = seeded.read_now(listed)
    assert first == len(ROWS) and len(counts) == 1
    assert seeded.read_now(listed) == first and len(counts) == 1  # remembered
    # A write through the server moves the change log on: counted again.
    await seeded.write(lambda c: insert_doc(c, POSTS, post("count-a")))
    assert seeded.read_now(listed) == first + 1 and len(counts) == 2
    # So does a write by another process that knows nothing of the cache.
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("DELETE FROM posts WHERE slug = 'count-a'")
    finally:
        other.close()
    assert seeded.read_now(listed) == first and len(counts) == 3
    # Inside a caller's own transaction nothing is remembered (it may be rolled back).
    assert await seeded.write(lambda c: list_docs(c, ListQuery(POSTS, limit=1)).total) == first
