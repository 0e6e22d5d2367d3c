"""Migration files that change data: type changes, pre-checks, failures, edits, rollback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alyx_server.errors import MigrationError
from alyx_server.migrations import (
    apply_migrations,
    migration_status,
    rollback_migrations,
)
from alyx_server.schema.loader import parse_schema
from alyx_server.schema.model import Schema

HEAD = """\
version: 1
collections:
  posts:
    fields:
      id: { type: uuid, primary: true, default: auto }
      title: { type: string }
"""


def schema(extra: str = "", more: str = "") -> Schema:
    return parse_schema(HEAD + extra + more)


def write(migrations: Path, name: str, text: str) -> None:
    migrations.mkdir(parents=True, exist_ok=True)
    (migrations / name).write_text(text)


def dump(conn: sqlite3.Connection) -> list[str]:
    return list(conn.iterdump())


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    return tmp_path / "migrations"


VIEWS_TEXT = "      views: { type: string, nullable: true }\n"
VIEWS_INT = "      views: { type: int, nullable: true }\n"
CHANGE_VIEWS = "version: 1\noperations:\n  - change_type: { collection: posts, field: views, type: int }\n"


def seed_views(conn: sqlite3.Connection, migrations: Path, values: list[str | None]) -> None:
    apply_migrations(conn, schema(VIEWS_TEXT), migrations)
    for i, value in enumerate(values, start=1):
        conn.execute("INSERT INTO posts (id, title, views) VALUES (?, 't', ?)", (f"p{i}", value))


def test_change_type_precheck_names_the_rows_and_changes_nothing(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    seed_views(conn, migrations, ["12", "many", None, "lots"])
    write(migrations, "001_views_int.yaml", CHANGE_VIEWS)
    before = dump(conn)
    with pytest.raises(MigrationError) as caught:
        apply_migrations(conn, schema(VIEWS_INT), migrations)
    assert str(caught.value) == (
        "migrations/001_views_int.yaml:3: operations[0].change_type: schema change refused: "
        "2 rows in posts.views cannot become int (ids: p2, p4); nothing was changed"
    )
    assert dump(conn) == before


def test_change_type_converts_and_using_rewrites_values(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    seed_views(conn, migrations, ["12", "many", None])
    write(migrations, "001_views_int.yaml", (
        "version: 1\noperations:\n  - change_type:\n      collection: posts\n      field: views\n"
        "      type: int\n"
        "      using: \"CASE WHEN views GLOB '[0-9]*' THEN views ELSE 0 END\"\n"
    ))
    apply_migrations(conn, schema(VIEWS_INT), migrations)
    rows = conn.execute("SELECT id, views, typeof(views) FROM posts ORDER BY id").fetchall()
    assert rows == [("p1", 12, "integer"), ("p2", 0, "integer"), ("p3", 0, "integer")]
    # The rewrite logged nothing: only the three inserts are in the change feed.
    assert conn.execute("SELECT operation FROM _alyx_changes").fetchall() == [("INSERT",)] * 3


def test_a_failing_migration_leaves_the_database_exactly_as_it_was(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    seed_views(conn, migrations, ["1"])
    write(migrations, "001_breaks.yaml", (
        "version: 1\noperations:\n"
        "  - drop_field: { collection: posts, field: views }\n"
        "  - sql: { up: \"UPDATE posts SET title = 'x'; INSERT INTO nope VALUES (1)\" }\n"
    ))
    before = dump(conn)
    with pytest.raises(MigrationError) as caught:
        apply_migrations(conn, schema(), migrations)
    assert str(caught.value) == (
        "migrations/001_breaks.yaml:4: operations[1].sql: no such table: nope; nothing was changed"
    )
    assert dump(conn) == before
    assert conn.execute("SELECT title, views FROM posts").fetchall() == [("t", "1")]


def test_not_null_without_default_needs_using_and_the_precheck_says_so(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    apply_migrations(conn, schema(), migrations)
    conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'Hello')")
    required = "      status: { type: string }\n"
    write(migrations, "001_status.yaml", (
        "version: 1\noperations:\n"
        "  - add_field: { collection: posts, field: status, definition: { type: string } }\n"
    ))
    before = dump(conn)
    with pytest.raises(MigrationError, match=r"1 row has NULL in posts.status"):
        apply_migrations(conn, schema(required), migrations)
    assert dump(conn) == before
    write(migrations, "001_status.yaml", (
        "version: 1\noperations:\n"
        "  - add_field:\n      collection: posts\n      field: status\n"
        "      definition: { type: string }\n      using: \"'draft'\"\n"
    ))
    apply_migrations(conn, schema(required), migrations)
    assert conn.execute("SELECT id, status FROM posts").fetchall() == [("p1", "draft")]
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        conn.execute("INSERT INTO posts (id, title) VALUES ('p2', 'x')")


def test_stricter_constraint_through_alter_field(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    apply_migrations(conn, schema("      slug: { type: string, nullable: true }\n"), migrations)
    conn.executemany(
        "INSERT INTO posts (id, title, slug) VALUES (?, 't', ?)",
        [("p1", "a"), ("p2", "a"), ("p3", None)],
    )
    strict = schema("      slug: { type: string, unique: true }\n")
    with pytest.raises(MigrationError, match=r"~ posts.slug NOT NULL, unique \(posts.slug"):
        apply_migrations(conn, strict, migrations)
    write(migrations, "001_strict_slug.yaml", (
        "version: 1\noperations:\n"
        "  - alter_field:\n      collection: posts\n      field: slug\n"
        "      definition: { type: string, unique: true }\n"
    ))
    before = dump(conn)
    with pytest.raises(MigrationError) as caught:
        apply_migrations(conn, strict, migrations)
    assert "1 row has NULL in posts.slug" in str(caught.value)
    assert "2 rows have duplicate values in posts.slug" in str(caught.value)
    assert dump(conn) == before
    conn.execute("UPDATE posts SET slug = id")
    apply_migrations(conn, strict, migrations)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO posts (id, title, slug) VALUES ('p4', 't', 'p1')")


def test_edited_applied_migration_is_reported_and_refused(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    apply_migrations(conn, schema(VIEWS_TEXT), migrations)
    write(migrations, "001_noop.yaml", "version: 1\noperations: []\n")
    apply_migrations(conn, schema(VIEWS_TEXT), migrations)
    write(migrations, "001_noop.yaml", "version: 1\noperations: []\n# edited\n")
    status = migration_status(conn, schema(VIEWS_TEXT), migrations)
    assert [(s.state, s.name) for s in status] == [("applied", "auto"), ("edited", "001_noop")]
    with pytest.raises(MigrationError) as caught:
        apply_migrations(conn, schema(VIEWS_TEXT), migrations)
    message = str(caught.value)
    assert message.startswith("migrations/001_noop.yaml was edited after it was applied on ")
    assert message.endswith(
        "restore it as it was applied (e.g. `git checkout` it) and write a new migration "
        "for further changes"
    )


def test_a_malformed_file_stops_apply_with_its_line(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    apply_migrations(conn, schema(), migrations)
    write(migrations, "001_bad.yaml", (
        "version: 1\noperations:\n  - rename_field:\n      collection: posts\n      from: a\n"
    ))
    with pytest.raises(MigrationError) as caught:
        apply_migrations(conn, schema(), migrations)
    assert str(caught.value) == (
        'migrations/001_bad.yaml:4: operations[0].rename_field: missing "to"'
    )
    write(migrations, "001_bad.yaml", (
        "version: 1\noperations:\n  - drop_field: { collection: posts, field: nope }\n"
    ))
    with pytest.raises(MigrationError) as caught:
        apply_migrations(conn, schema(), migrations)
    assert str(caught.value) == (
        "migrations/001_bad.yaml:3: operations[0].drop_field: posts.nope does not exist "
        "(fields: id, title)"
    )


def test_rollback_of_a_file_restores_structure_and_of_auto_drops_additions(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    apply_migrations(conn, schema(VIEWS_TEXT), migrations)
    conn.execute("INSERT INTO posts (id, title, views) VALUES ('p1', 'Hello', '7')")
    write(migrations, "001_reshape.yaml", (
        "version: 1\noperations:\n"
        "  - rename_field: { collection: posts, from: title, to: heading }\n"
        "  - drop_field: { collection: posts, field: views }\n"
        "  - sql: { up: \"UPDATE posts SET heading = upper(heading)\", "
        "down: \"UPDATE posts SET heading = lower(heading)\" }\n"
    ))
    reshaped = parse_schema(HEAD.replace("title", "heading"))
    apply_migrations(conn, reshaped, migrations)
    assert conn.execute("SELECT * FROM posts").fetchall() == [("p1", "HELLO")]
    assert rollback_migrations(conn, migrations) == ["001_reshape"]
    assert conn.execute("SELECT id, title, views FROM posts").fetchall() == [("p1", "hello", None)]
    status = migration_status(conn, reshaped, migrations)
    assert [(s.state, s.name) for s in status] == [("applied", "auto"), ("pending", "001_reshape")]
    assert rollback_migrations(conn, migrations) == ["auto"]
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'posts'").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM _alyx_migrations").fetchone() == (0,)
    with pytest.raises(MigrationError, match="cannot roll back 1: only 0 migrations are applied"):
        rollback_migrations(conn, migrations)


def test_rollback_refuses_sql_without_down_before_touching_anything(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    apply_migrations(conn, schema(), migrations)
    write(migrations, "001_data.yaml", (
        "version: 1\noperations:\n  - sql: { up: \"UPDATE posts SET title = 'x'\" }\n"
    ))
    apply_migrations(conn, schema(), migrations)
    before = dump(conn)
    with pytest.raises(MigrationError) as caught:
        rollback_migrations(conn, migrations, 2)
    assert str(caught.value) == (
        "001_data cannot be rolled back: migrations/001_data.yaml:3: operations[0].sql has no down"
    )
    assert dump(conn) == before


COMMENTS = """\
  comments:
    fields:
      id: { type: uuid, primary: true, default: auto }
      post_id: { type: uuid, references: posts.id, onDelete: cascade }
"""


def test_drop_and_rename_collection_with_references(
    conn: sqlite3.Connection, migrations: Path
) -> None:
    apply_migrations(conn, schema(more=COMMENTS), migrations)
    conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'Hello')")
    conn.execute("INSERT INTO comments (id, post_id) VALUES ('c1', 'p1')")
    write(migrations, "001_articles.yaml", (
        "version: 1\noperations:\n  - rename_collection: { from: posts, to: articles }\n"
    ))
    renamed = parse_schema((HEAD + COMMENTS).replace("posts", "articles"))
    result = apply_migrations(conn, renamed, migrations)
    assert result.auto == ()
    assert conn.execute("SELECT id, title FROM articles").fetchall() == [("p1", "Hello")]
    conn.execute("DELETE FROM articles")
    assert conn.execute("SELECT count(*) FROM comments").fetchone() == (0,)
    write(migrations, "002_drop.yaml", (
        "version: 2\noperations:\n  - drop_collection: { collection: articles }\n"
    ))
    with pytest.raises(MigrationError, match=r"comments.post_id references articles: drop or change"):
        apply_migrations(conn, schema(), migrations)
