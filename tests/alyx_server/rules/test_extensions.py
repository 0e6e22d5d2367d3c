"""CEL's standard extensions in rules: SQL == closures for the ones with an SQL form, the
evaluation budget charged by the ones that build values, and a rule using them enforced
over REST (list, read) and realtime."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from alyx_server.app import create_app
from alyx_server.db import ListQuery, insert_doc, list_docs, open_connection
from alyx_server.rules.compile_py import CompileEnv, compile_node
from alyx_server.rules.load import compile_where
from alyx_server.rules.syntax import parse
from alyx_server.rules.values import CelEvalError, UInt
from alyx_server.schema.ddl import collection_sql
from alyx_server.schema.loader import parse_schema
from tests.alyx_server.realtime.support import LiveClient, register, settings_for
from tests.alyx_server.rules.support import AUTH

SCHEMA = parse_schema(
    """
version: 1
collections:
  t:
    fields:
      id: { type: int, primary: true }
      s:  { type: string, nullable: true }
      j:  { type: json, nullable: true }
"""
)
COLL = SCHEMA.get("t")
assert COLL is not None

TEXT = st.text(alphabet="aAbBzZ ÆæßİK\u0131\u212a-", max_size=6)
CONST = st.sampled_from(["", "a", "A", "ab", "AB", "æ", "Æ", "ß", " ", "k", "K", "\u0131"])


@st.composite
def expressions(draw: st.DrawFn) -> str:
    subject = draw(st.sampled_from(["doc.s", "doc.j.a"]))
    c = draw(CONST)
    k = draw(st.integers(-1, 4))
    template = draw(
        st.sampled_from(
            [
                "{s}.lowerAscii() == {c!r}",
                "{s}.upperAscii() == {c!r}",
                "{s}.upperAscii().startsWith({c!r})",
                "{s}.lowerAscii().contains({c!r})",
                "{s}.indexOf({c!r}) == {k}",
                "{s}.indexOf({c!r}) > {k}",
                "{s}.lowerAscii().indexOf({c!r}) < {k} || {s} == null",
                "!({s}.upperAscii() != {c!r})",
            ]
        )
    )
    return template.format(s=subject, c=c, k=k)


@st.composite
def rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 6))
    json_values = st.none() | st.fixed_dictionaries({"a": st.none() | TEXT | st.integers(0, 3)})
    return [{"id": i + 1, "s": draw(st.none() | TEXT), "j": draw(json_values)} for i in range(n)]


def _db(docs: list[dict[str, Any]]) -> sqlite3.Connection:
    conn = open_connection(":memory:")
    for stmt in collection_sql(COLL):  # type: ignore[arg-type]
        conn.execute(stmt)
    conn.execute(
        "CREATE TABLE _alyx_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL,"
        " operation TEXT NOT NULL, doc_id, changed_fields TEXT, ts TEXT NOT NULL)"
    )
    for doc in docs:
        insert_doc(conn, COLL, doc)  # type: ignore[arg-type]
    return conn


@given(text=expressions(), docs=rows())
def test_sql_extensions_equal_the_closures(text: str, docs: list[dict[str, Any]]) -> None:
    rule = compile_where(COLL, text)  # type: ignore[arg-type]
    conn = _db(docs)
    try:
        stored = list_docs(conn, ListQuery(COLL, limit=100)).docs  # type: ignore[arg-type]
        expected = set()
        for doc in stored:
            try:
                if rule.evaluate({"doc": doc, "auth": AUTH, "request": {}}) is True:
                    expected.add(doc["id"])
            except CelEvalError:
                pass
        predicate = rule.to_predicate(AUTH, None)
        assert predicate.check is None, f"{text} should be SQL only"
        query = ListQuery(COLL, predicates=[predicate], limit=100)  # type: ignore[arg-type]
        admitted = {d["id"] for d in list_docs(conn, query).docs}
        assert admitted == expected, f"{text}: SQL {predicate.sql} {predicate.params}"
    finally:
        conn.close()


@pytest.mark.parametrize(
    "text",
    [
        "math.greatest([doc.id, 1]) == 1",
        "doc.s.split('/').size() == 2",
        "cel.bind(x, doc.s, x == 'a')",
        "doc.j.?a.orValue('') == 'a'",
        "[doc.s].exists(i, v, v == 'a')",
        "'%s'.format([doc.s]) == 'a'",
    ],
)
def test_extensions_without_sql_are_checked_per_row(text: str) -> None:
    rule = compile_where(COLL, f"doc.id > 0 && {text}")  # type: ignore[arg-type]
    predicate = rule.to_predicate(AUTH, None)
    assert predicate.sql is not None and predicate.check is not None
    conn = _db([{"id": 1, "s": "a", "j": {"a": "a"}}, {"id": 2, "s": "b/c", "j": {}}])
    try:
        query = ListQuery(COLL, predicates=[predicate], limit=100)  # type: ignore[arg-type]
        got = {d["id"] for d in list_docs(conn, query).docs}
    finally:
        conn.close()
    assert got == ({2} if "split" in text else {1})


# -- the evaluation budget ---------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "s.replace('', s.replace('', s)).size() > 0",
        "l.transformList(i, v, s).join().size() > 0",
        "l.transformList(i, v, s).join(s).size() > 0",
        "'%s%s'.format([l.transformList(i, v, s), s]).size() > 0",
        "strings.quote(s.replace('', s)).size() > 0",
        "l.map(x, s).join().split('').size() > 0",
    ],
)
def test_a_huge_build_runs_out_of_budget_before_building(text: str) -> None:
    fn = compile_node(parse(text), CompileEnv(eval_budget=100_000))
    with pytest.raises(CelEvalError, match="evaluation budget exceeded"):
        fn({"s": "x" * 20_000, "l": list(range(5_000))})


def test_small_builds_stay_within_the_budget() -> None:
    fn = compile_node(parse("l.transformList(i, v, s).join('-').split('-').size() == 3"), CompileEnv())
    assert fn({"s": "ab", "l": [1, 2, 3]}) is True


# -- a rule using extensions, over REST and realtime ---------------------------------------
RULES = """\
version: 1
collections:
  pages:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      owner: { type: string }
      title: { type: string }
      kind:  { type: string }
    rules:
      create: "auth != null && doc.owner.split('/')[1] == auth.id"
      read: >-
        doc.title.lowerAscii() != 'hidden' &&
        (doc.kind.upperAscii() == 'PUBLIC' ||
         (auth != null && doc.owner.split('/').exists(i, p, i == 1 && p == auth.id)))
"""


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(RULES, encoding="utf-8")
    return create_app(settings_for(root))


async def _write(client: Any, token: str, body: dict[str, Any]) -> Any:
    resp = await client.post(
        "/api/collections/pages", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _titles(client: Any, token: str | None) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.get("/api/collections/pages?sort=title", headers=headers)
    assert resp.status == 200, await resp.text()
    return [d["title"] for d in (await resp.json())["docs"]]


async def test_a_rule_with_extensions_over_rest_and_realtime(client: Any) -> None:
    ada, a_token = await register(client, "ada@example.com")
    _bob, b_token = await register(client, "bob@example.com")
    live = await LiveClient.connect(client, f"/api/realtime?token={b_token}")
    await live.subscribe({"collection": "pages"})

    public = await _write(client, a_token, {"owner": f"team/{ada}", "title": "Hello", "kind": "Public"})
    assert [m["payload"]["changes"] for m in await live.sync()] == [{"inserts": [public]}]
    private = await _write(client, a_token, {"owner": f"team/{ada}", "title": "Mine", "kind": "private"})
    await _write(client, a_token, {"owner": f"team/{ada}", "title": "HIDDEN", "kind": "public"})
    assert await live.sync() == []

    assert await _titles(client, a_token) == ["Hello", "Mine"]
    assert await _titles(client, b_token) == ["Hello"]
    assert await _titles(client, None) == ["Hello"]
    path = f"/api/collections/pages/{private['id']}"
    assert (await client.get(path, headers={"Authorization": f"Bearer {a_token}"})).status == 200
    assert (await client.get(path, headers={"Authorization": f"Bearer {b_token}"})).status == 404
    bad = await client.post(
        "/api/collections/pages",
        json={"owner": f"team/{ada}", "title": "x", "kind": "public"},
        headers={"Authorization": f"Bearer {b_token}"},
    )
    assert bad.status == 403


@pytest.fixture
async def client(app: web.Application, aiohttp_client: Any) -> Any:
    return await aiohttp_client(app)


# -- closures made per call site ------------------------------------------------------------
ODD_TEXT = st.text(alphabet="aAzZ bB\t\n\x0b\x0c\r\x1c\x1f\x85\xa0\u2000\u3000ÆæİK\u212a%-/", max_size=8)


def _lower_model(s: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def _upper_model(s: str) -> str:
    return "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in s)


# Go's unicode.IsSpace, which cel-go's trim strips (\x1c-\x1f are not spaces in Go).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


@given(s=ODD_TEXT, t=st.sampled_from(["", "a", "A", " ", "/", "æ", "%"]))
def test_call_site_closures_equal_the_functions(s: str, t: str) -> None:
    env = CompileEnv()

    def run(text: str) -> Any:
        try:
            return compile_node(parse(text), env)({"s": s, "t": t})
        except CelEvalError as e:
            return ("error", e.message)

    assert run("s.lowerAscii()") == _lower_model(s)
    assert run("s.upperAscii()") == _upper_model(s)
    assert run("s.trim()") == s.strip(_GO_SPACE)
    assert run("s.reverse()") == s[::-1]
    # A constant argument takes the call site's closure, a variable one the function.
    assert run(f"s.indexOf({t!r})") == run("s.indexOf(t)") == s.find(t)
    if t:
        assert run(f"s.split({t!r})") == run("s.split(t)") == s.split(t)
    assert run(f"{t!r}.format([s])") == run("t.format([s])")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("math.greatest(1, 1.0)", 1),
        ("math.greatest(1.0, 1)", 1.0),
        ("math.least(2u, 3)", UInt(2)),
        ("math.greatest(-3, 2)", 2),
        ("math.least(-3, 2)", -3),
        ("type(math.greatest(1, 1.0)) == int", True),
        ("type(math.greatest(1.0, 1)) == double", True),
        ("'%d and %s'.format([1, 'x'])", "1 and x"),
        ("'%%%.2f'.format([1.5])", "%1.50"),
        ("optional.none().orValue(2)", 2),
        ("{'a': 1}.?a.orValue(2)", 1),
        ("{'a': 1}.?b.orValue(2)", 2),
        ("2u < 3", True),
        ("2.5 >= 3", False),
        ("3u == 3", True),
        ("3.0 != 3", False),
        ("true == 1", False),
    ],
)
def test_call_site_closures_keep_cel_semantics(text: str, expected: Any) -> None:
    got = compile_node(parse(text), CompileEnv())({})
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("math.greatest(1, 'a')", "no such overload"),
        ("'%d %d'.format([1])", "index 1 out of range"),
        ("'%.f'.format([1])", "missing precision"),
        ("'%'.format([1])", "unexpected end"),
        ("'%q'.format([1])", "unrecognized formatting clause"),
        ("'a'.orValue(1)", "no such overload"),
        ("'a' < 1", "no such overload"),
        ("(1).lowerAscii()", "no such overload"),
        ("(1).split('/')", "no such overload"),
    ],
)
def test_call_site_closures_keep_cel_errors(text: str, message: str) -> None:
    with pytest.raises(CelEvalError, match=message):
        compile_node(parse(text), CompileEnv())({})


@pytest.mark.parametrize(
    "text",
    [
        "l.all(x, s.lowerAscii().size() > 0)",
        "l.all(x, s.upperAscii().size() > 0)",
        "l.all(x, s.trim().size() > 0)",
        "l.all(x, s.reverse().size() > 0)",
        "l.all(x, s.indexOf('y') < 0)",
        "l.all(x, s.split('/').size() > 0)",
        "l.all(x, '%s'.format([s]).size() > 0)",
        "l.all(i, v, s.lowerAscii().size() > 0)",
    ],
)
def test_call_site_closures_charge_long_values(text: str) -> None:
    fn = compile_node(parse(text), CompileEnv(eval_budget=100_000))
    with pytest.raises(CelEvalError, match="evaluation budget exceeded"):
        fn({"s": "x" * 100_000, "l": list(range(1_000))})
    assert fn({"s": "x" * 100, "l": list(range(1_000))}) is True
