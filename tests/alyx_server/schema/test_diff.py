"""The schema differ: every kind of change, classified safe or destructive, with its wording."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from alyx_server.schema.ddl import collection_sql
from alyx_server.schema.diff import (
    Change,
    SchemaDiff,
    creation_order,
    diff_schemas,
    precheck,
    type_change_is_safe,
)
from alyx_server.schema.model import (
    Collection,
    Default,
    Field,
    FieldType,
    Index,
    Reference,
    Rules,
    Schema,
    Validation,
)

T = FieldType

ID = Field("id", T.UUID, primary=True, default=Default("auto"))
POSTS = Collection(
    "posts",
    (
        ID,
        Field("title", T.STRING),
        Field("slug", T.STRING, nullable=True),
        Field("n", T.INT, nullable=True),
        Field("flag", T.BOOL, default=Default("literal", False)),
        Field("author_id", T.UUID, nullable=True, references=Reference("users", "id")),
    ),
    indexes=(Index("idx_posts_title", ("title",)),),
    rules=Rules(read="true"),
)
USERS = Collection("users", (ID, Field("email", T.STRING, unique=True)))
BASE = Schema((USERS, POSTS))


def with_field(f: Field) -> Schema:
    """BASE with `f` replacing the posts field of the same name, or appended."""
    fields = list(POSTS.fields)
    names = [x.name for x in fields]
    if f.name in names:
        fields[names.index(f.name)] = f
    else:
        fields.append(f)
    return Schema((USERS, replace(POSTS, fields=tuple(fields))))


def field(name: str) -> Field:
    f = POSTS.field(name)
    assert f is not None
    return f


def without_field(name: str) -> Schema:
    fields = tuple(f for f in POSTS.fields if f.name != name)
    return Schema((USERS, replace(POSTS, fields=fields)))


def with_posts(**changes: object) -> Schema:
    return Schema((USERS, replace(POSTS, **changes)))  # type: ignore[arg-type]


COMMENTS = Collection(
    "comments", (ID, Field("post_id", T.UUID, references=Reference("posts", "id")))
)

# (case, new schema, kind, name, destructive, summary, reason fragment)
CASES: list[tuple[str, Schema, str, str | None, bool, str, str]] = [
    ("new collection", Schema((USERS, POSTS, COMMENTS)), "add_collection", None, False,
     "+ comments", "creates collection comments"),
    ("dropped collection", Schema((USERS,)), "drop_collection", None, True,
     "- posts", "drops collection posts and all its rows"),
    ("new nullable field", with_field(Field("views", T.INT, nullable=True)), "add_field", "views",
     False, "+ posts.views", "adds nullable column posts.views"),
    ("new defaulted field", with_field(Field("views", T.INT, default=Default("literal", 0))),
     "add_field", "views", False, "+ posts.views", "adds defaulted column posts.views"),
    ("new field defaulting to now", with_field(Field("at", T.TIMESTAMP, default=Default("now"))),
     "add_field", "at", False, "+ posts.at", "adds defaulted column posts.at"),
    ("new required field", with_field(Field("views", T.INT)), "add_field", "views", True,
     "+ posts.views", "posts.views is required and has no default"),
    ("new unique field with a shared default",
     with_field(Field("code", T.STRING, unique=True, default=Default("literal", "x"))),
     "add_field", "code", True, "+ posts.code", "every existing row would get the same default"),
    ("dropped field", without_field("slug"), "drop_field", "slug", True, "- posts.slug",
     "drops column posts.slug and its data"),
    ("widening int -> float", with_field(replace(field("n"), type=T.FLOAT)), "alter_field", "n",
     False, "~ posts.n int -> float", "posts.n widens int -> float"),
    ("narrowing int -> bool", with_field(replace(field("n"), type=T.BOOL)), "alter_field", "n",
     True, "~ posts.n int -> bool", "posts.n changes type int -> bool"),
    ("json is never a widening", with_field(replace(field("slug"), type=T.JSON)), "alter_field",
     "slug", True, "~ posts.slug string -> json", "changes type string -> json"),
    ("nullable -> NOT NULL", with_field(replace(field("slug"), nullable=False)), "alter_field",
     "slug", True, "~ posts.slug NOT NULL", "posts.slug becomes NOT NULL (stricter)"),
    ("NOT NULL -> nullable", with_field(replace(field("title"), nullable=True)), "alter_field",
     "title", False, "~ posts.title nullable", "posts.title becomes nullable (looser)"),
    ("unique added", with_field(replace(field("slug"), unique=True)), "alter_field", "slug", True,
     "~ posts.slug unique", "posts.slug becomes unique (stricter)"),
    ("reference added", with_field(replace(field("slug"), references=Reference("users", "email"))),
     "alter_field", "slug", True, "~ posts.slug references users.email",
     "posts.slug now references users.email (stricter)"),
    ("reference dropped", with_field(replace(field("author_id"), references=None)), "alter_field",
     "author_id", False, "~ posts.author_id no reference", "no longer references users.id"),
    ("onDelete changed",
     with_field(replace(field("author_id"), references=Reference("users", "id", "cascade"))),
     "alter_field", "author_id", False, "~ posts.author_id onDelete cascade", "table rebuilt"),
    ("primary changed", with_field(replace(field("title"), primary=True)), "alter_field", "title",
     True, "~ posts.title primary", "posts.title becomes the primary key"),
    ("default changed", with_field(replace(field("flag"), default=Default("literal", True))),
     "alter_field", "flag", False, "~ posts.flag default False -> True",
     "posts.flag default False -> True"),
    ("index flag", with_field(replace(field("slug"), index=True)), "alter_field", "slug", False,
     "~ posts.slug indexed", "posts.slug gains its index"),
    ("validation only", with_field(replace(field("title"), validation=Validation(max_length=3))),
     "alter_field", "title", False, "~ posts.title validation", "checked by Alyx, no SQL change"),
    ("new index", with_posts(indexes=(*POSTS.indexes, Index("idx_n", ("n",)))), "add_index",
     "idx_n", False, "+ index idx_n", "creates index idx_n on posts(n)"),
    ("new unique index", with_posts(indexes=(*POSTS.indexes, Index("uq_n", ("n", "slug"), True))),
     "add_index", "uq_n", True, "+ index uq_n", "existing duplicates are refused"),
    ("dropped index", with_posts(indexes=()), "drop_index", "idx_posts_title", False,
     "- index idx_posts_title", "drops index idx_posts_title on posts"),
    ("rule change", with_posts(rules=Rules(read="false")), "change_rules", "read", False,
     "rules posts.read", "changes the read rule of posts"),
]


@pytest.mark.parametrize(
    ("new", "kind", "name", "destructive", "summary", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_change_is_classified(
    new: Schema, kind: str, name: str | None, destructive: bool, summary: str, reason: str
) -> None:
    diff = diff_schemas(BASE, new)
    assert [c.kind for c in diff.changes] == [kind]
    change = diff.changes[0]
    assert change.name == name
    assert change.destructive is destructive
    assert change.summary == summary
    assert reason in change.reason
    assert (diff.destructive if destructive else diff.safe) == (change,)


def test_identical_schemas_have_no_changes_and_order_does_not_count() -> None:
    shuffled = replace(POSTS, fields=tuple(reversed(POSTS.fields)))
    assert diff_schemas(BASE, BASE).changes == ()
    assert not diff_schemas(BASE, Schema((shuffled, USERS)))
    assert diff_schemas(BASE, BASE).summary() == "no schema changes"


def test_a_rename_is_a_drop_plus_an_add_and_destructive() -> None:
    renamed = replace(field("slug"), name="handle")
    fields = tuple(renamed if f.name == "slug" else f for f in POSTS.fields)
    diff = diff_schemas(BASE, with_posts(fields=fields))
    assert [(c.kind, c.name, c.destructive) for c in diff.changes] == [
        ("drop_field", "slug", True),
        ("add_field", "handle", False),
    ]


def test_one_alter_lists_every_aspect_and_only_stricter_ones_as_reasons() -> None:
    new = replace(field("slug"), type=T.TEXT, nullable=False, index=True)
    change = diff_schemas(BASE, with_field(new)).changes[0]
    assert change.summary == "~ posts.slug string -> text, NOT NULL, indexed"
    assert change.destructive
    assert change.reason == "posts.slug becomes NOT NULL (stricter)"
    assert change.old == field("slug") and change.new == new


def test_a_changed_index_is_dropped_and_added() -> None:
    desc = Index("idx_posts_title", ("title",), order="desc")
    diff = diff_schemas(BASE, with_posts(indexes=(desc,)))
    assert [c.kind for c in diff.changes] == ["drop_index", "add_index"]


def test_summary_marks_destructive_changes_with_their_reason() -> None:
    diff = diff_schemas(BASE, Schema((USERS, replace(POSTS, fields=POSTS.fields[:-1]), COMMENTS)))
    assert diff.summary().splitlines() == [
        "+ comments",
        "- posts.author_id  (destructive: drops column posts.author_id and its data)",
    ]
    assert bool(diff)


def test_new_collections_come_referenced_first() -> None:
    a = Collection("a", (ID, Field("b_id", T.UUID, references=Reference("b", "id"))))
    b = Collection("b", (ID, Field("c_id", T.UUID, references=Reference("c", "id"))))
    c = Collection("c", (ID, Field("self_id", T.UUID, references=Reference("c", "id"))))
    assert [x.name for x in creation_order([a, b, c])] == ["c", "b", "a"]
    diff = diff_schemas(Schema(), Schema((a, b, c)))
    assert [x.collection for x in diff.changes] == ["c", "b", "a"]


@pytest.mark.parametrize(
    ("old", "new", "safe"),
    [
        (T.BOOL, T.INT, True),
        (T.BOOL, T.FLOAT, True),
        (T.INT, T.FLOAT, True),
        (T.UUID, T.STRING, True),
        (T.UUID, T.TEXT, True),
        (T.STRING, T.TEXT, True),
        (T.TEXT, T.STRING, True),
        (T.INT, T.INT, True),
        (T.INT, T.BOOL, False),
        (T.FLOAT, T.INT, False),
        (T.TEXT, T.INT, False),
        (T.STRING, T.UUID, False),
        (T.JSON, T.TEXT, False),
        (T.TEXT, T.JSON, False),
        (T.TIMESTAMP, T.STRING, False),
        (T.INT, T.STRING, False),
    ],
)
def test_type_change_is_safe(old: FieldType, new: FieldType, safe: bool) -> None:
    assert type_change_is_safe(old, new) is safe


# -- precheck ---------------------------------------------------------------------------


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    """BASE created in a real file, with users u1, u2 and posts p1..p4."""
    db = sqlite3.connect(tmp_path / "alyx.db", isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute(
        "CREATE TABLE _alyx_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT "
        "NULL, operation TEXT NOT NULL, doc_id, changed_fields TEXT, ts TEXT NOT NULL)"
    )
    for c in BASE:
        for sql in collection_sql(c):
            db.execute(sql)
    db.executemany("INSERT INTO users (id, email) VALUES (?, ?)", [("u1", "a@x"), ("u2", "b@x")])
    db.executemany(
        "INSERT INTO posts (id, title, slug, n, author_id) VALUES (?, ?, ?, ?, ?)",
        [
            ("p1", "a", None, 0, "u1"),
            ("p2", "b", None, 7, None),
            ("p3", "c", "same", 2, "u2"),
            ("p4", "d", "same", 1, None),
        ],
    )
    return db


PRECHECKS: list[tuple[str, Schema, list[str]]] = [
    ("NULL into NOT NULL", with_field(replace(field("slug"), nullable=False)),
     ["2 rows have NULL in posts.slug"]),
    ("duplicates into unique", with_field(replace(field("slug"), unique=True)),
     ["2 rows have duplicate values in posts.slug"]),
    ("unconvertible values", with_field(replace(field("n"), type=T.BOOL)),
     ["2 rows in posts.n cannot become bool (ids: p2, p3)"]),
    ("required field without default", with_field(Field("views", T.INT)),
     ["4 rows have NULL in posts.views (a new field without a default)"]),
    ("shared default on a unique field",
     with_field(Field("code", T.STRING, unique=True, default=Default("literal", "x"))),
     ["4 rows would share the default of unique field posts.code"]),
    ("dangling references",
     with_field(replace(field("slug"), references=Reference("users", "email"))),
     ["2 rows in posts.slug reference a missing users.email (ids: p3, p4)"]),
    ("duplicates into a unique index",
     with_posts(indexes=(*POSTS.indexes, Index("uq_slug_flag", ("slug", "flag"), True))),
     ["2 rows have duplicate values in posts(slug, flag) for unique index uq_slug_flag"]),
    ("a new field's shared default in a new unique index",
     with_posts(fields=(*POSTS.fields, Field("code", T.STRING, default=Default("literal", "x"))),
                indexes=(*POSTS.indexes, Index("uq_code", ("code",), True))),
     ["4 rows have duplicate values in posts(code) for unique index uq_code"]),
    ("a change the rows satisfy", with_field(replace(field("title"), unique=True)), []),
    ("a widening", with_field(replace(field("n"), type=T.FLOAT)), []),
    ("a looser constraint", with_field(replace(field("title"), nullable=True)), []),
]


@pytest.mark.parametrize(
    ("new", "messages"), [c[1:] for c in PRECHECKS], ids=[c[0] for c in PRECHECKS]
)
def test_precheck_names_the_offending_rows(
    conn: sqlite3.Connection, new: Schema, messages: list[str]
) -> None:
    diff = diff_schemas(BASE, new)
    assert precheck(conn, diff) == messages
    assert precheck(conn, list(diff.changes)) == messages


def test_precheck_lists_at_most_five_ids(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO posts (id, title, n) VALUES (?, 't', 5)", [(f"q{i}",) for i in range(6)]
    )
    diff = diff_schemas(BASE, with_field(replace(field("n"), type=T.BOOL)))
    assert precheck(conn, diff) == [
        "8 rows in posts.n cannot become bool (ids: p2, p3, q0, q1, q2, ...)"
    ]


def test_precheck_of_a_single_change_and_of_a_new_collection(conn: sqlite3.Connection) -> None:
    one: Change = diff_schemas(BASE, with_field(replace(field("slug"), nullable=False))).changes[0]
    assert precheck(conn, [one]) == ["2 rows have NULL in posts.slug"]
    assert precheck(conn, diff_schemas(BASE, Schema((USERS, POSTS, COMMENTS)))) == []
    assert isinstance(diff_schemas(BASE, BASE), SchemaDiff)
