"""schema.yaml loading: valid files become the model, every mistake a located message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings

from alyx_server.errors import Location, SchemaError
from alyx_server.schema.loader import load_schema, parse_schema
from alyx_server.schema.model import (
    Collection,
    Default,
    Field,
    FieldType,
    Reference,
    Schema,
    Validation,
)
from tests.alyx_server.schema.strategies import schema_dicts, schemas

SPEC_EXAMPLE = """\
version: 1
collections:
  posts:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      title:      { type: string, minLength: 1, maxLength: 200 }
      author_id:  { type: uuid, references: _alyx_users.id, onDelete: cascade, index: true }
      published:  { type: bool, default: false }
      tags:       { type: json, nullable: true }
      created_at: { type: timestamp, default: now }
      updated_at: { type: timestamp, default: now, onUpdate: now }
    indexes:
      - { name: idx_posts_published, fields: [published, created_at], order: desc }
    rules:
      create: "auth != null && doc.author_id == auth.id"
      read:   "doc.published || (auth != null && auth.id == doc.author_id)"
      update: "auth != null && auth.id == doc.author_id"
      delete: "auth != null && (auth.id == doc.author_id || auth.role == 'admin')"
  comments:
    fields:
      id:       { type: int, primary: true, default: auto }
      post_id:  { type: uuid, references: posts.id, onDelete: cascade }
      user_id:  { type: uuid, references: _alyx_users.id, nullable: true, onDelete: set null }
      body:     { type: text, validate: { minLength: 1, maxLength: 5000 } }
"""

# A collection with a primary key, to which a case adds lines: its fields start at line 6.
POSTS = """\
version: 1
collections:
  posts:
    fields:
      id: { type: uuid, primary: true, default: auto }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schema.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    return str(info.value), path


def position(text: str, token: str, nth: int = 1) -> str:
    """`line:column` (1-based) of the nth occurrence of `token` in `text`."""
    index = -1
    for _ in range(nth):
        index = text.index(token, index + 1)
    line = text.count("\n", 0, index) + 1
    return f"{line}:{index - text.rfind(chr(10), 0, index)}"


def field_case(line: str) -> str:
    return POSTS + f"      {line}\n"


# (case id, schema text, token the error points at (or (token, nth occurrence)), key path,
# words of the message and hint)
BAD_SCHEMAS = [
    ("top-level list", "- version: 1\n", "-", None,
     ["must be a mapping, not a list", "version: 1"]),
    ("unknown top key", "version: 1\ncolections: {}\n", "colections", "colections",
     ['unknown top-level key "colections"', 'did you mean "collections"?']),
    ("unsupported version", "version: 2\ncollections: {}\n", "2", "version",
     ["unsupported schema version 2", "write `version: 1`"]),
    ("version as string", "version: '1'\ncollections: {}\n", "'1'", "version",
     ["unsupported schema version 1", "write `version: 1`"]),
    ("missing version", "collections: {}\n", "collections", "version",
     ["the schema has no version", "add `version: 1`"]),
    ("collections not mapping", "version: 1\ncollections: [posts]\n", "[posts]", "collections",
     ["collections must be a mapping, not a list", "write collections:"]),
    ("unknown field type", field_case("title: { type: strng }"), "strng",
     "collections.posts.fields.title.type",
     ['unknown field type "strng"', 'did you mean "string"?', "types: uuid, string, text"]),
    ("missing type", field_case("title: { maxLength: 3 }"), "{ maxLength",
     "collections.posts.fields.title", ["field has no type", "add type: one of uuid"]),
    ("unknown field option", field_case("title: { type: string, maxLenght: 5 }"), "maxLenght",
     "collections.posts.fields.title.maxLenght",
     ['unknown field option "maxLenght"', 'did you mean "maxLength"?']),
    ("field not mapping", field_case("title: string"), "string", "collections.posts.fields.title",
     ['field "title" must be a mapping, not a string', "write { type: string }"]),
    ("flag not bool", field_case("title: { type: string, unique: 1 }"), "1 }",
     "collections.posts.fields.title.unique", ['"unique" must be true or false', "unique: true"]),
    ("two primary keys", field_case("code: { type: string, primary: true }"), "primary: true }",
     "collections.posts.fields.code.primary",
     ['two primary fields: "id" and "code"', "keep primary: true on one field only"]),
    ("no primary key",
     "version: 1\ncollections:\n  posts:\n    fields:\n      title: { type: string }\n",
     "posts", "collections.posts", ['collection "posts" has no primary field', "primary: true"]),
    ("no fields", "version: 1\ncollections:\n  posts: { rules: {} }\n", "posts",
     "collections.posts", ['collection "posts" has no fields', "add fields:"]),
    ("unknown collection key",
     POSTS + "    indexs: []\n", "indexs", "collections.posts.indexs",
     ['unknown collection key "indexs"', 'did you mean "indexes"?']),
    ("unknown referenced collection", field_case("a: { type: uuid, references: post.id }"),
     "post.id", "collections.posts.fields.a.references",
     ['unknown collection "post"', 'did you mean "posts"?']),
    ("unknown referenced field", field_case("a: { type: uuid, references: posts.idd }"),
     "posts.idd", "collections.posts.fields.a.references",
     ['unknown field "idd" of collection "posts"', 'did you mean "id"?']),
    ("system table reference", field_case("a: { type: uuid, references: _alyx_sessions.id }"),
     "_alyx_sessions", "collections.posts.fields.a.references",
     ["_alyx_sessions.id cannot be referenced", "only system field", "_alyx_users.id"]),
    ("users email reference", field_case("a: { type: string, references: _alyx_users.email }"),
     "_alyx_users", "collections.posts.fields.a.references",
     ["_alyx_users.email cannot be referenced", "references: _alyx_users.id"]),
    ("reference not unique",
     field_case("title: { type: string }\n      b: { type: string, references: posts.title }"),
     "posts.title", "collections.posts.fields.b.references",
     ["posts.title is neither primary nor unique", "add unique: true to posts.title"]),
    ("reference type mismatch", field_case("a: { type: int, references: posts.id }"), "int",
     "collections.posts.fields.a.type",
     ['"a" is int but posts.id, which it references, is uuid', "give a type: uuid"]),
    ("bad reference syntax", field_case("a: { type: uuid, references: posts }"), "posts }",
     "collections.posts.fields.a.references",
     ["references must be <collection>.<field>, not 'posts'", "_alyx_users.id"]),
    ("int default", field_case('n: { type: int, default: "abc" }'), '"abc"',
     "collections.posts.fields.n.default", ["default 'abc' is not a whole number", "int"]),
    ("bool default", field_case("b: { type: bool, default: 3 }"), "3 }",
     "collections.posts.fields.b.default", ["default 3 is not true or false", "true or false"]),
    ("timestamp default", field_case("t: { type: timestamp, default: yesterday }"), "yesterday",
     "collections.posts.fields.t.default",
     ["default 'yesterday' is not an ISO-8601 timestamp", "2026-01-31T12:00:00.000Z"]),
    ("uuid default", field_case("u: { type: uuid, default: nope }"), "nope",
     "collections.posts.fields.u.default", ["default 'nope' is not a uuid", "or auto"]),
    ("uuid default without hyphens",
     field_case("u: { type: uuid, default: 0b7e2e4a3c1d4f7e9a558a2f1f3c9d10 }"), "0b7e",
     "collections.posts.fields.u.default", ["is not a uuid", '"0b7e2e4a-3c1d-4f7e-9a55-8a2f1f3c9d10"']),
    ("string default number", field_case("s: { type: string, default: 5 }"), "5 }",
     "collections.posts.fields.s.default", ["default 5 is not a string", "type string"]),
    ("blob default", field_case("b: { type: blob, default: '***' }"), "'***'",
     "collections.posts.fields.b.default", ["is not a base64 string", "base64"]),
    ("json default date", field_case("j: { type: json, default: 2026-01-01 }"), "2026-01-01",
     "collections.posts.fields.j.default", ["cannot be stored as JSON", "quote dates"]),
    ("enum default", field_case("s: { type: string, enum: [a, b], default: c }"), "c }",
     "collections.posts.fields.s.default",
     ["default 'c' is not one of ['a', 'b']", "change the default or the validation"]),
    ("default too long", field_case("s: { type: string, maxLength: 2, default: abc }"), "abc",
     "collections.posts.fields.s.default", ["default 'abc' is longer than maxLength 2"]),
    ("null default not nullable", field_case("s: { type: string, default: null }"), "null",
     "collections.posts.fields.s.default",
     ["default is null but the field is not nullable", "add nullable: true"]),
    ("auto on string", field_case("s: { type: string, default: auto }"), ("auto", 2),
     "collections.posts.fields.s.default",
     ["default: auto generates ids; it does not apply to string", "int primary field"]),
    ("auto on plain int", field_case("n: { type: int, default: auto }"), ("auto", 2),
     "collections.posts.fields.n.default", ["does not apply to an int field that is not primary"]),
    ("now on string", field_case("s: { type: string, default: now }"), "now",
     "collections.posts.fields.s.default",
     ["default: now applies only to timestamp fields, not string", "change the type to timestamp"]),
    ("onUpdate on string", field_case("s: { type: string, onUpdate: now }"), "now",
     "collections.posts.fields.s.onUpdate", ["onUpdate: now applies only to timestamp fields"]),
    ("onUpdate value", field_case("t: { type: timestamp, onUpdate: later }"), "later",
     "collections.posts.fields.t.onUpdate", ["onUpdate must be now, not 'later'"]),
    ("hyphen in collection", "version: 1\ncollections:\n  blog-posts: {}\n", "blog-posts",
     "collections.blog-posts", ['"blog-posts" is not a valid collection name', 'try "blog_posts"']),
    ("leading digit field", field_case("2fa: { type: string }"), "2fa",
     "collections.posts.fields.2fa", ['"2fa" is not a valid field name', "^[a-z][a-z0-9_]*$"]),
    ("upper-case field", field_case("Title: { type: string }"), "Title",
     "collections.posts.fields.Title", ['"Title" is not a valid field name', 'try "title"']),
    ("reserved prefix", "version: 1\ncollections:\n  _alyx_things: {}\n", "_alyx_things",
     "collections._alyx_things", ['"_alyx_things" is reserved', "choose another name"]),
    ("reserved field prefix", field_case("_alyx_x: { type: string }"), "_alyx_x",
     "collections.posts.fields._alyx_x", ['the field name "_alyx_x" is reserved']),
    ("sqlite prefix", "version: 1\ncollections:\n  sqlite_stat: {}\n", "sqlite_stat",
     "collections.sqlite_stat", ['"sqlite_stat" is reserved by SQLite']),
    ("minLength on int", field_case("n: { type: int, minLength: 1 }"), "minLength",
     "collections.posts.fields.n.minLength",
     ['"minLength" applies only to string and text fields, not int', "remove minLength"]),
    ("negative maxLength", field_case("s: { type: string, maxLength: -1 }"), "-1",
     "collections.posts.fields.s.maxLength", ["whole number of characters, 0 or more"]),
    ("minLength above maxLength", field_case("s: { type: text, minLength: 5, maxLength: 2 }"),
     "2 }", "collections.posts.fields.s.maxLength",
     ["maxLength (2) is smaller than minLength (5)", "make minLength <= maxLength"]),
    ("min on string", field_case("s: { type: string, min: 1 }"), "min",
     "collections.posts.fields.s.min", ['"min" applies only to int and float fields, not string']),
    ("fractional min on int", field_case("n: { type: int, min: 1.5 }"), "1.5",
     "collections.posts.fields.n.min", ['"min" of an int field must be a whole number']),
    ("min above max", field_case("x: { type: float, min: 2, max: 1.5 }"), "1.5",
     "collections.posts.fields.x.max", ["max (1.5) is smaller than min (2)"]),
    ("bad pattern", field_case("s: { type: string, pattern: '([a-z' }"), "'([a-z'",
     "collections.posts.fields.s.pattern",
     ["pattern is not a valid RE2 regular expression: missing ]: [a-z",
      "single quotes keep backslashes"]),
    ("backreference in pattern", field_case(r"s: { type: string, pattern: '^(a)\1$' }"), "'^(a)",
     "collections.posts.fields.s.pattern",
     ["pattern is not a valid RE2 regular expression: invalid escape sequence: \\1",
      "no backreferences or lookaround"]),
    ("lookbehind in pattern", field_case("s: { type: string, pattern: '(?<=a)b' }"), "'(?<=a)b'",
     "collections.posts.fields.s.pattern",
     ["pattern is not a valid RE2 regular expression: invalid perl operator: (?<="]),
    ("pattern too long", field_case(f"s: {{ type: string, pattern: '{'a' * 1001}' }}"), "'aaa",
     "collections.posts.fields.s.pattern",
     ["the pattern is 1001 characters long; at most 1000 are allowed"]),
    ("pattern on int", field_case("n: { type: int, pattern: x }"), "pattern",
     "collections.posts.fields.n.pattern", ['"pattern" applies only to string and text fields']),
    ("empty enum", field_case("s: { type: string, enum: [] }"), "[]",
     "collections.posts.fields.s.enum",
     ["enum must be a non-empty list", "enum: [draft, published]"]),
    ("enum not list", field_case("s: { type: string, enum: a }"), "a }",
     "collections.posts.fields.s.enum", ["enum must be a non-empty list"]),
    ("enum wrong type", field_case("n: { type: int, enum: [1, two] }"), "two",
     "collections.posts.fields.n.enum[1]",
     ["enum value 'two' is not a whole number", "quote numbers meant as strings"]),
    ("enum duplicate", field_case("s: { type: string, enum: [a, a] }"), "a]",
     "collections.posts.fields.s.enum[1]", ["enum value 'a' is listed twice"]),
    ("enum on bool", field_case("b: { type: bool, enum: [true] }"), "enum",
     "collections.posts.fields.b.enum", ['"enum" applies only to string and text and int']),
    ("format on int", field_case("n: { type: int, format: email }"), "format",
     "collections.posts.fields.n.format", ['"format" applies only to string and text fields']),
    ("unknown format", field_case("s: { type: string, format: emali }"), "emali",
     "collections.posts.fields.s.format", ["unknown format 'emali'", 'did you mean "email"?']),
    ("primary nullable", field_case("").replace("default: auto }", "nullable: true }"),
     "nullable", "collections.posts.fields.id.nullable",
     ["a primary field cannot be nullable", "remove nullable: true"]),
    ("json primary",
     "version: 1\ncollections:\n  t:\n    fields:\n      id: { type: json, primary: true }\n",
     "json", "collections.t.fields.id.type", ["a json field cannot be primary", "uuid"]),
    ("blob primary",
     "version: 1\ncollections:\n  t:\n    fields:\n      id: { type: blob, primary: true }\n",
     "blob", "collections.t.fields.id.type", ["a blob field cannot be primary"]),
    ("primary internal", field_case("").replace("default: auto }", "internal: true }"),
     "internal", "collections.posts.fields.id.internal", ["a primary field cannot be internal"]),
    ("set null not nullable",
     field_case("a: { type: uuid, references: _alyx_users.id, onDelete: set null }"),
     "set null", "collections.posts.fields.a.onDelete",
     ["onDelete: set null needs a nullable field", "add nullable: true"]),
    ("onDelete without references", field_case("a: { type: uuid, onDelete: cascade }"),
     "onDelete", "collections.posts.fields.a.onDelete",
     ["onDelete without references", "add references: <collection>.<field>"]),
    ("unknown onDelete",
     field_case("a: { type: uuid, references: _alyx_users.id, onDelete: cascad }"),
     "cascad", "collections.posts.fields.a.onDelete",
     ["unknown onDelete action 'cascad'", 'did you mean "cascade"?']),
    ("duplicate field", field_case("t: { type: string }\n      t: { type: text }"),
     "t: { type: text",
     None, ["duplicate key 't' (first written at line 6)", "remove or rename one"]),
    ("duplicate option in validate",
     field_case("s: { type: string, maxLength: 3, validate: { maxLength: 4 } }"),
     "maxLength: 4", "collections.posts.fields.s.validate.maxLength",
     ['"maxLength" is written twice: on the field (line 6) and under validate:', "keep only one"]),
    ("unknown validate option", field_case("s: { type: string, validate: { maxlen: 4 } }"),
     "maxlen", "collections.posts.fields.s.validate.maxlen",
     ['unknown validation option "maxlen"', 'did you mean "maxLength"?']),
    ("index unknown field", POSTS + "    indexes:\n      - { fields: [idd] }\n", "idd",
     "collections.posts.indexes[0].fields[0]",
     ["the index names an unknown field 'idd'", 'did you mean "id"?']),
    ("index without fields", POSTS + "    indexes:\n      - { name: ix_a }\n", "{ name",
     "collections.posts.indexes[0].fields", ["an index needs fields: a non-empty list"]),
    ("index bad name", POSTS + "    indexes:\n      - { name: Ix-A, fields: [id] }\n", "Ix-A",
     "collections.posts.indexes[0].name", ['"Ix-A" is not a valid index name', 'try "ix_a"']),
    ("index bad order", POSTS + "    indexes:\n      - { fields: [id], order: down }\n", "down",
     "collections.posts.indexes[0].order", ["unknown index order 'down'", "order: desc"]),
    ("index not a list", POSTS + "    indexes: { fields: [id] }\n", "{ fields",
     "collections.posts.indexes", ["indexes must be a list, not a mapping"]),
    ("duplicate index names",
     POSTS + "    indexes:\n      - { name: ix_a, fields: [id] }\n"
     "  tags:\n    fields:\n      id: { type: int, primary: true }\n"
     "    indexes:\n      - { name: ix_a, fields: [id] }\n",
     ("{ name: ix_a", 2), "collections.tags.indexes[0]",
     ['duplicate index name "ix_a" (first at ', "schema.yaml:7:9: collections.posts.indexes[0])",
      "unique across the whole schema"]),
    ("index name is a table", POSTS + "    indexes:\n      - { name: posts, fields: [id] }\n",
     "{ name", "collections.posts.indexes[0]",
     ['the index name "posts" is also a collection name', "one namespace"]),
    ("generated index name taken",
     field_case("a: { type: int, index: true }") + "    indexes:\n      - { fields: [a] }\n",
     "{ fields", "collections.posts.indexes[0]",
     ['"idx_posts_a" is taken by the index Alyx creates for index: true on posts.a']),
    ("unknown rule action", POSTS + "    rules:\n      list: 'true'\n", "list",
     "collections.posts.rules.list",
     ['unknown rule action "list"', "known: create, read, update, delete"]),
    ("rule not a string", POSTS + "    rules:\n      read: true\n", ("true", 2),
     "collections.posts.rules.read",
     ["a rule is a CEL expression written as a string, not a boolean", 'quote it: read: "true"']),
    ("empty rule", POSTS + "    rules:\n      read: '  '\n", "'  '", "collections.posts.rules.read",
     ["the rule is empty", "remove the key to allow only admins"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "token", "path", "words"),
    [case[1:] for case in BAD_SCHEMAS],
    ids=[case[0] for case in BAD_SCHEMAS],
)
def test_bad_schema_is_refused_with_a_located_message(
    tmp_path: Path, text: str, token: str | tuple[str, int], path: str | None, words: list[str]
) -> None:
    message, file = error_for(tmp_path, text)
    line_column = position(text, *token) if isinstance(token, tuple) else position(text, token)
    where = f"{file}:{line_column}"
    assert message.startswith(f"{where}: {path}: " if path else f"{where}: "), message
    for word in words:
        assert word in message, message


def test_location_attributes_are_one_based(tmp_path: Path) -> None:
    path = write(tmp_path, field_case("title: { type: strng }"))
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert info.value.location == Location(str(path), 6, 22, "collections.posts.fields.title.type")
    assert info.value.hint is not None and 'did you mean "string"?' in info.value.hint


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("version: 1\ncollections:\n  posts: {fields: [\n", "4:1",
         ["invalid YAML: expected the node content", "flow node that starts at line 4"]),
        ("version: 1\n  collections: x\n", "2:14", ["mapping values are not allowed here"]),
        ("version: 1\ncollections:\n  p:\n    fields:\n      id: {type: uuid, primary: true\n"
         "      x: 1\n", "6:8",
         ["expected ',' or '}'", "flow mapping that starts at line 5, column 11"]),
        ("version: 1\ncollections: \x07\n", "2:14", ["character U+0007 is not allowed"]),
        ("version: 1\n---\nversion: 1\n", "2:1", ["expected a single document"]),
        ("version: 1\ncollections: !custom {}\n", "2:14", ["unsupported tag '!custom'"]),
        ("a: &x [*x]\n", "1:4", ["recursive alias"]),
    ],
)  # fmt: skip
def test_malformed_yaml_names_line_and_column(
    tmp_path: Path, text: str, where: str, words: list[str]
) -> None:
    message, file = error_for(tmp_path, text)
    assert message.startswith(f"{file}:{where}: invalid YAML: "), message
    assert "fix the YAML syntax" in message
    for word in words:
        assert word in message, message


def test_missing_file_says_to_create_it(tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert str(info.value) == (
        f"{path}: {path} does not exist "
        "(create it (see docs/schema.md) or run `alyx init` to start a project)"
    )


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "---\n"])
def test_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    message, file = error_for(tmp_path, text)
    assert message == (
        f"{file}: the schema file is empty "
        "(start the file with `version: 1` and a `collections:` mapping)"
    )


def test_parse_schema_names_the_given_file() -> None:
    with pytest.raises(SchemaError, match=r"^app/schema\.yaml:1:10: version: unsupported"):
        parse_schema("version: 3\n", filename="app/schema.yaml")


def test_spec_example_loads_into_the_model(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, SPEC_EXAMPLE))
    assert schema.names == ("posts", "comments")
    assert schema.source == str(tmp_path / "schema.yaml")
    posts, comments = schema.collections
    assert posts.field("author_id") == Field(
        "author_id",
        FieldType.UUID,
        index=True,
        references=Reference("_alyx_users", "id", "cascade"),
    )
    assert posts.field("title") == Field(
        "title", FieldType.STRING, validation=Validation(min_length=1, max_length=200)
    )
    assert posts.field("updated_at") == Field(
        "updated_at", FieldType.TIMESTAMP, default=Default("now"), on_update_now=True
    )
    assert posts.indexes[0].fields == ("published", "created_at")
    assert posts.indexes[0].order == "desc"
    assert posts.rules.delete == (
        "auth != null && (auth.id == doc.author_id || auth.role == 'admin')"
    )
    assert comments.primary == Field("id", FieldType.INT, primary=True, default=Default("auto"))
    assert comments.field("user_id") == Field(
        "user_id",
        FieldType.UUID,
        nullable=True,
        references=Reference("_alyx_users", "id", "set null"),
    )
    assert comments.field("body") == Field(
        "body", FieldType.TEXT, validation=Validation(min_length=1, max_length=5000)
    )


def test_spec_example_round_trips_through_snapshots(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, SPEC_EXAMPLE))
    assert Schema.from_dict(schema.to_dict()) == schema
    assert parse_schema(yaml.safe_dump(schema.to_dict(), sort_keys=False)) == schema
    assert parse_schema(SPEC_EXAMPLE).checksum() == schema.checksum()


def test_locations_point_at_collections_fields_and_indexes(tmp_path: Path) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    posts = load_schema(path).collections[0]
    file = str(path)
    assert posts.location == Location(file, 3, 3, "collections.posts")
    title = posts.field("title")
    assert title is not None
    assert title.location == Location(file, 6, 7, "collections.posts.fields.title")
    assert posts.indexes[0].location == Location(file, 13, 9, "collections.posts.indexes[0]")


def test_rule_locations_point_at_the_first_character_of_the_rule() -> None:
    text = POSTS + textwrap.dedent(
        """\
            rules:
              create: "auth != null"
              read:   doc.published
              update: 'auth.id == doc.id'
              delete: |
                auth != null &&
                auth.role == 'admin'
        """
    ).replace("\n", "\n    ").rstrip(" ").replace("rules:", "    rules:", 1)
    posts = parse_schema(text).collections[0]
    lines = text.splitlines()
    starts = {"create": "auth", "read": "doc", "update": "auth", "delete": "auth"}
    for action, first in starts.items():
        where = posts.rule_locations[action]
        assert where.path == f"collections.posts.rules.{action}"
        assert where.line is not None and where.column is not None
        assert lines[where.line - 1][where.column - 1 :].startswith(first), (action, where)
    assert posts.rule_locations["delete"].line == 11
    assert posts.rules.delete == "auth != null &&\nauth.role == 'admin'\n"


def test_absent_and_null_rules_mean_admins_only() -> None:
    posts = parse_schema(POSTS + "    rules:\n      read: 'true'\n      delete:\n").collections[0]
    assert posts.rules.read == "true"
    assert posts.rules.delete is None and posts.rules.create is None
    assert set(posts.rule_locations) == {"read"}


def test_sql_keywords_are_accepted_as_names() -> None:
    schema = parse_schema(
        """\
version: 1
collections:
  order:
    fields:
      select: { type: int, primary: true, default: auto }
      group:  { type: string, index: true }
      from:   { type: int, references: order.select, nullable: true }
    indexes:
      - { name: where, fields: [group, from] }
  table:
    fields:
      key: { type: string, primary: true }
"""
    )
    order = schema.collections[0]
    assert schema.names == ("order", "table")
    assert order.field_names == ("select", "group", "from")
    assert order.indexes[0].name == "where"


def test_index_name_is_generated_when_left_out() -> None:
    text = field_case("a: { type: int }\n      b: { type: int }")
    text += "    indexes:\n      - { fields: [a, b], unique: true }\n"
    index = parse_schema(text).collections[0].indexes[0]
    assert index.name == "idx_posts_a_b"
    assert (index.fields, index.unique, index.order) == (("a", "b"), True, "asc")


def test_validate_block_and_direct_options_merge() -> None:
    direct = parse_schema(
        field_case("s: { type: string, minLength: 1, pattern: '^a', maxLength: 9 }")
    )
    nested = parse_schema(
        field_case("s: { type: string, minLength: 1, validate: { pattern: '^a', maxLength: 9 } }")
    )
    assert direct == nested
    s = nested.collections[0].field("s")
    assert s is not None
    assert s.validation == Validation(min_length=1, max_length=9, pattern="^a")


def test_literal_defaults_are_stored_in_normal_form() -> None:
    schema = parse_schema(
        POSTS
        + """\
      t1: { type: timestamp, default: "2026-01-31T13:00:00+01:00" }
      t2: { type: timestamp, default: 2026-01-31 }
      t3: { type: timestamp, default: 2026-01-31T12:00:00.123456Z }
      f:  { type: float, default: 2 }
      u:  { type: uuid, default: "0B7E2E4A-3C1D-4F7E-9A55-8A2F1F3C9D10" }
      j:  { type: json, default: { tags: [a, 1, true, null] } }
      n:  { type: string, nullable: true, default: null }
      b:  { type: blob, default: aGk= }
      e:  { type: string, format: email, default: ada@example.com }
"""
    )
    posts = schema.collections[0]
    defaults = {f.name: f.default for f in posts.fields[1:]}
    assert defaults == {
        "t1": Default("literal", "2026-01-31T12:00:00.000Z"),
        "t2": Default("literal", "2026-01-31T00:00:00.000Z"),
        "t3": Default("literal", "2026-01-31T12:00:00.123Z"),
        "f": Default("literal", 2.0),
        "u": Default("literal", "0B7E2E4A-3C1D-4F7E-9A55-8A2F1F3C9D10"),
        "j": Default("literal", {"tags": ["a", 1, True, None]}),
        "n": None,
        "b": Default("literal", "aGk="),
        "e": Default("literal", "ada@example.com"),
    }
    assert isinstance(defaults["f"] and defaults["f"].value, float)


def test_default_must_match_its_format() -> None:
    with pytest.raises(SchemaError, match=r"default 'ada' is not a valid email"):
        parse_schema(field_case("e: { type: string, format: email, default: ada }"))


def test_self_reference_and_reference_to_a_unique_field_load() -> None:
    schema = parse_schema(
        """\
version: 1
collections:
  tags:
    fields:
      id:     { type: uuid, primary: true, default: auto }
      slug:   { type: string, unique: true }
      parent: { type: uuid, references: tags.id, nullable: true, onDelete: set null }
  posts:
    fields:
      id:  { type: int, primary: true, default: auto }
      tag: { type: string, references: tags.slug }
"""
    )
    tags, posts = schema.collections
    assert tags.field("parent") == Field(
        "parent", FieldType.UUID, nullable=True, references=Reference("tags", "id", "set null")
    )
    assert posts.field("tag") == Field(
        "tag", FieldType.STRING, references=Reference("tags", "slug", "restrict")
    )


def test_anchors_and_merge_keys_can_share_field_options() -> None:
    schema = parse_schema(
        POSTS
        + """\
      created_at: &stamp { type: timestamp, default: now }
      updated_at: { <<: *stamp, onUpdate: now }
"""
    )
    posts = schema.collections[0]
    assert posts.field("updated_at") == Field(
        "updated_at", FieldType.TIMESTAMP, default=Default("now"), on_update_now=True
    )


def test_keys_are_read_as_written() -> None:
    # YAML 1.1 would read the key `on` as a boolean; field names stay the text written.
    posts = parse_schema(field_case("on: { type: bool, default: no }")).collections[0]
    assert posts.field("on") == Field("on", FieldType.BOOL, default=Default("literal", False))


def test_empty_collections_load() -> None:
    assert parse_schema("version: 1\ncollections:\n") == Schema()
    assert parse_schema("version: 1\n") == Schema()


@given(schemas())
def test_generated_schemas_load_and_round_trip(schema: Schema) -> None:
    text = yaml.safe_dump(schema.to_dict(), sort_keys=False, allow_unicode=True)
    loaded = parse_schema(text)
    assert loaded == schema
    assert Schema.from_dict(loaded.to_dict()) == loaded
    for collection in loaded:
        assert isinstance(collection, Collection)
        assert collection.location is not None and collection.location.line is not None


@settings(max_examples=25)
@given(schema_dicts(max_collections=2))
def test_generated_schema_dicts_are_valid_schema_yaml(data: dict[str, object]) -> None:
    assert parse_schema(yaml.safe_dump(data)).to_dict() == data
