"""Fixtures for the database layer: a schema with every field type, and real database files.

Until the system migrations exist in this package's tests, `_alyx_changes` is created
here with the DDL the system migration uses; collection tables come from the DDL module.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from alyx_server.db import Database
from alyx_server.schema.ddl import collection_sql
from alyx_server.schema.model import (
    Collection,
    Default,
    Field,
    FieldType,
    Reference,
    Schema,
    Validation,
)

CHANGES_DDL = [
    "CREATE TABLE _alyx_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, "
    "operation TEXT NOT NULL, doc_id, changed_fields TEXT, ts TEXT NOT NULL)",
    "CREATE INDEX idx_alyx_changes_ts ON _alyx_changes (ts)",
]

AUTHORS = Collection(
    "authors",
    (
        Field("id", FieldType.UUID, primary=True, default=Default("auto")),
        Field("name", FieldType.STRING),
        Field(
            "email",
            FieldType.STRING,
            unique=True,
            nullable=True,
            validation=Validation(format="email"),
        ),
    ),
)

POSTS = Collection(
    "posts",
    (
        Field("id", FieldType.UUID, primary=True, default=Default("auto")),
        Field("title", FieldType.STRING, validation=Validation(min_length=1, max_length=20)),
        Field("slug", FieldType.STRING, unique=True, validation=Validation(pattern=r"^[a-z0-9-]+$")),
        Field(
            "author_id",
            FieldType.UUID,
            nullable=True,
            references=Reference("authors", "id", "restrict"),
        ),
        Field("published", FieldType.BOOL, default=Default("literal", False)),
        Field("views", FieldType.INT, default=Default("literal", 0), validation=Validation(min=0)),
        Field("score", FieldType.FLOAT, nullable=True, validation=Validation(max=10)),
        Field("status", FieldType.STRING, nullable=True, validation=Validation(enum=("draft", "live"))),
        Field("site", FieldType.STRING, nullable=True, validation=Validation(format="url")),
        Field("ref", FieldType.STRING, nullable=True, validation=Validation(format="uuid")),
        Field("tags", FieldType.JSON, nullable=True),
        Field("body", FieldType.BLOB, nullable=True),
        Field("created_at", FieldType.TIMESTAMP, default=Default("now")),
        Field("updated_at", FieldType.TIMESTAMP, default=Default("now"), on_update_now=True),
        Field("secret", FieldType.STRING, nullable=True, internal=True),
    ),
)

COUNTERS = Collection(
    "counters",
    (
        Field("id", FieldType.INT, primary=True, default=Default("auto")),
        Field("n", FieldType.INT),
        Field("label", FieldType.TEXT, nullable=True),
    ),
)

SCHEMA = Schema((AUTHORS, POSTS, COUNTERS))


def create_tables(path: Path, schema: Schema = SCHEMA) -> None:
    """Create `_alyx_changes` and every collection table in the file at `path`."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for sql in CHANGES_DDL:
            conn.execute(sql)
        for collection in schema:
            for sql in collection_sql(collection):
                conn.execute(sql)
    finally:
        conn.close()


OpenDb = Callable[..., Awaitable[Database]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "alyx.db"
    create_tables(path)
    return path


@pytest.fixture
async def open_db(db_path: Path) -> AsyncIterator[OpenDb]:
    """Open Databases on the fixture file (closed at the end of the test)."""
    opened: list[Database] = []

    async def open_(**options: Any) -> Database:
        options.setdefault("poll_interval", None)
        db = await Database.open(db_path, SCHEMA, **options)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        await db.close()


@pytest.fixture
async def db(open_db: OpenDb) -> Database:
    return await open_db()


def post(slug: str, **extra: Any) -> dict[str, Any]:
    """A valid posts document."""
    return {"title": f"Post {slug}"[:20], "slug": slug, **extra}
