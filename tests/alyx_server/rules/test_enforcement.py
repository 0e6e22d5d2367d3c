"""CEL rules enforced over REST: a table-driven matrix (actor x action x doc) per scaffold,
and the attacks a rule must withstand, sent from the attacker's side."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.app import create_app
from alyx_server.resources import data_dir
from alyx_server.rules.access import CelAccess
from alyx_server.rules.load import compile_schema_rules
from alyx_server.schema.loader import load_schema
from tests.alyx_server.auth.support import PASSWORD, make_auth_settings, register

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]
ADMIN = "root@example.com"


async def _app(root: Path, aiohttp_client: ClientFactory) -> Client:
    settings = make_auth_settings(root, **{"auth.rate_limit.login": "off", "auth.rate_limit.register": "off"})
    schema = load_schema(root / "schema.yaml")
    return await aiohttp_client(
        create_app(settings, schema=schema, policy=CelAccess(compile_schema_rules(schema)))
    )


def _project(tmp: Path, scaffold: str | None = None, schema: str | None = None) -> Path:
    root = tmp / "project"
    root.mkdir(parents=True)
    if scaffold is not None:
        shutil.copy(data_dir("scaffolds") / scaffold / "schema.yaml", root / "schema.yaml")
    else:
        assert schema is not None
        (root / "schema.yaml").write_text(schema)
    (root / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n")
    return root


class Actors:
    def __init__(self, client: Client, tokens: dict[str, str | None], ids: dict[str, str]) -> None:
        self.client, self.tokens, self.ids = client, tokens, ids

    async def call(self, actor: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = self.tokens[actor]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.request(method, path, json=body, headers=headers)
        return response.status, (await response.json() if response.status != 204 else None)


async def _actors(root: Path, aiohttp_client: ClientFactory) -> Actors:
    client = await _app(root, aiohttp_client)
    ada, bob = await register(client, "ada@example.com"), await register(client, "bob@example.com")
    result = CliRunner().invoke(
        cli, ["admin", "create", ADMIN, "--password-stdin", "-C", str(root)], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    response = await client.post("/api/auth/login", json={"email": ADMIN, "password": PASSWORD})
    admin = (await response.json())["tokens"]["access_token"]
    tokens = {"anon": None, "ada": ada.access, "bob": bob.access, "admin": admin}
    return Actors(client, tokens, {"ada": ada.id, "bob": bob.id})


# -- the owner-only scaffolds (basic: notes, todo: lists) ---------------------------------
OWNER_ONLY = [("basic", "notes", {"title": "n"}), ("todo", "lists", {"name": "l"})]
# actor -> (create own, create as ada, get ada's, list count of ada's, update ada's,
#           take over ada's (owner_id = actor), delete ada's)
OWNER_MATRIX = {
    "anon":  (403, 403, 404, 0, 404, 404, 404),
    "ada":   (201, 201, 200, 1, 200, 200, 204),
    "bob":   (201, 403, 404, 0, 404, 404, 404),
    "admin": (201, 201, 200, 1, 200, 200, 204),
}  # fmt: skip


@pytest.mark.parametrize(("scaffold", "collection", "fields"), OWNER_ONLY)
async def test_owner_only_scaffold_matrix(
    tmp_path: Path, aiohttp_client: ClientFactory, scaffold: str, collection: str, fields: dict[str, Any]
) -> None:
    actors = await _actors(_project(tmp_path, scaffold), aiohttp_client)
    base = f"/api/collections/{collection}"
    for actor, expected in OWNER_MATRIX.items():
        me = actors.ids.get(actor, actors.ids["ada"])
        got = []
        got.append((await actors.call(actor, "POST", base, {**fields, "owner_id": me}))[0])
        got.append((await actors.call(actor, "POST", base, {**fields, "owner_id": actors.ids["ada"]}))[0])
        status, doc = await actors.call("ada", "POST", base, {**fields, "owner_id": actors.ids["ada"]})
        assert status == 201
        url = f"{base}/{doc['id']}"
        got.append((await actors.call(actor, "GET", url))[0])
        status, page = await actors.call(actor, "GET", f"{base}?filter=id:eq:{doc['id']}")
        got.append(page["total"] if status == 200 else -status)
        got.append((await actors.call(actor, "PATCH", url, fields))[0])
        got.append((await actors.call(actor, "PATCH", url, {"owner_id": me}))[0])
        got.append((await actors.call(actor, "DELETE", url))[0])
        assert tuple(got) == expected, actor


# -- the blog scaffold ----------------------------------------------------------------------
# actor -> (get published, get draft, list total, update ada's post, delete ada's post)
BLOG_MATRIX = {
    "anon":  (200, 404, 1, 403, 403),  # the published post is readable: refusals are 403
    "ada":   (200, 200, 2, 200, 204),
    "bob":   (200, 404, 1, 403, 403),
    "admin": (200, 200, 2, 200, 204),
}  # fmt: skip


async def _blog(tmp: Path, aiohttp_client: ClientFactory) -> tuple[Actors, str, str]:
    actors = await _actors(_project(tmp, "blog"), aiohttp_client)
    ada = actors.ids["ada"]
    posts = "/api/collections/posts"
    hello = {"title": "Hello", "slug": "hello", "author_id": ada, "published": True}
    _s, pub = await actors.call("ada", "POST", posts, hello)
    _s, draft = await actors.call("ada", "POST", posts, {"title": "Draft", "slug": "draft", "author_id": ada})
    return actors, pub["id"], draft["id"]


async def test_blog_matrix(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    for actor, expected in BLOG_MATRIX.items():
        actors, pub, draft = await _blog(tmp_path / actor, aiohttp_client)
        posts = "/api/collections/posts"
        got = [
            (await actors.call(actor, "GET", f"{posts}/{pub}"))[0],
            (await actors.call(actor, "GET", f"{posts}/{draft}"))[0],
            (await actors.call(actor, "GET", posts))[1]["total"],
            (await actors.call(actor, "PATCH", f"{posts}/{pub}", {"title": "Changed"}))[0],
            (await actors.call(actor, "DELETE", f"{posts}/{pub}"))[0],
        ]
        assert tuple(got) == expected, actor


async def test_create_as_someone_else_is_refused(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    actors, pub, _draft = await _blog(tmp_path, aiohttp_client)
    forged = {"title": "Forged", "slug": "forged", "author_id": actors.ids["ada"]}
    status, body = await actors.call("bob", "POST", "/api/collections/posts", forged)
    assert (status, body["code"]) == (403, "FORBIDDEN")
    assert "the create rule of posts refuses this request" in body["error"]
    status, body = await actors.call(
        "ada", "PATCH", f"/api/collections/posts/{pub}", {"author_id": actors.ids["bob"]}
    )
    assert status == 403, body


async def test_where_cannot_widen_access_and_total_counts_only_readable(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    actors, pub, _draft = await _blog(tmp_path, aiohttp_client)
    status, page = await actors.call(
        "bob", "GET", "/api/collections/posts?where=doc.published%20%7C%7C%20true"
    )
    assert status == 200, page
    assert [d["id"] for d in page["docs"]] == [pub]
    assert page["total"] == 1
    status, page = await actors.call("ada", "GET", "/api/collections/posts?where=!doc.published")
    assert (status, page["total"]) == (200, 1)
    status, page = await actors.call("ada", "GET", "/api/collections/posts?where=doc.nope%20%3D%3D%201")
    assert (status, page["code"]) == (400, "INVALID_QUERY")
    assert "unknown field 'nope'" in page["error"] and "column 5" in page["error"]


async def test_anonymous_rule_reading_auth_id_is_denied_not_500(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    actors, _pub, draft = await _blog(tmp_path, aiohttp_client)
    comment = {"post_id": draft, "author_id": actors.ids["ada"], "body": "hi"}
    status, body = await actors.call("anon", "POST", "/api/collections/comments", comment)
    assert (status, body["code"]) == (403, "FORBIDDEN")


async def test_batch_mixing_allowed_and_denied_writes_writes_nothing(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    actors, pub, _draft = await _blog(tmp_path, aiohttp_client)
    ops = [
        {
            "method": "POST",
            "collection": "posts",
            "body": {"title": "Mine", "slug": "mine", "author_id": actors.ids["bob"]},
        },
        {"method": "DELETE", "collection": "posts", "id": pub},
    ]
    status, body = await actors.call("bob", "POST", "/api/batch", {"operations": ops})
    assert status == 403, body
    _s, page = await actors.call("admin", "GET", "/api/collections/posts")
    assert page["total"] == 2 and {d["slug"] for d in page["docs"]} == {"hello", "draft"}


EXPAND_SCHEMA = """\
version: 1
collections:
  secrets:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      owner: { type: uuid }
      text:  { type: string }
    rules: { create: "true", read: "auth != null && doc.owner == auth.id" }
  links:
    fields:
      id:     { type: uuid, primary: true, default: auto }
      secret: { type: uuid, references: secrets.id }
      n:      { type: int, default: 0 }
      meta:   { type: json, nullable: true }
    rules:
      create: "true"
      read: "10 / doc.n > 1 || doc.meta.public == true"
"""


async def test_expand_obeys_the_target_read_rule(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    actors = await _actors(_project(tmp_path, schema=EXPAND_SCHEMA), aiohttp_client)
    _s, secret = await actors.call(
        "ada", "POST", "/api/collections/secrets", {"owner": actors.ids["ada"], "text": "s"}
    )
    _s, link = await actors.call("bob", "POST", "/api/collections/links", {"secret": secret["id"], "n": 1})
    status, doc = await actors.call("bob", "GET", f"/api/collections/links/{link['id']}?expand=secret")
    assert status == 200, doc
    assert doc["expand"].get("secret") is None
    status, doc = await actors.call("ada", "GET", f"/api/collections/links/{link['id']}?expand=secret")
    assert doc["expand"]["secret"]["text"] == "s"


async def test_rows_where_the_rule_errs_are_denied_and_the_rest_served(
    tmp_path: Path, aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    actors = await _actors(_project(tmp_path, schema=EXPAND_SCHEMA), aiohttp_client)
    _s, secret = await actors.call(
        "ada", "POST", "/api/collections/secrets", {"owner": actors.ids["ada"], "text": "s"}
    )
    for n, meta in ((1, None), (0, None), (0, {"public": True}), (5, None), (0, {"public": 1})):
        await actors.call(
            "ada", "POST", "/api/collections/links", {"secret": secret["id"], "n": n, "meta": meta}
        )
    with caplog.at_level(logging.WARNING, logger="alyx.rules"):
        status, page = await actors.call("bob", "GET", "/api/collections/links?limit=1")
    assert status == 200, page
    # n=1 (10/1 > 1) and the public one; n=0 divides by zero (an error, denied), n=5 gives 2 > 1
    # is true too; meta.public == 1 is false (a JSON true is not the integer 1).
    assert page["total"] == 3 and len(page["docs"]) == 1
    assert "rule links.read denied doc" in caplog.text and "division by zero" in caplog.text
