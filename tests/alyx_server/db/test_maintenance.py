"""db.maintenance: seed, dump, back up, restore and rebuild, called directly on real files.

Each test migrates a real SQLite file in tmp_path with the migration runner, calls one
maintenance function as the CLI (or an admin API) would, then reopens the file and
asserts the rows, or asserts the Alyx error's class, code and message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from alyx_server.db import open_connection
from alyx_server.db.maintenance import (
    backup_database,
    check_alyx_database,
    database_errors,
    dump_documents,
    parse_seed,
    read_seed_file,
    rebuild_database,
    restore_database,
    seed_database,
    seed_documents,
    stored_schema,
)
from alyx_server.errors import AlyxError, Conflict, MigrationError, NotFound, ValidationError
from alyx_server.migrations import apply_migrations
from alyx_server.schema.loader import parse_schema
from alyx_server.schema.model import Schema

SCHEMA = parse_schema("""\
version: 1
collections:
  authors:
    fields:
      id:     { type: uuid, primary: true, default: auto }
      name:   { type: string, minLength: 1 }
      secret: { type: string, internal: true, nullable: true }
  posts:
    fields:
      id:        { type: uuid, primary: true, default: auto }
      title:     { type: string, minLength: 1 }
      author_id: { type: uuid, references: authors.id }
      views:     { type: int, default: 0 }
""")
ADA = "0f8fad5b-d9cb-469f-a165-70867728950e"
NOBODY = "16fd2706-8baf-433b-82eb-8c7fada847da"
POST = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
# The post comes first and refers to an author later in the data: order must not matter.
DATA = {
    "posts": [{"id": POST, "title": "Hello", "author_id": ADA}],
    "authors": [{"id": ADA, "name": "Ada", "secret": "s3"}],
}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A database file migrated to SCHEMA (no migration files)."""
    database = tmp_path / "data" / "alyx.db"
    database.parent.mkdir()
    with closing(open_connection(database)) as conn:
        apply_migrations(conn, SCHEMA, tmp_path / "migrations")
    return database


@pytest.fixture
def conn(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(open_connection(path)) as connection:
        yield connection


def rows(path: Path, table: str) -> int:
    with closing(sqlite3.connect(path)) as c:
        return int(c.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# -- seeding --------------------------------------------------------------------------------
def test_seed_then_dump_gives_back_the_documents_with_defaults_and_internal_fields(
    conn: sqlite3.Connection, path: Path, tmp_path: Path
) -> None:
    count = seed_database(conn, SCHEMA, tmp_path / "migrations", DATA, file="seed.json", name="data/alyx.db")

    assert count == 2
    assert rows(path, "posts") == rows(path, "authors") == 1
    assert dump_documents(conn, stored_schema(conn)) == {
        "authors": [{"id": ADA, "name": "Ada", "secret": "s3"}],
        "posts": [{"id": POST, "title": "Hello", "author_id": ADA, "views": 0}],
    }


def test_seed_counts_each_document_through_advance(conn: sqlite3.Connection) -> None:
    steps: list[None] = []

    seed_documents(conn, SCHEMA, DATA, file="seed.json", advance=lambda: steps.append(None))

    assert len(steps) == 2


def test_a_bad_row_is_a_validation_error_naming_row_and_field_and_writes_nothing(
    conn: sqlite3.Connection, path: Path
) -> None:
    data = {"authors": [{"id": ADA, "name": "Ada"}, {"name": ""}]}

    with pytest.raises(ValidationError) as caught:
        seed_documents(conn, SCHEMA, data, file="seed.json")

    assert str(caught.value).startswith("seed.json: authors[1].name: ")
    assert caught.value.issues[0].field == "name"
    assert rows(path, "authors") == 0


def test_a_duplicate_key_is_a_conflict_naming_the_row(conn: sqlite3.Connection, path: Path) -> None:
    data = {"authors": [{"id": ADA, "name": "Ada"}, {"id": ADA, "name": "Ada again"}]}

    with pytest.raises(AlyxError) as caught:
        seed_documents(conn, SCHEMA, data, file="seed.yaml")

    assert caught.value.code == "UNIQUE_VIOLATION"
    assert caught.value.status == 409
    assert str(caught.value).startswith("seed.yaml: authors[1].id: ")
    assert rows(path, "authors") == 0


def test_a_reference_to_nothing_is_a_conflict_and_rolls_back(conn: sqlite3.Connection, path: Path) -> None:
    data = {
        "authors": [{"id": ADA, "name": "Ada"}],
        "posts": [{"title": "ok", "author_id": ADA}, {"title": "orphan", "author_id": NOBODY}],
    }

    with pytest.raises(Conflict) as caught:
        seed_documents(conn, SCHEMA, data, file="seed.json")

    assert caught.value.code == "FOREIGN_KEY_VIOLATION"
    assert str(caught.value) == (
        "seed.json: posts[1].author_id: author_id refers to a authors document that does not exist"
    )
    assert rows(path, "posts") == rows(path, "authors") == 0


def test_an_unknown_collection_is_not_found_with_a_suggestion(conn: sqlite3.Connection) -> None:
    with pytest.raises(NotFound) as caught:
        seed_documents(conn, SCHEMA, {"post": []}, file="seed.json")

    assert caught.value.code == "COLLECTION_NOT_FOUND"
    assert str(caught.value) == (
        "seed.json: unknown collection 'post' (did you mean posts?); collections are: authors, posts"
    )


def test_seeding_a_database_behind_the_schema_is_a_migration_error(
    conn: sqlite3.Connection, path: Path, tmp_path: Path
) -> None:
    newer = Schema(collections=(*SCHEMA.collections, *parse_schema(TAGS).collections))

    with pytest.raises(MigrationError) as caught:
        seed_database(conn, newer, tmp_path / "migrations", DATA, file="seed.json", name="data/alyx.db")

    assert str(caught.value) == (
        "data/alyx.db is not up to date with schema.yaml; run `alyx migrate apply` first"
    )
    assert rows(path, "authors") == 0


TAGS = """\
version: 1
collections:
  tags:
    fields:
      id: { type: uuid, primary: true, default: auto }
"""


# -- seed files -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("seed.json", '{"posts": [}', "seed.json:1:12: invalid JSON: Expecting value"),
        ("seed.yaml", "posts: [\n", "seed.yaml:2:1: invalid YAML: "),
        ("seed.json", "[1, 2]", "seed.json: expected a mapping of collection names to lists of documents"),
        ("seed.yaml", "posts: {title: a}\n", "seed.yaml: posts must be a list of documents"),
        ("seed.yaml", "posts: [1]\n", "seed.yaml: posts[0] must be an object"),
    ],
)
def test_a_malformed_seed_file_is_a_located_validation_error(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")

    with pytest.raises(ValidationError) as caught:
        read_seed_file(tmp_path / name)

    assert str(caught.value).startswith(message), str(caught.value)


def test_yaml_and_json_seed_files_read_the_same(tmp_path: Path) -> None:
    assert parse_seed("a.yaml", "posts:\n  - {title: Hello}\n") == parse_seed(
        "a.JSON", '{"posts": [{"title": "Hello"}]}'
    )


# -- backup and restore ---------------------------------------------------------------------
def test_a_backup_is_one_alyx_database_file_that_restores(
    conn: sqlite3.Connection, path: Path, tmp_path: Path
) -> None:
    seed_documents(conn, SCHEMA, DATA, file="seed.json")
    backup = tmp_path / "backup.db"

    backup_database(path, backup)
    check_alyx_database(backup)
    conn.execute("DELETE FROM posts")
    conn.close()
    restore_database(backup, path, name="data/alyx.db")

    assert rows(path, "posts") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db", "data"]


def test_restore_into_a_database_in_use_is_a_conflict(
    conn: sqlite3.Connection, path: Path, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.db"
    backup_database(path, backup)
    conn.execute("SELECT count(*) FROM posts").fetchone()

    with pytest.raises(Conflict) as caught:
        restore_database(backup, path, name="data/alyx.db")

    assert caught.value.code == "DATABASE_IN_USE"
    assert str(caught.value) == (
        "data/alyx.db is in use by another process (is `alyx dev` or `alyx serve` running?); "
        "stop it and try again"
    )


def test_only_an_intact_alyx_database_passes_the_check(tmp_path: Path) -> None:
    plain = tmp_path / "plain.db"
    with closing(sqlite3.connect(plain)) as c:
        c.execute("CREATE TABLE t (x)")
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, just text that is long enough " * 20)

    for file, message in [
        (tmp_path / "missing.db", "does not exist or is not a file"),
        (plain, "is an SQLite database but not an Alyx one (it has no _alyx_migrations table)"),
        (text, "is not an SQLite database (file is not a database)"),
    ]:
        with pytest.raises(ValidationError) as caught:
            check_alyx_database(file)
        assert str(caught.value) == f"{file} {message}"


# -- rebuild ----------------------------------------------------------------------------------
def test_rebuild_gives_an_empty_migrated_database(
    conn: sqlite3.Connection, path: Path, tmp_path: Path
) -> None:
    seed_documents(conn, SCHEMA, DATA, file="seed.json")
    conn.close()

    result = rebuild_database(path, SCHEMA, tmp_path / "migrations", name="data/alyx.db")

    assert result.auto == ("+ authors", "+ posts")
    assert rows(path, "posts") == rows(path, "authors") == 0
    assert rows(path, "_alyx_migrations") == 1
    assert [p.name for p in path.parent.iterdir() if "reset" in p.name] == []


def test_rebuild_of_a_database_in_use_is_refused_and_keeps_the_data(
    conn: sqlite3.Connection, path: Path, tmp_path: Path
) -> None:
    seed_documents(conn, SCHEMA, DATA, file="seed.json")

    with pytest.raises(Conflict, match=r"data/alyx\.db is in use by another process"):
        rebuild_database(path, SCHEMA, tmp_path / "migrations", name="data/alyx.db")

    assert rows(path, "posts") == 1
    assert [p.name for p in path.parent.iterdir() if "reset" in p.name] == []


def test_rebuild_that_cannot_migrate_keeps_the_old_database(
    conn: sqlite3.Connection, path: Path, tmp_path: Path
) -> None:
    seed_documents(conn, SCHEMA, DATA, file="seed.json")
    conn.close()
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "001_broken.yaml").write_text("version: 1\nname: broken\n")

    with pytest.raises(AlyxError):
        rebuild_database(path, SCHEMA, tmp_path / "migrations", name="data/alyx.db")

    assert rows(path, "posts") == 1


# -- SQLite errors ----------------------------------------------------------------------------
def test_a_locked_database_is_one_error_naming_the_file_and_what_to_do(path: Path) -> None:
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with pytest.raises(AlyxError) as caught, database_errors("data/alyx.db"):
            other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        writer.execute("ROLLBACK")
        writer.close()

    assert caught.value.code == "DATABASE_ERROR"
    assert str(caught.value) == (
        "data/alyx.db: database is locked (another process is writing to it; try again when it has finished)"
    )
