"""CRUD: validation codes, defaults, type conversion both ways, constraint errors."""

from __future__ import annotations

import base64
import itertools
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alyx_server.db import (
    Database,
    decode_row,
    delete_doc,
    encode_doc,
    get_doc,
    insert_doc,
    update_doc,
)
from alyx_server.db.connection import open_connection
from alyx_server.errors import Conflict, NotFound, ValidationError
from alyx_server.schema.ddl import collection_sql
from alyx_server.schema.model import Collection, Default, Field, FieldType, Schema
from alyx_server.tools.timestamps import ManualClock, format_timestamp
from tests.alyx_server.db.conftest import AUTHORS, COUNTERS, POSTS, create_tables, post

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _issues(data: dict[str, Any], *, partial: bool = False) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        encode_doc(POSTS, data, partial=partial)
    assert caught.value.code == "VALIDATION_ERROR"
    return caught.value.details


@pytest.mark.parametrize(
    ("data", "field", "code", "message"),
    [
        ({"slug": "a"}, "title", "required", "title is required"),
        (post("a", title=None), "title", "required",
         "title is required and cannot be null"),
        (post("a", title=5), "title", "invalid_type", "title must be a string"),
        (post("a", views="5"), "views", "invalid_type", "views must be an integer"),
        (post("a", views=1.5), "views", "invalid_type", "views must be an integer, not 1.5"),
        (post("a", views=True), "views", "invalid_type", "views must be an integer"),
        (post("a", views=2**63), "views", "invalid_type",
         "views is outside the 64-bit integer range"),
        (post("a", score="x"), "score", "invalid_type", "score must be a number"),
        (post("a", published="yes"), "published", "invalid_type",
         "published must be true or false"),
        (
            post("a", created_at="yesterday"),
            "created_at",
            "invalid_type",
            "created_at must be an RFC 3339 timestamp with a zone, such as 2026-01-31T12:00:00.000Z",
        ),
        (post("a", tags={1, 2}), "tags", "invalid_type",
         "tags must be a JSON value (Type is not JSON serializable: set)"),
        (post("a", body="***"), "body", "invalid_type", "body must be a base64 string"),
        (post("a", author_id="nope"), "author_id", "format_uuid",
         "author_id must be a UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e"),
        (post("a", title=""), "title", "min_length",
         "title must be at least 1 character long"),
        (post("a", title="x" * 21), "title", "max_length",
         "title must be at most 20 characters long"),
        (post("a", views=-1), "views", "min_value", "views must be at least 0"),
        (post("a", score=10.5), "score", "max_value", "score must be at most 10"),
        (post("A b"), "slug", "pattern", "slug must match the pattern ^[a-z0-9-]+$"),
        (post("a", status="gone"), "status", "enum", "status must be one of: draft, live"),
        (post("a", site="ftp://x"), "site", "format_url", "site must be an http(s) URL"),
        (post("a", site="http://[::1"), "site", "format_url", "site must be an http(s) URL"),
        (post("a", ref="123"), "ref", "format_uuid", "ref must be a UUID"),
        (post("a", colour="red"), "colour", "unknown_field",
         "unknown field 'colour'; fields of posts are: id, title, slug, author_id, published, "
         "views, score, status, site, ref, tags, body, created_at, updated_at"),
    ],
)  # fmt: skip
def test_each_validation_code(data: dict[str, Any], field: str, code: str, message: str) -> None:
    assert _issues(data) == [{"field": field, "code": code, "message": message}]


def test_email_format() -> None:
    with pytest.raises(ValidationError) as caught:
        encode_doc(AUTHORS, {"name": "A", "email": "not-an-email"})
    assert caught.value.details == [
        {"field": "email", "code": "format_email", "message": "email must be an email address"}
    ]


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        encode_doc(POSTS, {"title": "", "views": -3})
    assert str(caught.value) == (
        "invalid posts document: title must be at least 1 character long; "
        "views must be at least 0; slug is required"
    )
    assert [i["code"] for i in caught.value.details] == ["min_length", "min_value", "required"]


def test_partial_checks_only_given_keys() -> None:
    assert encode_doc(POSTS, {"views": 3}, partial=True) == {"views": 3}
    assert _issues({"title": None}, partial=True)[0]["code"] == "required"


def test_stored_forms() -> None:
    values = encode_doc(
        POSTS,
        post(
            "a",
            published=True,
            tags={"b": [1, 2]},
            body=base64.b64encode(b"\x00\xff").decode(),
            created_at="2026-01-31T13:00:00+01:00",
            views=4.0,
        ),
    )
    assert values["published"] == 1
    assert values["tags"] == '{"b":[1,2]}'
    assert values["body"] == b"\x00\xff"
    assert values["created_at"] == "2026-01-31T12:00:00.000Z"
    assert values["views"] == 4 and isinstance(values["views"], int)
    assert values["score"] is None


async def test_insert_applies_defaults_and_returns_the_stored_doc(db: Database) -> None:
    clock = ManualClock("2026-01-31T12:00:00.123456Z")
    doc = await db.write(lambda c: insert_doc(c, POSTS, post("a", secret="s"), clock=clock))
    assert UUID_RE.fullmatch(doc["id"])
    assert doc["published"] is False and doc["views"] == 0
    assert doc["created_at"] == doc["updated_at"] == "2026-01-31T12:00:00.123Z"
    assert "secret" not in doc
    full = await db.read(lambda c: get_doc(c, POSTS, doc["id"], internal=True))
    assert full is not None and full["secret"] == "s"


async def test_update_sets_on_update_fields_and_refuses_primary_key_change(db: Database) -> None:
    clock = ManualClock("2026-01-31T12:00:00Z")
    doc = await db.write(lambda c: insert_doc(c, POSTS, post("a"), clock=clock))
    clock.advance(60)
    updated = await db.write(lambda c: update_doc(c, POSTS, doc["id"], {"title": "B"}, clock=clock))
    assert updated["title"] == "B"
    assert updated["created_at"] == "2026-01-31T12:00:00.000Z"
    assert updated["updated_at"] == "2026-01-31T12:01:00.000Z"
    with pytest.raises(ValidationError) as caught:
        await db.write(lambda c: update_doc(c, POSTS, doc["id"], {"id": "other"}))
    assert caught.value.details == [{"field": "id", "code": "immutable", "message": "id cannot be changed"}]
    same = await db.write(lambda c: update_doc(c, POSTS, doc["id"], {"id": doc["id"]}))
    assert same == updated


async def test_missing_documents(db: Database) -> None:
    with pytest.raises(NotFound, match="no document 'nope' in posts"):
        await db.write(lambda c: update_doc(c, POSTS, "nope", {"title": "x"}))
    with pytest.raises(NotFound, match="no document 'nope' in posts"):
        await db.write(lambda c: delete_doc(c, POSTS, "nope"))
    with pytest.raises(NotFound, match="no document 'abc' in counters"):
        await db.write(lambda c: delete_doc(c, COUNTERS, "abc"))
    assert await db.read(lambda c: get_doc(c, COUNTERS, "abc")) is None


async def test_integer_primary_keys_from_text(db: Database) -> None:
    doc = await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 1}))
    assert doc == {"id": 1, "n": 1, "label": None}
    assert await db.read(lambda c: get_doc(c, COUNTERS, "1")) == doc
    await db.write(lambda c: delete_doc(c, COUNTERS, "1"))
    assert await db.read(lambda c: get_doc(c, COUNTERS, 1)) is None


async def test_foreign_key_violation_names_the_field(db: Database) -> None:
    author = await db.write(lambda c: insert_doc(c, AUTHORS, {"name": "Ann"}))
    missing = "0f8fad5b-d9cb-469f-a165-70867728950e"
    with pytest.raises(Conflict) as caught:
        await db.write(lambda c: insert_doc(c, POSTS, post("a", author_id=missing)))
    assert caught.value.code == "FOREIGN_KEY_VIOLATION"
    assert caught.value.field == "author_id"
    assert str(caught.value) == "author_id refers to a authors document that does not exist"
    assert caught.value.details[0]["code"] == "foreign_key_violation"

    await db.write(lambda c: insert_doc(c, POSTS, post("b", author_id=author["id"])))
    with pytest.raises(Conflict) as refused:
        await db.write(lambda c: delete_doc(c, AUTHORS, author["id"]))
    assert refused.value.code == "FOREIGN_KEY_VIOLATION"
    assert str(refused.value) == f"cannot delete authors '{author['id']}': other documents still reference it"


async def test_unique_violation_on_update(db: Database) -> None:
    await db.write(lambda c: insert_doc(c, POSTS, post("a")))
    doc = await db.write(lambda c: insert_doc(c, POSTS, post("b")))
    with pytest.raises(Conflict) as caught:
        await db.write(lambda c: update_doc(c, POSTS, doc["id"], {"slug": "a"}))
    assert (caught.value.code, caught.value.field) == ("UNIQUE_VIOLATION", "slug")


async def test_not_null_from_sqlite_becomes_required(db: Database, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE strict_t (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL)")
    conn.commit()
    conn.close()
    loose = Collection(
        "strict_t",
        (
            Field("id", FieldType.UUID, primary=True, default=Default("auto")),
            Field("name", FieldType.STRING, nullable=True),  # the table is stricter than the schema
        ),
    )
    with pytest.raises(ValidationError) as caught:
        await db.write(lambda c: insert_doc(c, loose, {}))
    assert caught.value.details == [{"field": "name", "code": "required", "message": "name is required"}]


# -- round trips -------------------------------------------------------------------------
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
_VALUES: dict[FieldType, st.SearchStrategy[Any]] = {
    FieldType.UUID: st.uuids().map(str),
    FieldType.STRING: st.text(),
    FieldType.TEXT: st.text(),
    FieldType.INT: st.integers(-(2**63), 2**63 - 1),
    FieldType.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
    FieldType.BOOL: st.booleans(),
    FieldType.TIMESTAMP: st.datetimes().map(format_timestamp),
    FieldType.JSON: _JSON.filter(lambda v: v is not None),
    FieldType.BLOB: st.binary().map(lambda b: base64.b64encode(b).decode()),
}


@st.composite
def _collection_and_doc(draw: st.DrawFn, name: str) -> tuple[Collection, dict[str, Any]]:
    # File fields hold what uploads stored (tests/alyx_server/storage), never drawn values.
    types = draw(
        st.lists(st.sampled_from([t for t in FieldType if t is not FieldType.FILE]), min_size=1, max_size=6)
    )
    nullable = draw(st.lists(st.booleans(), min_size=len(types), max_size=len(types)))
    fields = [Field("id", FieldType.UUID, primary=True, default=Default("auto"))]
    fields += [Field(f"f{i}", t, nullable=n) for i, (t, n) in enumerate(zip(types, nullable, strict=True))]
    doc: dict[str, Any] = {}
    for f in fields[1:]:
        doc[f.name] = None if f.nullable and draw(st.booleans()) else draw(_VALUES[f.type])
    return Collection(name, tuple(fields)), doc


def test_documents_round_trip(tmp_path: Path) -> None:
    """Random documents of random field types: encode -> insert -> get -> decode is identity."""
    create_tables(tmp_path / "rt.db", Schema(()))
    conn = open_connection(tmp_path / "rt.db")
    names = itertools.count()

    @given(st.data())
    def round_trip(data: st.DataObject) -> None:
        collection, doc = data.draw(_collection_and_doc(f"things{next(names)}"))
        for sql in collection_sql(collection):
            conn.execute(sql)
        stored = insert_doc(conn, collection, doc)
        assert {k: v for k, v in stored.items() if k != "id"} == doc
        assert get_doc(conn, collection, stored["id"]) == stored
        table = collection.name
        row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (stored["id"],)).fetchone()
        assert decode_row(collection, row) == stored

    try:
        round_trip()
    finally:
        conn.close()
