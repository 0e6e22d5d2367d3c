"""Differential test: generated expressions and documents, three evaluators that must agree.

Hypothesis builds an expression over a small grammar together with a reference
evaluator written here from the CEL specification (tagged values, heterogeneous
equality, errors absorbed by && and ||), and documents with null fields, wrong types in
json, unicode and 64-bit edge integers. The closure evaluator must give the reference's
value for every document, and the SQL form, run on a real SQLite table whose rows were
stored through the database codec, must keep exactly the documents whose value is true.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from alyx_server.db import ListQuery, insert_doc, list_docs, open_connection
from alyx_server.rules.compile_sql import NotSQL, SqlEnv, compile_bool
from alyx_server.rules.load import compile_where
from alyx_server.rules.values import CelEvalError
from alyx_server.schema.ddl import collection_sql
from alyx_server.schema.loader import parse_schema

SCHEMA = parse_schema(
    """
version: 1
collections:
  t:
    fields:
      id: { type: int, primary: true }
      s:  { type: string, nullable: true }
      n:  { type: int, nullable: true }
      f:  { type: float, nullable: true }
      b:  { type: bool, nullable: true }
      ts: { type: timestamp, nullable: true }
      j:  { type: json, nullable: true }
"""
)
COLL = SCHEMA.get("t")
assert COLL is not None
ERR = "<error>"
AUTH = {
    "id": "u1",
    "email": "a@example.com",
    "role": "user",
    "verified": True,
    "metadata": {},
    "app_metadata": {},
}

# -- reference semantics: values tagged with their CEL kind -------------------------------
Tagged = tuple[str, Any]


def kind_of(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    if isinstance(v, datetime):
        return "timestamp"
    if isinstance(v, list):
        return "list"
    return "map"


def ref_eq(a: Any, b: Any) -> bool:
    ka, kb = kind_of(a), kind_of(b)
    if ka in ("int", "double") and kb in ("int", "double"):
        return float(a) == float(b) if "double" in (ka, kb) else bool(a == b)
    if ka != kb:
        return False
    if ka == "list":
        return len(a) == len(b) and all(ref_eq(x, y) for x, y in zip(a, b, strict=True))
    if ka == "map":
        return a.keys() == b.keys() and all(ref_eq(a[k], b[k]) for k in a)
    return bool(a == b)


def ref_order(op: str, a: Any, b: Any) -> Any:
    ka, kb = kind_of(a), kind_of(b)
    nums = ("int", "double")
    if not ((ka in nums and kb in nums) or (ka == kb and ka in ("string", "bool", "timestamp"))):
        return ERR
    if "double" in (ka, kb):
        a, b = float(a), float(b)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


Ref = Callable[[dict[str, Any]], Any]  # doc (CEL values) -> value or ERR


def doc_cel(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    if out.get("ts") is not None:
        out["ts"] = datetime.fromisoformat(out["ts"])
    return out


# -- expression generator -----------------------------------------------------------------
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=4)
SMALL_TEXT = st.sampled_from(["", "a", "ab", "é", "Ab", "ü日", "1", "true"])
INTS = st.sampled_from([0, 1, -1, 2, 10, 2**53 + 1, 2**63 - 1, -(2**63)])
FLOATS = st.sampled_from([0.0, 1.0, -1.5, 2.5, 1e300, 9.223372036854776e18])
TIMES = st.sampled_from(["2026-01-01T00:00:00.000Z", "2026-01-31T12:00:00.000Z", "1999-12-31T23:59:59.999Z"])


def cel_string(s: str) -> str:
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}" for c in s) + '"'


@st.composite
def literal(draw: st.DrawFn) -> tuple[str, Ref]:
    kind = draw(st.sampled_from(["s", "i", "f", "b", "null", "ts"]))
    if kind == "s":
        v: Any = draw(SMALL_TEXT)
        return cel_string(v), lambda d: v
    if kind == "i":
        v = draw(INTS)
        return (str(v) if v != -(2**63) else "-9223372036854775808"), lambda d: v
    if kind == "f":
        v = draw(FLOATS)
        return repr(v), lambda d: v
    if kind == "b":
        v = draw(st.booleans())
        return ("true" if v else "false"), lambda d: v
    if kind == "null":
        return "null", lambda d: None
    t = draw(TIMES)
    return f'timestamp("{t}")', lambda d: datetime.fromisoformat(t)


def _path(keys: list[Any]) -> Ref:
    def ref(d: dict[str, Any]) -> Any:
        v = d["j"]
        for k in keys:
            if isinstance(k, str):
                if not isinstance(v, dict) or k not in v:
                    return ERR
                v = v[k]
            else:
                if not isinstance(v, list) or not 0 <= k < len(v):
                    return ERR
                v = v[k]
        return v

    return ref


@st.composite
def atom(draw: st.DrawFn) -> tuple[str, Ref]:
    choice = draw(st.sampled_from(["lit", "s", "n", "f", "b", "ts", "j", "ja", "jab", "j0", "auth"]))
    if choice == "lit":
        return draw(literal())
    if choice in ("s", "n", "f", "b", "ts", "j"):
        return f"doc.{choice}", lambda d: d[choice]
    if choice == "auth":
        return "auth.id", lambda d: "u1"
    keys: list[Any] = {"ja": ["a"], "jab": ["a", "b"], "j0": [0]}[choice]
    text = "doc.j" + "".join(f".{k}" if isinstance(k, str) else f"[{k}]" for k in keys)
    return text, _path(keys)


def _lift(f: Callable[..., Any], *refs: Ref) -> Ref:
    def ref(d: dict[str, Any]) -> Any:
        vals = [r(d) for r in refs]
        if any(v is ERR for v in vals):
            return ERR
        return f(*vals)

    return ref


def _string_fn(name: str, s: Any, x: Any) -> Any:
    if not isinstance(s, str) or not isinstance(x, str):
        return ERR
    return {"startsWith": s.startswith, "endsWith": s.endswith, "contains": s.__contains__}[name](x)


def _size(v: Any) -> Any:
    return len(v) if isinstance(v, str | list | dict) else ERR


def _in_list(x: Any, items: list[Any]) -> bool:
    return any(ref_eq(x, i) for i in items)


def _in_json(x: Any, c: Any) -> Any:
    if isinstance(c, list):
        return _in_list(x, c)
    if isinstance(c, dict):
        return isinstance(x, str) and x in c
    return ERR


@st.composite
def comparison(draw: st.DrawFn) -> tuple[str, Ref]:
    form = draw(st.sampled_from(["cmp", "cmp", "cmp", "str", "size", "in", "json_in", "has", "bool"]))
    (ta, ra), (tb, rb) = draw(atom()), draw(atom())
    if form == "cmp":
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        if op in ("==", "!="):
            ne = op == "!="
            return f"{ta} {op} {tb}", _lift(lambda a, b: ref_eq(a, b) != ne, ra, rb)
        return f"{ta} {op} {tb}", _lift(lambda a, b: ref_order(op, a, b), ra, rb)
    if form == "str":
        name = draw(st.sampled_from(["startsWith", "endsWith", "contains"]))
        x = draw(SMALL_TEXT)
        return f"({ta}).{name}({cel_string(x)})", _lift(lambda s: _string_fn(name, s, x), ra)
    if form == "size":
        k = draw(st.integers(0, 3))
        return f"size({ta}) >= {k}", _lift(lambda v: (lambda n: ERR if n is ERR else n >= k)(_size(v)), ra)
    if form == "in":
        items = draw(st.lists(literal(), max_size=3))
        text = f"{ta} in [{', '.join(t for t, _ in items)}]"
        return text, _lift(lambda a: _in_list(a, [r({}) for _t, r in items]), ra)
    if form == "json_in":
        lt, lr = draw(literal())
        return f"{lt} in doc.j", _lift(lambda c: _in_json(lr({}), c), lambda d: d["j"])
    if form == "has":
        return "has(doc.j.a)", _lift(lambda j: ("a" in j) if isinstance(j, dict) else ERR, lambda d: d["j"])
    return ta, ra


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is True and b is True:
        return True
    return ERR


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    if a is False and b is False:
        return False
    return ERR


def _not(a: Any) -> Any:
    return (not a) if isinstance(a, bool) else ERR


def _cond(c: Any, a: Any, b: Any) -> Any:
    if not isinstance(c, bool):
        return ERR
    return a if c else b


def expressions() -> st.SearchStrategy[tuple[str, Ref]]:
    def extend(children: st.SearchStrategy[tuple[str, Ref]]) -> st.SearchStrategy[tuple[str, Ref]]:
        def combine(kind: str, a: tuple[str, Ref], b: tuple[str, Ref], c: tuple[str, Ref]) -> tuple[str, Ref]:
            (ta, ra), (tb, rb), (tc, rc) = a, b, c
            if kind == "&&":
                return f"({ta} && {tb})", lambda d: _and(ra(d), rb(d))
            if kind == "||":
                return f"({ta} || {tb})", lambda d: _or(ra(d), rb(d))
            if kind == "!":
                return f"!({ta})", lambda d: _not(ra(d))
            return f"({ta} ? {tb} : {tc})", lambda d: _cond(ra(d), rb(d), rc(d))

        return st.builds(combine, st.sampled_from(["&&", "||", "!", "?:"]), children, children, children)

    return st.recursive(comparison(), extend, max_leaves=5)


JSON = st.recursive(
    st.none() | st.booleans() | INTS | st.sampled_from([0.5, 1.0, -2.0]) | SMALL_TEXT,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def docs(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 6))
    out = []
    for i in range(n):
        out.append(
            {
                "id": i + 1,
                "s": draw(st.none() | TEXT | SMALL_TEXT),
                "n": draw(st.none() | INTS),
                "f": draw(st.none() | FLOATS),
                "b": draw(st.none() | st.booleans()),
                "ts": draw(st.none() | TIMES),
                "j": draw(JSON),
            }
        )
    return out


def _db(rows: list[dict[str, Any]]) -> sqlite3.Connection:
    conn = open_connection(":memory:")
    for stmt in collection_sql(COLL):
        conn.execute(stmt)
    conn.execute(
        "CREATE TABLE _alyx_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL,"
        " operation TEXT NOT NULL, doc_id, changed_fields TEXT, ts TEXT NOT NULL)"
    )
    stored = [insert_doc(conn, COLL, r) for r in rows]
    assert len(stored) == len(rows)
    return conn


@settings(deadline=None)
@given(expr=expressions(), rows=docs())
def test_sql_closures_and_reference_agree(expr: tuple[str, Ref], rows: list[dict[str, Any]]) -> None:
    text, ref = expr
    rule = compile_where(COLL, text)
    conn = _db(rows)
    try:
        stored = {d["id"]: d for d in list_docs(conn, ListQuery(COLL, limit=1000)).docs}
        expected_ids = set()
        for doc_id, doc in stored.items():
            want = ref(doc_cel(doc))
            act = {"doc": doc, "auth": AUTH, "request": {}}
            try:
                got = rule.evaluate(act)
            except CelEvalError:
                got = ERR
            assert _same(got, want), f"{text} on {doc}: closures {got!r}, reference {want!r}"
            if want is True:
                expected_ids.add(doc_id)
        predicate = rule.to_predicate(AUTH, None)
        admitted = {
            d["id"] for d in list_docs(conn, ListQuery(COLL, predicates=[predicate], limit=1000)).docs
        }
        assert admitted == expected_ids, f"{text}: SQL {predicate.sql} {predicate.params}"
        _check_tristate(conn, rule, text, stored, ref)
    finally:
        conn.close()


def _check_tristate(conn: sqlite3.Connection, rule: Any, text: str, stored: dict[int, Any], ref: Ref) -> None:
    """Where the whole expression is SQL, each row's 1/0/NULL is the reference's true/false/error."""
    try:
        sql = compile_bool(rule.node, SqlEnv(rule._fields, rule._constant({"auth": AUTH, "request": {}})))
    except NotSQL:
        return
    for doc_id, value in conn.execute(f"SELECT id, {sql.sql} FROM t", sql.params):
        want = ref(doc_cel(stored[doc_id]))
        got = True if value == 1 else False if value == 0 else ERR
        want_tri = want if isinstance(want, bool) else ERR
        assert got == want_tri, f"{text} on {stored[doc_id]}: SQL {got!r}, reference {want!r} ({sql.sql})"


def _same(a: Any, b: Any) -> bool:
    if a is ERR or b is ERR:
        return a is b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b.astimezone(UTC)
    return kind_of(a) == kind_of(b) and ref_eq(a, b)
