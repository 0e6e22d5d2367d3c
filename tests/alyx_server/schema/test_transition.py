"""Table transitions on real SQLite files: ADD COLUMN, rebuilds, renames, conversions, FKs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from alyx_server.errors import MigrationError
from alyx_server.schema.diff import diff_schemas
from alyx_server.schema.model import (
    Collection,
    Default,
    Field,
    FieldType,
    Index,
    Reference,
    Schema,
)
from alyx_server.schema.transition import (
    apply_diff,
    can_add_column,
    create_collection,
    drop_collection,
    foreign_key_problems,
    needs_rebuild,
    rebuild_collection,
    rename_collection,
)

T = FieldType

CHANGES_DDL = (
    "CREATE TABLE _alyx_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "collection TEXT NOT NULL, operation TEXT NOT NULL, doc_id, changed_fields TEXT, "
    "ts TEXT NOT NULL)",
    "CREATE INDEX idx_alyx_changes_ts ON _alyx_changes (ts)",
)

ID = Field("id", T.UUID, primary=True, default=Default("auto"))
POSTS = Collection(
    "posts",
    (
        ID,
        Field("title", T.STRING, unique=True),
        Field("n", T.INT, nullable=True, index=True),
        Field("updated_at", T.TIMESTAMP, default=Default("now"), on_update_now=True),
    ),
    indexes=(Index("idx_posts_title_n", ("title", "n"), order="desc"),),
)
COMMENTS = Collection(
    "comments",
    (
        Field("id", T.INT, primary=True, default=Default("auto")),
        Field("post_id", T.UUID, references=Reference("posts", "id", "cascade")),
        Field("body", T.TEXT),
    ),
)
BASE = Schema((POSTS, COMMENTS))


def open_db(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the system table."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_alyx_changes'").fetchone() is None:
        for sql in CHANGES_DDL:
            conn.execute(sql)
    return conn


def create_schema(conn: sqlite3.Connection, schema: Schema) -> None:
    for c in schema:
        create_collection(conn, c)


def migrate(
    conn: sqlite3.Connection,
    old: Schema,
    new: Schema,
    *,
    allow_destructive: bool = False,
    column_maps: Mapping[str, Mapping[str, str | None]] | None = None,
) -> None:
    """What the migration runner does: FKs off, one transaction, foreign_key_check, commit."""
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("BEGIN")
    try:
        apply_diff(
            conn,
            diff_schemas(old, new),
            allow_destructive=allow_destructive,
            column_maps=column_maps,
        )
        problems = foreign_key_problems(conn)
        if problems:
            raise MigrationError("; ".join(problems))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    conn.execute("PRAGMA foreign_keys=ON")


def shape(conn: sqlite3.Connection) -> dict[str, Any]:
    """Everything a schema decides about the stored tables, independent of column order."""
    tables: dict[str, Any] = {}
    names = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for (name,) in names:
        cols = {r[1]: r[2:] for r in conn.execute(f'PRAGMA table_info("{name}")')}
        fks = sorted(r[2:] for r in conn.execute(f'PRAGMA foreign_key_list("{name}")'))
        indexes = sorted(r[1:4] for r in conn.execute(f'PRAGMA index_list("{name}")'))
        tables[name] = (cols, fks, indexes)
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"
    ).fetchall()
    return {"tables": tables, "objects": sorted(objects, key=lambda r: (r[0], r[1]))}


def fresh_shape(path: Path, schema: Schema) -> dict[str, Any]:
    conn = open_db(path)
    create_schema(conn, schema)
    out = shape(conn)
    conn.close()
    return out


def rootpage(conn: sqlite3.Connection, table: str) -> int:
    row = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    return int(row[0])


def changes(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT collection, operation, doc_id, changed_fields FROM _alyx_changes ORDER BY id"
    ).fetchall()


def with_fields(c: Collection, *fields: Field, drop: tuple[str, ...] = ()) -> Collection:
    """`c` with `fields` replacing the fields of the same name or appended, minus `drop`."""
    by_name = {f.name: f for f in fields}
    kept = [by_name.pop(f.name, f) for f in c.fields if f.name not in drop]
    return replace(c, fields=(*kept, *by_name.values()))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """BASE with posts p1..p3 and two comments on p1, change log emptied."""
    db = open_db(tmp_path / "alyx.db")
    create_schema(db, BASE)
    db.execute("PRAGMA foreign_keys=ON")
    db.executemany(
        "INSERT INTO posts (id, title, n) VALUES (?, ?, ?)",
        [("p1", "one", 1), ("p2", "two", None), ("p3", "three", 3)],
    )
    db.executemany("INSERT INTO comments (post_id, body) VALUES ('p1', ?)", [("hi",), ("yo",)])
    db.execute("DELETE FROM _alyx_changes")
    yield db
    db.close()


def posts_with(*fields: Field, drop: tuple[str, ...] = ()) -> Schema:
    return Schema((with_fields(POSTS, *fields, drop=drop), COMMENTS))


# -- ADD COLUMN or rebuild ----------------------------------------------------------------


def test_a_nullable_field_is_added_in_place(conn: sqlite3.Connection, tmp_path: Path) -> None:
    new = posts_with(Field("views", T.INT, nullable=True))
    before = rootpage(conn, "posts")
    migrate(conn, BASE, new)
    assert rootpage(conn, "posts") == before
    assert shape(conn) == fresh_shape(tmp_path / "fresh.db", new)
    conn.execute("UPDATE posts SET views = 5 WHERE id = 'p1'")
    assert changes(conn) == [("posts", "UPDATE", "p1", '["views","updated_at"]')]


def test_a_constant_default_is_added_in_place(conn: sqlite3.Connection) -> None:
    new = posts_with(Field("views", T.INT, default=Default("literal", 0)))
    before = rootpage(conn, "posts")
    migrate(conn, BASE, new)
    assert rootpage(conn, "posts") == before
    assert conn.execute("SELECT id, views FROM posts ORDER BY id").fetchall() == [
        ("p1", 0), ("p2", 0), ("p3", 0),
    ]


def test_a_now_default_rebuilds_and_fills_every_row(conn: sqlite3.Connection) -> None:
    new = posts_with(Field("seen_at", T.TIMESTAMP, default=Default("now")))
    before = rootpage(conn, "posts")
    migrate(conn, BASE, new)
    assert rootpage(conn, "posts") != before
    stamps = [r[0] for r in conn.execute("SELECT seen_at FROM posts")]
    assert len(stamps) == 3 and all(s.endswith("Z") and len(s) == 24 for s in stamps)


@pytest.mark.parametrize(
    ("f", "in_place"),
    [
        (Field("a", T.INT, nullable=True), True),
        (Field("a", T.INT, default=Default("literal", 1)), True),
        (Field("a", T.STRING, nullable=True, unique=True), True),
        (Field("a", T.INT), False),
        (Field("a", T.UUID, default=Default("auto")), False),
        (Field("a", T.TIMESTAMP, default=Default("now")), False),
        (Field("a", T.UUID, default=Default("literal", "u"), references=Reference("x", "i")),
         False),
        (Field("a", T.UUID, nullable=True, references=Reference("x", "id")), True),
        (Field("a", T.INT, primary=True), False),
    ],
)
def test_which_new_fields_alter_table_can_add(f: Field, in_place: bool) -> None:
    assert can_add_column(f) is in_place
    assert needs_rebuild(POSTS, with_fields(POSTS, f)) is not in_place


def test_index_and_unique_flags_change_indexes_in_place(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    new = posts_with(
        replace(POSTS.fields[1], unique=False, index=True), replace(POSTS.fields[2], index=False)
    )
    before = rootpage(conn, "posts")
    migrate(conn, BASE, new)
    assert rootpage(conn, "posts") == before
    assert shape(conn) == fresh_shape(tmp_path / "fresh.db", new)
    conn.execute("INSERT INTO posts (id, title) VALUES ('p4', 'one')")


# -- rebuilds ------------------------------------------------------------------------------


def test_a_rebuild_keeps_rows_indexes_triggers_and_logs_nothing(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    new = posts_with(Field("n", T.FLOAT, nullable=True, index=True), drop=())
    migrate(conn, BASE, new, allow_destructive=True)
    assert conn.execute("SELECT id, title, n, typeof(n) FROM posts ORDER BY id").fetchall() == [
        ("p1", "one", 1.0, "real"), ("p2", "two", None, "null"), ("p3", "three", 3.0, "real"),
    ]
    assert changes(conn) == []
    assert shape(conn) == fresh_shape(tmp_path / "fresh.db", new)
    conn.execute("INSERT INTO posts (id, title) VALUES ('p4', 'four')")
    conn.execute("UPDATE posts SET n = 2.5 WHERE id = 'p4'")
    conn.execute("DELETE FROM posts WHERE id = 'p2'")
    assert changes(conn) == [
        ("posts", "INSERT", "p4", None),
        ("posts", "UPDATE", "p4", '["n","updated_at"]'),
        ("posts", "DELETE", "p2", None),
    ]
    (stamp,) = conn.execute("SELECT updated_at FROM posts WHERE id = 'p4'").fetchone()
    assert stamp is not None


def test_foreign_keys_into_a_rebuilt_parent_are_still_enforced(conn: sqlite3.Connection) -> None:
    migrate(conn, BASE, posts_with(drop=("n",)), allow_destructive=True)
    assert conn.execute("SELECT COUNT(*) FROM comments").fetchone() == (2,)
    assert foreign_key_problems(conn) == []
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        conn.execute("INSERT INTO comments (post_id, body) VALUES ('nope', 'x')")
    conn.execute("DELETE FROM posts WHERE id = 'p1'")
    assert conn.execute("SELECT COUNT(*) FROM comments").fetchone() == (0,)


def test_a_rebuilt_child_keeps_its_foreign_key(conn: sqlite3.Connection) -> None:
    body = Field("body", T.TEXT, nullable=True)
    migrate(conn, BASE, Schema((POSTS, with_fields(COMMENTS, body))))
    assert conn.execute("SELECT id, post_id, body FROM comments").fetchall() == [
        (1, "p1", "hi"), (2, "p1", "yo"),
    ]
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        conn.execute("INSERT INTO comments (post_id, body) VALUES ('nope', 'x')")


def test_foreign_key_problems_name_the_dangling_rows(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.executemany("INSERT INTO comments (post_id, body) VALUES (?, 'x')", [("zz",), ("zz",)])
    assert foreign_key_problems(conn) == [
        "2 rows in comments.post_id reference a missing posts.id (ids: 3, 4)"
    ]


def test_a_column_map_moves_data_into_a_renamed_field(conn: sqlite3.Connection) -> None:
    heading = replace(POSTS.fields[1], name="heading")
    new = Schema((replace(POSTS, fields=(ID, heading, *POSTS.fields[2:]), indexes=()), COMMENTS))
    migrate(conn, BASE, new, allow_destructive=True, column_maps={"posts": {"heading": "title"}})
    assert conn.execute("SELECT id, heading FROM posts ORDER BY id").fetchall() == [
        ("p1", "one"), ("p2", "two"), ("p3", "three"),
    ]
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute("INSERT INTO posts (id, heading) VALUES ('p4', 'one')")


def test_a_bad_column_map_is_refused_with_its_name(conn: sqlite3.Connection) -> None:
    message = r"posts\.title names posts\.nope, which does not exist"
    with pytest.raises(MigrationError, match=message):
        rebuild_collection(conn, POSTS, POSTS, column_map={"title": "nope"})


def test_destructive_changes_are_refused_without_permission(conn: sqlite3.Connection) -> None:
    with pytest.raises(MigrationError) as err:
        migrate(conn, BASE, posts_with(drop=("n",)))
    assert str(err.value) == (
        "destructive schema changes need a migration file: "
        "- posts.n (drops column posts.n and its data)"
    )


def test_a_refused_rebuild_names_the_rows_and_changes_nothing(conn: sqlite3.Connection) -> None:
    before = list(conn.iterdump())
    strict = posts_with(replace(POSTS.fields[2], nullable=False))
    refused = r"^schema change refused: 1 row has NULL in posts\.n$"
    with pytest.raises(MigrationError, match=refused):
        migrate(conn, BASE, strict, allow_destructive=True)
    assert list(conn.iterdump()) == before
    with pytest.raises(MigrationError, match=r"^cannot rebuild posts: 1 row has NULL in posts\.n$"):
        rebuild_collection(conn, POSTS, strict.collections[0])


def test_new_required_field_is_refused_on_rows_but_fine_on_an_empty_table(
    conn: sqlite3.Connection,
) -> None:
    new = Schema((POSTS, with_fields(COMMENTS, Field("score", T.INT))))
    with pytest.raises(MigrationError, match=r"2 rows have NULL in comments\.score \(a new field"):
        migrate(conn, BASE, new, allow_destructive=True)
    conn.execute("DELETE FROM comments")
    migrate(conn, BASE, new, allow_destructive=True)
    assert conn.execute("SELECT COUNT(*) FROM comments").fetchone() == (0,)


# -- collections --------------------------------------------------------------------------


def test_rename_collection_recreates_triggers_and_derived_indexes(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("BEGIN")
    articles = rename_collection(conn, POSTS, "articles")
    conn.execute("COMMIT")
    conn.execute("PRAGMA foreign_keys=ON")
    assert articles == replace(POSTS, name="articles")
    moved_comments = replace(COMMENTS, fields=(
        COMMENTS.fields[0],
        replace(COMMENTS.fields[1], references=Reference("articles", "id", "cascade")),
        COMMENTS.fields[2],
    ))
    assert shape(conn) == fresh_shape(tmp_path / "fresh.db", Schema((articles, moved_comments)))
    conn.execute("UPDATE articles SET title = 'uno' WHERE id = 'p1'")
    assert changes(conn) == [("articles", "UPDATE", "p1", '["title","updated_at"]')]
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        conn.execute("INSERT INTO comments (post_id, body) VALUES ('nope', 'x')")


def test_create_and_drop_collections_in_dependency_order(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "alyx.db")
    migrate(conn, Schema(), Schema((COMMENTS, POSTS)))
    assert shape(conn) == fresh_shape(tmp_path / "fresh.db", BASE)
    migrate(conn, Schema((COMMENTS, POSTS)), Schema((POSTS,)), allow_destructive=True)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")] \
        == ["_alyx_chg_posts_ins", "_alyx_chg_posts_upd", "_alyx_chg_posts_del",
            "_alyx_onupd_posts_updated_at"]
    drop_collection(conn, POSTS)
    assert shape(conn)["objects"] == [
        ("index", "idx_alyx_changes_ts", "_alyx_changes", CHANGES_DDL[1])
    ]


def test_sql_keywords_work_as_names_everywhere(tmp_path: Path) -> None:
    group = Collection("group", (Field("order", T.INT, primary=True), Field("select", T.STRING)))
    order = Collection(
        "order",
        (
            Field("from", T.UUID, primary=True, default=Default("auto")),
            Field("where", T.INT, references=Reference("group", "order"), index=True),
            Field("table", T.TIMESTAMP, default=Default("now"), on_update_now=True),
        ),
        indexes=(Index("index", ("where", "table"), unique=True),),
    )
    old = Schema((group, order))
    conn = open_db(tmp_path / "alyx.db")
    migrate(conn, Schema(), old)
    conn.execute('INSERT INTO "group" ("order", "select") VALUES (1, \'a\')')
    conn.execute('INSERT INTO "order" ("where") VALUES (1)')
    new = Schema((group, with_fields(order, Field("by", T.BOOL, default=Default("literal", True)),
                                     Field("where", T.FLOAT, references=None))))
    migrate(conn, old, new, allow_destructive=True)
    assert shape(conn) == fresh_shape(tmp_path / "fresh.db", new)
    assert conn.execute('SELECT "where", "by" FROM "order"').fetchall() == [(1.0, 1)]
    conn.execute("BEGIN")
    rename_collection(conn, new.collections[1], "having")
    conn.execute("COMMIT")
    conn.execute('UPDATE "having" SET "by" = 0')
    assert changes(conn)[-1][:2] == ("having", "UPDATE")


# -- type conversions -----------------------------------------------------------------------

UUID = "0b7e2e4a-3c1d-4f7e-9a55-8a2f1f3c9d10"
CONVERSIONS: list[tuple[FieldType, FieldType, Any, Any]] = [
    (T.INT, T.BOOL, 1, 1),
    (T.INT, T.BOOL, 2, "cannot become bool"),
    (T.INT, T.FLOAT, 3, 3.0),
    (T.INT, T.FLOAT, 2**53 + 1, "cannot become float"),
    (T.INT, T.STRING, -12, "-12"),
    (T.INT, T.JSON, 7, "7"),
    (T.INT, T.TIMESTAMP, 7, "cannot become timestamp"),
    (T.FLOAT, T.INT, 4.0, 4),
    (T.FLOAT, T.INT, 4.5, "cannot become int"),
    (T.FLOAT, T.TEXT, 0.1 + 0.2, "0.30000000000000004"),
    (T.FLOAT, T.TEXT, 1.5, "1.5"),
    (T.FLOAT, T.BOOL, 0.0, 0),
    (T.BOOL, T.STRING, 1, "true"),
    (T.BOOL, T.JSON, 0, "false"),
    (T.STRING, T.INT, "42", 42),
    (T.STRING, T.INT, "042", "cannot become int"),
    (T.STRING, T.FLOAT, "2.5", 2.5),
    (T.STRING, T.FLOAT, "abc", "cannot become float"),
    (T.STRING, T.BOOL, "true", 1),
    (T.STRING, T.BOOL, "yes", "cannot become bool"),
    (T.STRING, T.UUID, UUID, UUID),
    (T.STRING, T.UUID, "0B7E2E4A-3C1D-4F7E-9A55-8A2F1F3C9D10", "cannot become uuid"),
    (T.TEXT, T.TIMESTAMP, "2026-01-31T12:00:00.000Z", "2026-01-31T12:00:00.000Z"),
    (T.TEXT, T.TIMESTAMP, "2026-01-31", "cannot become timestamp"),
    (T.TEXT, T.JSON, '{"a": 1}', '{"a": 1}'),
    (T.TEXT, T.JSON, "hello", "cannot become json"),
    (T.TEXT, T.BLOB, "hé", "hé".encode()),
    (T.JSON, T.INT, "12", 12),
    (T.JSON, T.INT, "[1]", "cannot become int"),
    (T.JSON, T.BOOL, "true", 1),
    (T.JSON, T.STRING, '{"a":1}', '{"a":1}'),
    (T.TIMESTAMP, T.STRING, "2026-01-31T12:00:00.000Z", "2026-01-31T12:00:00.000Z"),
    (T.BLOB, T.TEXT, b"x", "cannot become text"),
]


@pytest.mark.parametrize(("old", "new", "value", "expected"), CONVERSIONS)
def test_type_conversions(
    tmp_path: Path, old: FieldType, new: FieldType, value: Any, expected: Any
) -> None:
    key = Field("id", T.STRING, primary=True)
    before = Schema((Collection("things", (key, Field("v", old, nullable=True))),))
    after = Schema((Collection("things", (key, Field("v", new, nullable=True))),))
    conn = open_db(tmp_path / "alyx.db")
    create_schema(conn, before)
    conn.executemany("INSERT INTO things VALUES (?, ?)", [("a", value), ("b", None)])
    if isinstance(expected, str) and expected.startswith("cannot become"):
        with pytest.raises(MigrationError, match=rf"1 row in things\.v {expected} \(ids: a\)"):
            migrate(conn, before, after, allow_destructive=True)
        return
    migrate(conn, before, after, allow_destructive=True)
    rows = conn.execute("SELECT id, v FROM things ORDER BY id").fetchall()
    assert rows == [("a", expected), ("b", None)]
    assert type(rows[0][1]) is type(expected)
