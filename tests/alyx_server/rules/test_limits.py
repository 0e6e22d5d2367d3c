"""Size limits of CEL expressions, sent from the attacker's side over the real server.

A `where=` of 500 `&&` terms or 300 nested parentheses once raised RecursionError (a 500)
after hundreds of milliseconds of parsing on the event loop. Now every limit (a where's
1024 characters and 200 tokens, 32 nested brackets, a 100-level syntax tree) answers 400
INVALID_QUERY naming the limit (an INVALID_FILTER frame on a realtime subscribe), and an
expression just inside each limit, like those the CEL specification requires (32 nested
levels, 32 terms in a row), is still served. A schema rule over a limit stops the load
with a located RuleError.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from alyx_server.app import create_app
from alyx_server.errors import RuleError
from alyx_server.rules.load import compile_schema_rules
from alyx_server.schema.loader import parse_schema
from tests.alyx_server.api.projects import make_settings, write_project
from tests.alyx_server.realtime.support import LiveClient

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]
POSTS = "/api/collections/posts"


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: ClientFactory) -> Client:
    return await aiohttp_client(create_app(make_settings(write_project(tmp_path / "project"))))


def _list_of(count: int) -> str:
    return "[" + ",".join(["1"] * count) + "]"


# (name, accepted: just inside the limit, refused: over it, the message naming the limit)
LIMITS = [
    (
        "nesting",
        "(" * 32 + "doc.n >= 0" + ")" * 32,
        "(" * 33 + "doc.n >= 0" + ")" * 33,
        "brackets are nested more than 32 deep; the limit is 32 levels (at column 33 of",
    ),
    (
        "length",
        "doc.title != '" + "x" * 1009 + "'",
        "doc.title != '" + "x" * 1010 + "'",
        "the expression has 1025 characters; the limit is 1024",
    ),
    (
        # doc.n in [1, ...] || [1][0] == 1: 2k + 14 tokens
        "tokens",
        f"doc.n in {_list_of(93)} || [1][0] == 1",
        f"doc.n in {_list_of(94)} || [1][0] == 1",
        "the expression has more than 200 tokens (names, literals, operators); the limit is 200",
    ),
    (
        # || (1 level), ! x 97, doc.published (a selection on a name: 2): 100 levels
        "depth",
        "!" * 97 + "doc.published || true",
        "!" * 98 + "doc.published || true",
        "the expression is nested more than 100 levels deep; the limit is 100",
    ),
    (
        # 33 terms in a row (CEL asks for 32) are a balanced tree, not a deep one
        "chain",
        " && ".join(["doc.n >= 0"] * 33),
        "&&".join(["true"] * 500),
        "the expression has 2998 characters; the limit is 1024",
    ),
]


@pytest.mark.parametrize(("name", "accepted", "over", "message"), LIMITS, ids=[x[0] for x in LIMITS])
async def test_where_limits_answer_400_naming_the_limit_and_serve_what_is_inside(
    client: Client, name: str, accepted: str, over: str, message: str
) -> None:
    await client.post(POSTS, json={"title": "a", "n": 1})
    response = await client.get(POSTS, params={"where": accepted})
    body = await response.json()
    assert response.status == 200, (name, body)
    assert body["total"] == 1
    response = await client.get(POSTS, params={"where": over})
    body = await response.json()
    assert response.status == 400, (name, body)
    assert body["code"] == "INVALID_QUERY"
    assert body["error"].startswith("invalid where: ")
    assert message in body["error"], body


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("(" * 300 + "true" + ")" * 300, "brackets are nested more than 32 deep"),
        ("&&".join(["doc.n>0"] * 500), "the expression has 4498 characters; the limit is 1024"),
        ("-" * 300 + "doc.n < 0", "the expression has more than 200 tokens"),
    ],
)
async def test_the_attacks_that_raised_recursion_errors_are_400(
    client: Client, where: str, message: str
) -> None:
    response = await client.get(POSTS, params={"where": where})
    body = await response.json()
    assert response.status == 400, body
    assert body["code"] == "INVALID_QUERY"
    assert message in body["error"]
    assert len(body["error"]) < 600  # the expression is quoted cut, not whole


@pytest.mark.parametrize(
    ("where", "matches"),
    [
        ("!" * 60 + "doc.published", False),
        ("!" * 61 + "doc.published", True),
        ("".join(f"doc.n == {i} ? false : " for i in range(2, 20)) + "doc.title == 'a'", True),
        ("".join(f"!(doc.n == {i} ? false : " for i in range(2, 14)) + "true" + ")" * 12, True),
    ],
)
async def test_a_deep_where_inside_the_limits_is_served_not_an_sqlite_parser_overflow(
    client: Client, where: str, matches: bool
) -> None:
    """SQLite's parser overflows at about 48 nested `NOT (`; deep parts are checked per row."""
    await client.post(POSTS, json={"title": "a", "n": 1})
    response = await client.get(POSTS, params={"where": where})
    body = await response.json()
    assert response.status == 200, body
    assert body["total"] == (1 if matches else 0)


async def test_realtime_where_over_a_limit_is_an_error_frame(client: Client) -> None:
    live = await LiveClient.connect(client)
    for where, message in (
        ("(" * 300 + "true" + ")" * 300, "brackets are nested more than 32 deep; the limit is 32 levels"),
        ("!" * 120 + "true", "the expression is nested more than 100 levels deep; the limit is 100"),
    ):
        answer = await live.subscribe({"collection": "posts", "where": where})
        assert answer["type"] == "error", answer
        assert answer["payload"]["code"] == "INVALID_FILTER"
        assert message in answer["payload"]["message"]
    snapshot = await live.subscribe({"collection": "posts", "where": "(" * 32 + "true" + ")" * 32})
    assert snapshot["type"] == "snapshot"


SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:        { type: uuid, primary: true, default: auto }
      published: { type: bool, default: false }
    rules:
      read: "{rule}"
"""


@pytest.mark.parametrize(
    ("rule", "location", "message"),
    [
        ("(" * 400 + "true" + ")" * 400, "schema.yaml:8:46:", "brackets are nested more than 32 deep"),
        (
            "!" * 150 + "doc.published",
            "schema.yaml:8:114:",
            "the expression is nested more than 100 levels deep",
        ),
    ],
)
def test_a_schema_rule_over_a_limit_is_a_located_rule_error(rule: str, location: str, message: str) -> None:
    schema = parse_schema(SCHEMA.replace("{rule}", rule), filename="schema.yaml")
    with pytest.raises(RuleError) as info:
        compile_schema_rules(schema)
    text = str(info.value)
    assert text.startswith(location), text
    assert "the read rule of posts does not compile: " + message in text
    assert len(text) < 600


def test_a_schema_rule_has_no_length_limit_and_a_long_chain_is_not_deep() -> None:
    rule = " || ".join(["doc.published"] * 500)
    rules = compile_schema_rules(parse_schema(SCHEMA.replace("{rule}", rule), filename="schema.yaml"))
    read = rules.get("posts", "read")
    assert read is not None
    assert read.can_read(None, {"id": "x", "published": True}) is True
    assert read.can_read(None, {"id": "x", "published": False}) is False


async def test_the_openapi_document_states_the_where_length_the_server_enforces(client: Client) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    params = document["paths"][POSTS]["get"]["parameters"]
    where = next(p for p in params if p.get("name") == "where")
    longest = where["schema"]["maxLength"]
    assert longest == 1024
    text = "doc.title != '" + "x" * (longest - 15) + "'"
    assert len(text) == longest
    assert (await client.get(POSTS, params={"where": text})).status == 200
    assert (await client.get(POSTS, params={"where": text + " "})).status == 400
