"""Migration files: parsing, located error messages, versions, checksums, sql splitting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from alyx_server.errors import MigrationError
from alyx_server.migrations.files import load_migrations, parse_migration
from alyx_server.migrations.operations import (
    AddField,
    ChangeType,
    DropCollection,
    DropField,
    RenameCollection,
    RenameField,
    Sql,
)
from alyx_server.migrations.sql_script import ScriptError, split_statements
from alyx_server.schema.model import FieldType

GOOD = """\
version: 2
name: reshape
description: Reshape posts.
operations:
  - add_field: { collection: posts, field: slug, definition: { type: string, nullable: true } }
  - drop_field: { collection: posts, field: legacy }
  - rename_field: { collection: posts, from: body, to: content }
  - change_type: { collection: posts, field: views, type: int, using: "CAST(views AS INTEGER)" }
  - drop_collection: { collection: drafts }
  - rename_collection: { from: notes, to: memos }
  - sql:
      up: "UPDATE posts SET title = trim(title); INSERT INTO memos (id) VALUES ('x');"
      down: "DELETE FROM memos WHERE id = 'x'"
"""


def parse(text: str, name: str = "002_reshape.yaml") -> object:
    return parse_migration(text.encode(), path=Path(name), label=f"migrations/{name}")


def test_parses_every_operation_with_its_location() -> None:
    migration = parse_migration(GOOD.encode(), path=Path("002_reshape.yaml"))
    header = (migration.version, migration.name, migration.description)
    assert header == (2, "reshape", "Reshape posts.")
    assert migration.checksum == hashlib.sha256(GOOD.encode()).hexdigest()
    ops = [s.operation for s in migration.steps]
    assert isinstance(ops[0], AddField)
    assert ops[0].field.nullable and ops[0].field.type is FieldType.STRING
    assert ops[1:3] == [DropField("posts", "legacy"), RenameField("posts", "body", "content")]
    assert ops[3] == ChangeType("posts", "views", FieldType.INT, "CAST(views AS INTEGER)")
    assert ops[4:6] == [DropCollection("drafts"), RenameCollection("notes", "memos")]
    assert isinstance(ops[6], Sql) and ops[6].down == "DELETE FROM memos WHERE id = 'x'"
    assert migration.steps[2].where == "002_reshape.yaml:7: operations[2].rename_field"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 2\noperations:\n  - drop_field: { collection: posts, field: a }\n"
            "  - rename_field:\n      collection: posts\n      from: a\n",
            'migrations/002_reshape.yaml:5: operations[1].rename_field: missing "to"',
        ),
        (
            "version: 2\noperations:\n  - drop_feild: { collection: posts, field: a }\n",
            'migrations/002_reshape.yaml:3: operations[0]: unknown operation "drop_feild" '
            '(did you mean "drop_field"?',
        ),
        (
            "version: 3\noperations: []\n",
            "migrations/002_reshape.yaml:1: version: must be 2, the number the file name "
            "starts with",
        ),
        (
            "version: 2\noperations:\n  - drop_field: { collection: posts, fild: a }\n",
            'migrations/002_reshape.yaml:3: operations[0].drop_field: unknown argument "fild" '
            '(did you mean "field"?',
        ),
        (
            "version: 2\noperations:\n  - add_field:\n      collection: posts\n      field: a\n"
            "      definition: { type: strng }\n",
            'migrations/002_reshape.yaml:6:27: operations[0].add_field.definition.type: '
            'unknown field type "strng"',
        ),
        (
            "version: 2\noperations:\n"
            "  - change_type: { collection: posts, field: a, type: number }\n",
            "migrations/002_reshape.yaml:3: operations[0].change_type.type: "
            "unknown field type 'number'",
        ),
        (
            "version: 2\noperations:\n  - sql: { up: 'COMMIT; DROP TABLE posts' }\n",
            "migrations/002_reshape.yaml:3: operations[0].sql.up: COMMIT is not allowed",
        ),
        (
            "version: 2\noperations:\n  - rename_collection: { from: posts, to: _alyx_x }\n",
            "migrations/002_reshape.yaml:3: operations[0].rename_collection.to: '_alyx_x' is not a "
            "valid collection name",
        ),
        (
            "version: 2\nname: other\noperations: []\n",
            "migrations/002_reshape.yaml:2: name: must be 'reshape', as in the file name",
        ),
        ("version: 2\n", "migrations/002_reshape.yaml:1: operations: missing"),
        ("version: [2\n", "migrations/002_reshape.yaml:2: invalid YAML"),
    ],
)
def test_malformed_files_name_file_line_and_operation(text: str, message: str) -> None:
    with pytest.raises(MigrationError) as caught:
        parse(text)
    assert str(caught.value).startswith(message), str(caught.value)


def test_file_name_must_carry_a_version() -> None:
    expected = r"drop\.yaml: a migration file is named NNN_<name>\.yaml"
    with pytest.raises(MigrationError, match=expected):
        parse("version: 1\noperations: []\n", "drop.yaml")


def test_directory_listing_orders_versions_and_refuses_duplicates(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    assert load_migrations(migrations) == []
    migrations.mkdir()
    (migrations / "README.md").write_text("notes")
    (migrations / "010_b.yaml").write_text("version: 10\noperations: []\n")
    (migrations / "002_a.yaml").write_text("version: 2\noperations:\n")
    assert [m.stem for m in load_migrations(migrations)] == ["002_a", "010_b"]
    (migrations / "002_c.yaml").write_text("version: 2\noperations: []\n")
    with pytest.raises(MigrationError) as caught:
        load_migrations(migrations)
    assert str(caught.value) == (
        "migrations/002_c.yaml and migrations/002_a.yaml share version 2: renumber one of them"
    )


def test_split_statements_respects_quotes_and_comments() -> None:
    script = "-- lead;\nINSERT INTO t VALUES ('a;b'); /* x; */ UPDATE t SET v = 1\n-- tail"
    assert split_statements(script) == [
        "-- lead;\nINSERT INTO t VALUES ('a;b');",
        "/* x; */ UPDATE t SET v = 1\n-- tail\n;",
    ]
    with pytest.raises(ScriptError, match="incomplete SQL statement"):
        split_statements("INSERT INTO t VALUES ('open")
    with pytest.raises(ScriptError, match="BEGIN is not allowed"):
        split_statements("begin immediate; select 1")
