"""A caller's `where` sees exactly what the caller may read in a response, sent from the
attacker's side over the real server: REST `where=` and a realtime subscribe `where`.

The attacks are those that recovered hidden values: a binary search on an `internal`
number by an anonymous caller, `startsWith` on an owner's `internal` string, and every
other way to reach a field (index syntax, `has()`, `doc` as a whole map, macros, a
message literal run by the fallback interpreter, `auth.app_metadata`). Each is refused
with 400 INVALID_QUERY naming the field as unknown, never answered with a list that
depends on the hidden value. Collection rules in schema.yaml still read every field.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.app import create_app
from tests.alyx_server.auth.support import PASSWORD, make_auth_settings, register
from tests.alyx_server.realtime.support import LiveClient

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]

SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:            { type: uuid, primary: true, default: auto }
      title:         { type: string }
      owner:         { type: string, nullable: true }
      published:     { type: bool, default: false }
      secret_score:  { type: int, default: 0, internal: true }
      private_token: { type: string, nullable: true, internal: true }
    rules:
      create: "true"
      read:   "doc.published || (auth != null && doc.owner == auth.id)"
  vault:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
      level: { type: int, default: 0, internal: true }
    rules:
      create: "true"
      read:   "doc.level < 5"
"""
POSTS = "/api/collections/posts"
POST_FIELDS = "fields of posts are: id, title, owner, published ("


def write_schema(root: Path, schema: str = SCHEMA) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(schema, encoding="utf-8")
    (root / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n", encoding="utf-8")
    return root


def set_internal(root: Path, table: str, doc_id: str, **values: Any) -> None:
    """Write internal fields straight into the database file: the API never accepts them."""
    conn = sqlite3.connect(root / "data" / "alyx.db")
    try:
        for name, value in values.items():
            conn.execute(f'UPDATE "{table}" SET "{name}" = ? WHERE id = ?', (value, doc_id))
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_schema(tmp_path / "project")


@pytest.fixture
async def client(root: Path, aiohttp_client: ClientFactory) -> Client:
    return await aiohttp_client(create_app(make_auth_settings(root)))


async def create(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    created: dict[str, Any] = await response.json()
    assert response.status == 201, created
    return created


async def refused(client: Client, where: str, token: str | None = None) -> str:
    """The error message of a list with `where`, which must be a 400 INVALID_QUERY."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.get(POSTS, params={"where": where}, headers=headers)
    body = await response.json()
    assert response.status == 400, (where, body)
    assert body["code"] == "INVALID_QUERY", body
    message: str = body["error"]
    return message


async def test_anonymous_binary_search_on_an_internal_number_is_refused(client: Client, root: Path) -> None:
    post = await create(client, POSTS, {"title": "Hello", "published": True})
    set_internal(root, "posts", post["id"], secret_score=7)
    for threshold in range(11):
        message = await refused(client, f"doc.secret_score > {threshold}")
        assert message.startswith("invalid where: unknown field 'secret_score' in doc.secret_score; ")
        assert POST_FIELDS in message
        assert "private_token" not in message
    listed = await (await client.get(POSTS)).json()
    assert listed["docs"] == [{"id": post["id"], "title": "Hello", "owner": None, "published": True}]


async def test_owner_cannot_probe_an_internal_string_with_startswith_and_totals(
    client: Client, root: Path
) -> None:
    ada = await register(client, "ada@example.com")
    post = await create(client, POSTS, {"title": "mine", "owner": ada.id})
    set_internal(root, "posts", post["id"], private_token="abc123")
    for where in (
        "doc.private_token.startsWith('a')",
        "doc.owner == auth.id && doc.private_token.startsWith('b')",
        "doc.private_token != null || doc.title == 'mine'",
    ):
        message = await refused(client, where, ada.access)
        assert "unknown field 'private_token' in doc.private_token; " + POST_FIELDS in message
    response = await client.get(POSTS, params={"where": "doc.owner == auth.id"}, headers=_bearer(ada.access))
    assert (await response.json())["total"] == 1


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("doc['secret_score'] > 4", "unknown field 'secret_score' in doc['secret_score']; " + POST_FIELDS),
        ("has(doc.secret_score)", "unknown field 'secret_score' in doc.secret_score; " + POST_FIELDS),
        (".doc.secret_score > 4", "unknown field 'secret_score' in doc.secret_score"),
        ("doc.title == 'x' || doc.secret_score > 4", "unknown field 'secret_score' in doc.secret_score"),
        ("[1].exists(x, doc.secret_score > x)", "unknown field 'secret_score' in doc.secret_score"),
        ("doc.nope > 4", "unknown field 'nope' in doc.nope; " + POST_FIELDS),
        ("'secret_score' in doc", "doc can only be read one field at a time (doc.<field>), not as a whole"),
        ("doc.size() > 4", "doc can only be read one field at a time"),
        ("size(doc) > 4", "doc can only be read one field at a time"),
        ("doc == {'id': 'x'}", "doc can only be read one field at a time"),
        ("doc.exists(k, k == 'secret_score')", "doc can only be read one field at a time"),
        ("[doc].exists(d, d.secret_score > 4)", "doc can only be read one field at a time"),
        ("doc[doc.title] > 4", "doc[...] takes a field name in quotes, such as doc['id']"),
        ("google.protobuf.Int64Value{value: doc.secret_score} > 4", "message literals (Type{field: value})"),
        (
            "auth.app_metadata.plan == 'pro'",
            "unknown field 'app_metadata' in auth.app_metadata; a where may read",
        ),
        ("auth['app_metadata'] != null", "unknown field 'app_metadata' in auth['app_metadata']"),
        ("auth == {'id': 'x'}", "auth can only be read one field at a time"),
    ],
)
async def test_every_other_way_to_reach_a_hidden_field_is_refused(
    client: Client, root: Path, where: str, expected: str
) -> None:
    post = await create(client, POSTS, {"title": "Hello", "published": True})
    set_internal(root, "posts", post["id"], secret_score=7)
    message = await refused(client, where)
    assert expected in message, message
    assert "private_token" not in message.split("(at column")[0]


@pytest.mark.parametrize(
    ("visible", "hidden"),
    [
        ("doc.published && doc.title.startsWith('He')", "doc.published && doc.private_token.startsWith('a')"),
        ("doc['title'] == 'Hello'", "doc['secret_score'] == 7"),
        ("has(doc.title) && doc.owner == null", "has(doc.private_token) && doc.owner == null"),
        ("auth == null || auth.id != doc.owner", "auth == null || auth.app_metadata != doc.owner"),
        ("[1, 2].exists(doc, doc == 2)", "[1, 2].exists(x, doc.secret_score == x)"),
    ],
)
async def test_the_same_expression_filters_on_visible_fields_and_is_refused_on_hidden_ones(
    client: Client, root: Path, visible: str, hidden: str
) -> None:
    post = await create(client, POSTS, {"title": "Hello", "published": True})
    await create(client, POSTS, {"title": "Other", "published": True})
    set_internal(root, "posts", post["id"], secret_score=7, private_token="abc")
    response = await client.get(POSTS, params={"where": visible})
    body = await response.json()
    assert response.status == 200, body
    assert post["id"] in [d["id"] for d in body["docs"]]
    assert "unknown field" in await refused(client, hidden)


async def test_rules_still_read_internal_fields_but_a_where_cannot(client: Client, root: Path) -> None:
    low = await create(client, "/api/collections/vault", {"title": "low"})
    high = await create(client, "/api/collections/vault", {"title": "high"})
    set_internal(root, "vault", low["id"], level=1)
    set_internal(root, "vault", high["id"], level=9)
    listed = await (await client.get("/api/collections/vault")).json()
    assert [d["title"] for d in listed["docs"]] == ["low"]
    response = await client.get("/api/collections/vault", params={"where": "doc.level < 5"})
    body = await response.json()
    assert response.status == 400
    assert "unknown field 'level' in doc.level; fields of vault are: id, title (" in body["error"]


async def test_admins_where_sees_no_internal_field_either(client: Client, root: Path) -> None:
    """Admins bypass rules, but no response shows them internal fields, so neither does a where."""
    post = await create(client, POSTS, {"title": "Hello"})
    set_internal(root, "posts", post["id"], secret_score=7)
    result = CliRunner().invoke(
        cli,
        ["admin", "create", "root@example.com", "--password-stdin", "-C", str(root)],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    login = await client.post("/api/auth/login", json={"email": "root@example.com", "password": PASSWORD})
    admin = (await login.json())["tokens"]["access_token"]
    shown = await (await client.get(f"{POSTS}/{post['id']}", headers=_bearer(admin))).json()
    assert "secret_score" not in shown
    message = await refused(client, "doc.secret_score > 4", admin)
    assert "unknown field 'secret_score' in doc.secret_score; " + POST_FIELDS in message


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("doc.secret_score > 4", "unknown field 'secret_score' in doc.secret_score; " + POST_FIELDS),
        ("doc['private_token'].startsWith('a')", "unknown field 'private_token' in doc['private_token']"),
        ("'secret_score' in doc", "doc can only be read one field at a time"),
    ],
)
async def test_realtime_where_on_a_hidden_field_is_an_error_frame(
    client: Client, root: Path, where: str, expected: str
) -> None:
    post = await create(client, POSTS, {"title": "Hello", "published": True})
    set_internal(root, "posts", post["id"], secret_score=7, private_token="abc")
    live = await LiveClient.connect(client)
    answer = await live.subscribe({"collection": "posts", "where": where})
    assert answer["type"] == "error", answer
    assert answer["payload"]["code"] == "INVALID_FILTER"
    assert expected in answer["payload"]["message"], answer
    snapshot = await live.subscribe({"collection": "posts", "where": "doc.title == 'Hello'"})
    assert [d["id"] for d in snapshot["payload"]["docs"]] == [post["id"]]
