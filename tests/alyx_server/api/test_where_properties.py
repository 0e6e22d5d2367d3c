"""Property: a generated `where` that reads a hidden field never changes an answer.

Two servers hold the same documents and differ only in their `internal` values. Each
example builds a `where` from terms over the internal fields (comparisons, `startsWith`,
`has()`, index syntax, `doc` as a whole map, macros) combined with `&&`, `||`, `!` and
`?:` with terms over visible fields, and sends it to both, over REST and as a realtime
subscribe. Every answer must be the refusal (400 INVALID_QUERY / an INVALID_FILTER
frame), identical on both servers: nothing in it depends on the hidden values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from alyx_server.app import create_app
from tests.alyx_server.api.test_where_visibility import set_internal, write_schema
from tests.alyx_server.auth.support import make_auth_settings
from tests.alyx_server.realtime.support import LiveClient

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]
POSTS = "/api/collections/posts"
IDS = ["0e9a1b2c-1111-4111-8111-11111111111" + str(i) for i in range(3)]
# The two servers' internal values: (secret_score, private_token) per document.
HIDDEN = {"a": [(3, "abc"), (7, "alpha"), (0, None)], "b": [(9, "xyz"), (-2, "zeta"), (5, "k")]}

small_ints = st.integers(min_value=-3, max_value=10)
short_text = st.text(alphabet="abckxyz", max_size=3)
ops = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
hidden_name = st.sampled_from(["secret_score", "private_token"])
string_tests = st.sampled_from(["startsWith", "endsWith", "contains"])

hidden_terms = st.one_of(
    st.builds(lambda op, v: f"doc.secret_score {op} {v}", ops, small_ints),
    st.builds(lambda op, v: f"doc['secret_score'] {op} {v}", ops, small_ints),
    st.builds(lambda m, s: f"doc.private_token.{m}({s!r})", string_tests, short_text),
    st.builds(lambda s: f"doc['private_token'] == {s!r}", short_text),
    st.builds(lambda n: f"has(doc.{n})", hidden_name),
    st.builds(lambda n: f"doc.{n} == null", hidden_name),
    st.builds(lambda v: f"size(doc.private_token) > {v}", small_ints),
    st.builds(lambda n: f"{n!r} in doc", hidden_name),
    st.builds(lambda v: f"doc.size() > {v}", small_ints),
    st.builds(lambda v: f"[{v}, 5].exists(x, doc.secret_score > x)", small_ints),
    st.builds(lambda s: f"doc.all(k, k != {s!r})", short_text),
)  # fmt: skip
visible_terms = st.one_of(
    st.just("doc.published"),
    st.just("true"),
    st.just("false"),
    st.just("auth == null"),
    st.builds(lambda op, v: f"doc.n {op} {v}", ops, small_ints),
    st.builds(lambda s: f"doc.title.startsWith({s!r})", short_text),
)


def _combine(draw: st.DrawFn, depth: int) -> str:
    """An expression with at least one hidden term, nested up to `depth` operators."""
    hidden = draw(hidden_terms)
    if depth == 0:
        return hidden
    other = _combine(draw, depth - 1) if draw(st.booleans()) else draw(visible_terms)
    left, right = draw(st.permutations([hidden, other]))
    shape = draw(st.sampled_from(["&&", "||", "!", "?:", "?:else"]))
    if shape == "!":
        return f"!({hidden}) && ({other})"
    if shape == "?:":
        return f"({left}) ? ({right}) : false"
    if shape == "?:else":
        return f"({other}) ? true : ({hidden})"
    return f"({left}) {shape} ({right})"


@st.composite
def wheres(draw: st.DrawFn) -> str:
    return _combine(draw, draw(st.integers(min_value=0, max_value=3)))


async def _server(root: Path, aiohttp_client: ClientFactory, name: str) -> Client:
    client = await aiohttp_client(create_app(make_auth_settings(write_schema(root))))
    for doc_id, (score, token) in zip(IDS, HIDDEN[name], strict=True):
        body = {"id": doc_id, "title": f"abc{doc_id[-1]}", "owner": None, "published": doc_id != IDS[2]}
        response = await client.post(POSTS, json=body)
        assert response.status == 201, await response.text()
        set_internal(root, "posts", doc_id, secret_score=score, private_token=token)
    return client


@pytest.fixture
async def servers(tmp_path: Path, aiohttp_client: ClientFactory) -> list[tuple[Client, LiveClient]]:
    out = []
    for name in ("a", "b"):
        client = await _server(tmp_path / name, aiohttp_client, name)
        out.append((client, await LiveClient.connect(client)))
    return out


def _without_request(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("request_id", "timestamp")}


@given(where=wheres())
async def test_a_where_over_hidden_fields_is_refused_alike_whatever_the_hidden_values(
    servers: list[tuple[Client, LiveClient]], where: str
) -> None:
    answers, frames = [], []
    for client, live in servers:
        response = await client.get(POSTS, params={"where": where})
        body = await response.json()
        assert response.status == 400, (where, body)
        assert body["code"] == "INVALID_QUERY", body
        assert body["error"].startswith("invalid where: "), body
        answers.append(_without_request(body))
        frame = await live.subscribe({"collection": "posts", "where": where})
        assert frame["type"] == "error", (where, frame)
        assert frame["payload"]["code"] == "INVALID_FILTER"
        frames.append(frame["payload"])
    assert answers[0] == answers[1]
    assert frames[0] == frames[1]
