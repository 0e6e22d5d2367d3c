"""apply / plan / status on real SQLite files with schemas written as schema.yaml text."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from alyx_server.errors import MigrationError
from alyx_server.migrations.authoring import create_migration
from alyx_server.migrations.runner import apply_migrations, migration_status, plan_migrations
from alyx_server.schema.loader import parse_schema
from alyx_server.schema.model import Schema

POSTS = """\
version: 1
collections:
  posts:
    fields:
      id: {{ type: uuid, primary: true, default: auto }}
      title: {{ type: string }}
{extra}"""


def posts(extra: str = "") -> Schema:
    return parse_schema(POSTS.format(extra=extra))


def tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def history(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT version, name, kind FROM _alyx_migrations ORDER BY id").fetchall()


def test_first_apply_creates_system_and_user_tables_with_a_snapshot(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    schema = posts()
    result = apply_migrations(conn, schema, tmp_path / "migrations")
    assert result.system and result.files == ()
    assert result.auto == ("+ posts",)
    assert {"posts", "_alyx_users", "_alyx_changes", "_alyx_migrations"} <= tables(conn)
    assert columns(conn, "posts") == ["id", "title"]
    ((version, name, kind, checksum, snapshot),) = conn.execute(
        "SELECT version, name, kind, checksum, schema FROM _alyx_migrations"
    ).fetchall()
    assert (version, name, kind) == (None, "auto", "auto")
    assert checksum == schema.checksum()
    assert Schema.from_dict(json.loads(snapshot)) == schema
    again = apply_migrations(conn, schema, tmp_path / "migrations")
    assert not again.changed
    assert len(history(conn)) == 1


def test_safe_change_is_applied_automatically_and_keeps_rows(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    apply_migrations(conn, posts(), tmp_path)
    conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'Hello')")
    extra = "      views: { type: int, default: 0 }\n      tags: { type: json, nullable: true }\n"
    result = apply_migrations(conn, posts(extra), tmp_path)
    assert result.auto == ("+ posts.views", "+ posts.tags")
    assert conn.execute("SELECT id, title, views, tags FROM posts").fetchall() == [("p1", "Hello", 0, None)]
    assert [row[2] for row in history(conn)] == ["auto", "auto"]


def test_destructive_change_is_blocked_naming_the_file_to_write(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(conn, posts("      slug: { type: string, nullable: true }\n"), migrations)
    before = list(conn.iterdump())
    with pytest.raises(MigrationError) as caught:
        apply_migrations(conn, posts(), migrations)
    assert str(caught.value) == (
        "schema.yaml has destructive changes: "
        "- posts.slug (drops column posts.slug and its data). "
        "Write a migration: alyx migrate create drop_slug "
        "(creates migrations/001_drop_slug.yaml)"
    )
    assert list(conn.iterdump()) == before
    plan = plan_migrations(conn, posts(), migrations)
    assert plan.blocked == str(caught.value)
    status = migration_status(conn, posts(), migrations)
    assert [(s.state, s.name) for s in status] == [("applied", "auto"), ("blocked", "- posts.slug")]


def write(migrations: Path, name: str, text: str) -> Path:
    migrations.mkdir(parents=True, exist_ok=True)
    path = migrations / name
    path.write_text(text)
    return path


def test_create_prefills_the_drop_and_applying_it_keeps_other_data(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(conn, posts("      slug: { type: string, nullable: true }\n"), migrations)
    conn.execute("INSERT INTO posts (id, title, slug) VALUES ('p1', 'Hello', 'hello')")
    path = create_migration(conn, posts(), migrations, "drop_slug")
    assert path == migrations / "001_drop_slug.yaml"
    assert path.read_text() == (
        "version: 1\n"
        "name: drop_slug\n"
        "description: 'schema.yaml changes: drops column posts.slug and its data'\n"
        "operations:\n"
        "  - drop_field: {collection: posts, field: slug}\n"
    )
    status = migration_status(conn, posts(), migrations)
    assert [(s.state, s.name) for s in status] == [("applied", "auto"), ("pending", "001_drop_slug")]
    result = apply_migrations(conn, posts(), migrations)
    assert (result.files, result.auto) == (("001_drop_slug",), ())
    assert conn.execute("SELECT * FROM posts").fetchall() == [("p1", "Hello")]
    assert history(conn)[-1] == (1, "drop_slug", "file")
    assert not apply_migrations(conn, posts(), migrations).changed


def test_create_hints_at_a_rename_and_refuses_bad_names(conn: sqlite3.Connection, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(conn, posts("      slug: { type: string, nullable: true }\n"), migrations)
    renamed = posts("      handle: { type: string, nullable: true }\n")
    text = create_migration(conn, renamed, migrations, "rename_slug").read_text()
    assert (
        "  # posts.slug may have been renamed to posts.handle (same type): to keep\n"
        "  # its data, replace the drop_field below with\n"
        "  #   - rename_field: { collection: posts, from: slug, to: handle }\n"
        "  - drop_field: {collection: posts, field: slug}\n"
    ) in text
    with pytest.raises(MigrationError, match=r"migration name 'Drop-It' must use only a-z, 0-9"):
        create_migration(conn, renamed, migrations, "Drop-It")
    empty = create_migration(
        conn, posts("      slug: { type: string, nullable: true }\n"), tmp_path / "other", "noop"
    )
    assert "operations: []\n# Example: data changes" in empty.read_text()


def test_rename_field_keeps_the_data(conn: sqlite3.Connection, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(conn, posts("      slug: { type: string, unique: true }\n"), migrations)
    conn.execute("INSERT INTO posts (id, title, slug) VALUES ('p1', 'Hello', 'hello')")
    write(
        migrations,
        "001_rename_slug.yaml",
        ("version: 1\noperations:\n  - rename_field: { collection: posts, from: slug, to: handle }\n"),
    )
    result = apply_migrations(conn, posts("      handle: { type: string, unique: true }\n"), migrations)
    assert result.files == ("001_rename_slug",) and result.auto == ()
    assert conn.execute("SELECT id, title, handle FROM posts").fetchall() == [("p1", "Hello", "hello")]
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "uq_posts_handle" in indexes and "uq_posts_slug" not in indexes
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute("INSERT INTO posts (id, title, handle) VALUES ('p2', 'x', 'hello')")


def test_create_prefills_type_changes_constraints_and_unique_indexes(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(
        conn,
        posts(
            "      views: { type: string, nullable: true }\n      slug: { type: string, nullable: true }\n"
        ),
        migrations,
    )
    conn.execute("INSERT INTO posts (id, title, views, slug) VALUES ('p1', 't', '3', 's')")
    target = posts(
        "      views: { type: int, nullable: true }\n"
        "      slug: { type: string }\n"
        "    indexes:\n      - { name: uq_title, fields: [title], unique: true }\n"
    )
    path = create_migration(conn, target, migrations, "tighten")
    text = path.read_text()
    assert "  - change_type: {collection: posts, field: views, type: int}\n" in text
    assert "  - alter_field: {collection: posts, field: slug, definition: {type: string}}\n" in text
    assert "  - add_index: {collection: posts, name: uq_title, fields: [title], unique: true}\n" in text
    result = apply_migrations(conn, target, migrations)
    assert (result.files, result.auto) == (("001_tighten",), ())
    assert conn.execute("SELECT views, slug FROM posts").fetchall() == [(3, "s")]


def test_planning_decodes_only_the_newest_snapshot_however_long_the_history(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    from alyx_server.migrations.history import _decode, read_history

    fields = ""
    for i in range(30):  # thirty applies: thirty history rows, each with a full snapshot
        fields += f"      f_{i}: {{ type: int, nullable: true }}\n"
        apply_migrations(conn, posts(fields), tmp_path)
    assert len(read_history(conn)) == 30
    _decode.cache_clear()
    plan = plan_migrations(conn, posts(fields + "      g: { type: int, nullable: true }\n"), tmp_path)
    assert [c.name for c in plan.auto.changes] == ["g"]
    assert _decode.cache_info().misses == 1  # the newest row's, not all 30
    older = read_history(conn)[5].snapshot  # any row's snapshot is still there when asked for
    names = {f.name for f in older.collections[0].fields}
    assert "f_5" in names and "f_6" not in names


@pytest.mark.parametrize(
    ("extra", "pauses"),
    [
        ("      body: { type: string, nullable: true }\n", False),
        ('      body: { type: string, default: "" }\n', True),
        ("      body: { type: string, nullable: true, unique: true }\n", True),
        ("    indexes:\n      - { name: by_title, fields: [title] }\n", False),
        ("    indexes:\n      - { name: by_title, fields: [title], unique: true }\n", True),
        ('    rules:\n      read: "true"\n', False),
        ("  tags:\n    fields:\n      id: { type: uuid, primary: true, default: auto }\n", False),
    ],
)
def test_a_deploy_pauses_requests_unless_it_only_adds(
    conn: sqlite3.Connection, tmp_path: Path, extra: str, pauses: bool
) -> None:
    from alyx_server.deploy.plan import requests_pause

    apply_migrations(conn, posts(), tmp_path)
    assert requests_pause(plan_migrations(conn, posts(extra), tmp_path)) is pauses
    assert requests_pause(plan_migrations(conn, posts(), tmp_path)) is False  # nothing to do


def test_a_migration_file_or_a_first_apply_always_pauses_requests(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    from alyx_server.deploy.plan import requests_pause

    migrations = tmp_path / "migrations"
    assert requests_pause(plan_migrations(conn, posts(), migrations)) is True  # a fresh database
    apply_migrations(conn, posts("      slug: { type: string, nullable: true }\n"), migrations)
    with pytest.raises(MigrationError):
        apply_migrations(conn, posts(), migrations)  # dropping slug needs a file
    create_migration(conn, posts(), migrations, "drop_slug")
    assert requests_pause(plan_migrations(conn, posts(), migrations)) is True
