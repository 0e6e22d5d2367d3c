"""The one translation of SQLite's constraint errors: each form of message SQLite writes,
read from a real failed statement, and what `map_integrity_errors` does with it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from alyx_server.db.constraints import ConstraintViolation, map_integrity_errors, violation_of
from alyx_server.errors import AlyxError, Conflict


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(
        "CREATE TABLE posts (id TEXT PRIMARY KEY, slug TEXT, owner TEXT, title TEXT NOT NULL, n INT)"
    )
    conn.execute("CREATE UNIQUE INDEX uq_posts_slug_owner ON posts (slug, owner)")
    conn.execute("CREATE UNIQUE INDEX uq_posts_lower ON posts (lower(title))")
    conn.execute("CREATE TABLE checked (n INT CONSTRAINT positive CHECK (n > 0))")
    conn.execute("CREATE TABLE comments (id INT PRIMARY KEY, post_id TEXT REFERENCES posts(id))")
    conn.execute("INSERT INTO posts VALUES ('p1', 'hello', 'ada', 'Hello', 1)")
    yield conn
    conn.close()


def _violation(conn: sqlite3.Connection, sql: str) -> ConstraintViolation:
    with pytest.raises(sqlite3.IntegrityError) as info:
        conn.execute(sql)
    return violation_of(info.value)


def test_each_form_of_sqlite_message_is_read(conn: sqlite3.Connection) -> None:
    unique = _violation(conn, "INSERT INTO posts VALUES ('p2', 'hello', 'ada', 'Other', 1)")
    assert (unique.kind, unique.table, unique.columns) == ("unique", "posts", ("slug", "owner"))
    assert unique.message == "UNIQUE constraint failed: posts.slug, posts.owner"

    expression = _violation(conn, "INSERT INTO posts VALUES ('p2', 'x', 'y', 'HELLO', 1)")
    assert (expression.kind, expression.table, expression.columns) == ("unique", None, ())
    assert expression.message == "UNIQUE constraint failed: index 'uq_posts_lower'"

    key = _violation(conn, "INSERT INTO posts VALUES ('p1', 'x', 'y', 'z', 1)")
    assert (key.kind, key.table, key.columns) == ("unique", "posts", ("id",))

    required = _violation(conn, "INSERT INTO posts (id) VALUES ('p3')")
    assert (required.kind, required.table, required.columns) == ("not_null", "posts", ("title",))

    check = _violation(conn, "INSERT INTO checked VALUES (0)")
    assert (check.kind, check.columns) == ("check", ())
    assert check.message == "CHECK constraint failed: positive"

    missing = _violation(conn, "INSERT INTO comments VALUES (1, 'nope')")
    assert (missing.kind, missing.table, missing.columns) == ("foreign_key", None, ())


def test_the_translation_is_raised_from_the_sqlite_error(conn: sqlite3.Connection) -> None:
    seen: list[ConstraintViolation] = []

    def taken(violation: ConstraintViolation) -> AlyxError | None:
        seen.append(violation)
        return Conflict(f"{violation.columns[0]} is taken", field=violation.columns[0])

    with pytest.raises(Conflict) as info, map_integrity_errors(taken):
        conn.execute("INSERT INTO posts VALUES ('p1', 'x', 'y', 'z', 1)")

    assert info.value.status == 409
    assert info.value.message == "id is taken"
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert [v.kind for v in seen] == ["unique"]


def test_a_violation_the_caller_did_not_expect_goes_through_unchanged(conn: sqlite3.Connection) -> None:
    def only_unique(violation: ConstraintViolation) -> AlyxError | None:
        return Conflict("taken") if violation.kind == "unique" else None

    with (
        pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"),
        map_integrity_errors(only_unique),
    ):
        conn.execute("INSERT INTO comments VALUES (1, 'nope')")


def test_other_errors_and_success_are_left_alone(conn: sqlite3.Connection) -> None:
    def never(violation: ConstraintViolation) -> AlyxError | None:
        raise AssertionError("translate is asked only about constraint errors")

    with pytest.raises(sqlite3.OperationalError), map_integrity_errors(never):
        conn.execute("INSERT INTO nowhere VALUES (1)")
    with map_integrity_errors(never):
        conn.execute("INSERT INTO posts VALUES ('p2', 'x', 'y', 'z', 1)")
    assert conn.execute("SELECT COUNT(*) FROM posts").fetchone() == (2,)
