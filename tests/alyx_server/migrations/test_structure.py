"""Structure kept across files and rollbacks: references, indexes, triggers, live writers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from alyx_server.errors import MigrationError
from alyx_server.migrations import ApplyResult, apply_migrations, rollback_migrations
from alyx_server.schema.loader import parse_schema

BLOG = """\
version: 1
collections:
  posts:
    fields:
      id: { type: uuid, primary: true, default: auto }
      title: { type: string }
      views: { type: string, default: "0" }
      updated_at: { type: timestamp, default: now, onUpdate: now }
    indexes:
      - { name: idx_posts_title, fields: [title] }
  comments:
    fields:
      id: { type: uuid, primary: true, default: auto }
      post_id: { type: uuid, references: posts.id, onDelete: cascade }
"""


def write(migrations: Path, name: str, text: str) -> None:
    migrations.mkdir(parents=True, exist_ok=True)
    (migrations / name).write_text(text)


def objects(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    rows = conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    return {(r[0], r[1]) for r in rows}


def test_renaming_a_referenced_primary_key_rebuilds_the_children(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(conn, parse_schema(BLOG), migrations)
    conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'Hello')")
    conn.execute("INSERT INTO comments (id, post_id) VALUES ('c1', 'p1')")
    write(migrations, "001_key.yaml", (
        "version: 1\noperations:\n  - rename_field: { collection: posts, from: id, to: key }\n"
    ))
    renamed = parse_schema(
        BLOG.replace("      id: { type: uuid, primary: true, default: auto }\n      title",
                     "      key: { type: uuid, primary: true, default: auto }\n      title")
        .replace("posts.id", "posts.key")
    )
    assert apply_migrations(conn, renamed, migrations).auto == ()
    fk = conn.execute("PRAGMA foreign_key_list(comments)").fetchone()
    assert (fk[2], fk[3], fk[4]) == ("posts", "post_id", "key")
    conn.execute("DELETE FROM posts WHERE key = 'p1'")
    assert conn.execute("SELECT count(*) FROM comments").fetchone() == (0,)


def test_rollback_of_drop_collection_and_change_type_recreates_the_structure(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(conn, parse_schema(BLOG), migrations)
    conn.execute("INSERT INTO posts (id, title, views) VALUES ('p1', 'Hello', '12')")
    conn.execute("INSERT INTO comments (id, post_id) VALUES ('c1', 'p1')")
    structure = objects(conn)
    write(migrations, "001_shrink.yaml", (
        "version: 1\noperations:\n"
        "  - drop_collection: { collection: comments }\n"
        "  - change_type: { collection: posts, field: views, type: int }\n"
    ))
    shrunk = parse_schema(
        BLOG.split("  comments:")[0].replace('views: { type: string, default: "0" }',
                                             "views: { type: int, default: 0 }")
    )
    assert apply_migrations(conn, shrunk, migrations).files == ("001_shrink",)
    assert conn.execute("SELECT views, typeof(views) FROM posts").fetchone() == (12, "integer")
    assert rollback_migrations(conn, migrations) == ["001_shrink"]
    assert objects(conn) == structure
    assert conn.execute("SELECT views, typeof(views) FROM posts").fetchone() == ("12", "text")
    assert conn.execute("SELECT count(*) FROM comments").fetchone() == (0,)
    # The triggers came back with the tables: writes reach the change feed again.
    conn.execute("INSERT INTO comments (id, post_id) VALUES ('c2', 'p1')")
    last = conn.execute("SELECT collection, doc_id FROM _alyx_changes ORDER BY id DESC").fetchone()
    assert last == ("comments", "c2")


def test_drop_field_rollback_refills_a_required_field(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(conn, parse_schema(BLOG), migrations)
    conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'Hello')")
    write(migrations, "001_untitled.yaml", (
        "version: 1\noperations:\n  - drop_field: { collection: posts, field: title }\n"
    ))
    apply_migrations(conn, parse_schema(BLOG.replace("      title: { type: string }\n", "")
                                        .replace("fields: [title]", "fields: [views]")),
                     migrations)
    rollback_migrations(conn, migrations, 2)
    assert conn.execute("SELECT id, title FROM posts").fetchall() == [("p1", "")]
    assert ("index", "idx_posts_title") in objects(conn)


def test_runs_on_a_writer_thread_while_readers_hold_snapshots(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(conn, parse_schema(BLOG), migrations)
    conn.execute("INSERT INTO posts (id, title) VALUES ('p1', 'Hello')")
    reader = sqlite3.connect(tmp_path / "alyx.db", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM posts").fetchone() == (1,)
    writer = sqlite3.connect(tmp_path / "alyx.db", isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA foreign_keys = ON")
    outcome: list[ApplyResult] = []
    extra = BLOG.replace("      updated_at", "      body: { type: text, nullable: true }\n"
                                            "      updated_at")
    thread = threading.Thread(
        target=lambda: outcome.append(apply_migrations(writer, parse_schema(extra), migrations))
    )
    thread.start()
    thread.join()
    assert outcome and outcome[0].auto == ("+ posts.body",)
    assert writer.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert reader.execute("SELECT * FROM posts").fetchone()[:2] == ("p1", "Hello")
    reader.execute("COMMIT")
    reader.close()
    writer.close()


def test_refuses_to_start_inside_an_open_transaction(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    apply_migrations(conn, parse_schema(BLOG), tmp_path)
    conn.execute("BEGIN")
    with pytest.raises(MigrationError, match="must start outside a transaction"):
        apply_migrations(conn, parse_schema(BLOG.replace("string }", "text }")), tmp_path)
    conn.execute("ROLLBACK")


def test_dangling_foreign_keys_roll_the_file_back(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    apply_migrations(conn, parse_schema(BLOG), migrations)
    write(migrations, "001_orphan.yaml", (
        "version: 1\noperations:\n"
        "  - sql: { up: \"INSERT INTO comments (id, post_id) VALUES ('c9', 'ghost')\" }\n"
    ))
    before = list(conn.iterdump())
    with pytest.raises(MigrationError) as caught:
        apply_migrations(conn, parse_schema(BLOG), migrations)
    assert str(caught.value) == (
        "foreign key check failed: 1 row in comments.post_id reference a missing posts.id "
        "(ids: c9)"
    )
    assert list(conn.iterdump()) == before
