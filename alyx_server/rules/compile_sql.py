"""CEL syntax trees to parameterised SQLite expressions with CEL's semantics.

Encoding. A boolean CEL result is an SQL value in {1, 0, NULL}: true, false, error.
SQLite's AND, OR and NOT are Kleene's three-valued logic, which is exactly CEL's
commutative error absorption (`false && error` is 0, `true || error` is 1, `!error` is
NULL), so `&&`, `||` and `!` map to them directly; `c ? a : b` is a CASE that yields NULL
when `c` is an error. A WHERE clause keeps only rows whose value is 1, so an error denies.

Other values carry a static kind (string, int, double, bool, timestamp, bytes, null, json)
and what an SQL NULL means for them: CEL `null` (a nullable column), an error (`size()`
of a null), or nothing. Equality is heterogeneous: values of different kinds are unequal
(`0`), `==` on nullable columns uses `IS` so that null == null; ordering across kinds is
an error (`NULL`). Paths into json fields dispatch on `json_type()` so that a JSON `true`
never equals the integer 1, and a missing key is an error, as in CEL. Timestamps are the
stored ISO text (fixed width, so text order is time order); constants with sub-millisecond
digits, NaN, lists compared as values, arithmetic on columns and `matches` are not SQL:
`NotSQL` is raised and the caller evaluates that part per row instead. So is a part whose
syntax tree is more than `MAX_SQL_DEPTH` levels deep: SQLite's parser has a fixed stack
(about 48 nested `NOT (`) and refuses deeper SQL with "parser stack overflow".

`auth`, `request` and other variables are constants here: subtrees that do not read
`doc` are evaluated in Python first (`SqlEnv.constant`) and bound as parameters.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alyx_server.rules.lookups import has_lookup, is_lookup
from alyx_server.rules.syntax import (
    And,
    Call,
    Comprehension,
    Cond,
    Ident,
    Index,
    ListLit,
    Lit,
    MapLit,
    Node,
    Not,
    Op,
    Or,
    Select,
)
from alyx_server.rules.values import INT64_MAX, CelEvalError, UInt
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import FieldType
from alyx_server.tools.timestamps import format_timestamp

__all__ = [
    "MAX_SQL_DEPTH",
    "NotSQL",
    "SqlEnv",
    "SqlExpr",
    "children",
    "compile_bool",
    "free_names",
    "sql_for_constant_activation",
    "uses_doc",
]


class NotSQL(Exception):
    """This expression (or part) has no faithful SQL form; evaluate it per row."""


@dataclass(frozen=True, slots=True)
class SqlExpr:
    """An SQL fragment with its parameters.

    kind: bool string int double timestamp bytes null json error other
    null: what SQL NULL means - "null" (CEL null), "error", or "never"
    json: (column sql, path) for kind json
    """

    sql: str
    params: tuple[Any, ...] = ()
    kind: str = "bool"
    null: str = "error"
    json: tuple[str, str] | None = None
    const: bool = False


@dataclass(frozen=True, slots=True)
class SqlEnv:
    """The collection's field types and an evaluator for subtrees that do not read `doc`."""

    doc_fields: Mapping[str, FieldType] | None
    constant: Callable[[Node], Any]
    # False keeps operators on constants in SQL (the conformance run exercises SQLite with them).
    fold: bool = True
    # Lookups (rules/lookups.py): the schema's collections by name, and the listed table's
    # name, which qualifies its columns inside the lookups' subqueries.
    tables: Mapping[str, Any] | None = None
    outer: str | None = None


_COLUMN_KIND = {
    FieldType.UUID: "string", FieldType.STRING: "string", FieldType.TEXT: "string",
    FieldType.INT: "int", FieldType.FLOAT: "double", FieldType.BOOL: "bool",
    FieldType.TIMESTAMP: "timestamp", FieldType.JSON: "json", FieldType.BLOB: "bytes",
    FieldType.FILE: "json",
}  # fmt: skip
_NUMERIC = frozenset({"int", "double"})
_ORDERED = frozenset({"int", "double", "string", "bytes", "bool", "timestamp"})
_JSON_TYPES = {"string": "('text')", "int": "('integer','real')", "double": "('integer','real')",
               "bool": "('true','false')", "null": "('null')"}  # fmt: skip
ERROR = SqlExpr("NULL", (), "error", "error", const=True)


_NO_SCOPE: frozenset[str] = frozenset()
_USES_DOC_MAX = 4096
# id(node) -> (node, answer). The entry holds the node, so its id cannot be reused by
# another object while the entry lives; cleared when full (where= trees come and go).
_uses_doc_memo: dict[int, tuple[Node, bool]] = {}


def uses_doc(node: Node, scope: frozenset[str] = _NO_SCOPE) -> bool:
    """Whether the expression reads the `doc` variable (outside a macro that shadows it),
    or the database (a lookup: `get`, `exists`), so that it is never folded to a constant.

    Rules are turned into SQL on every request, asking this of each subtree: answers
    for the outermost scope are remembered per node (a rule's nodes live as long as it).
    """
    if scope:
        return "doc" in free_names(node, scope) or has_lookup(node)
    hit = _uses_doc_memo.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    answer = "doc" in free_names(node) or has_lookup(node)
    if len(_uses_doc_memo) >= _USES_DOC_MAX:
        _uses_doc_memo.clear()
    _uses_doc_memo[id(node)] = (node, answer)
    return answer


def free_names(node: Node, scope: frozenset[str] = _NO_SCOPE) -> frozenset[str]:
    """The variables an expression reads (`auth`, `request`, `doc`), outside macro scopes."""
    if isinstance(node, Ident):
        return frozenset() if node.name in scope and not node.root else frozenset((node.name,))
    if isinstance(node, Comprehension):
        inner = scope | node.variables
        names = free_names(node.range, scope) | free_names(node.body, inner)
        if node.filter is not None:
            names |= free_names(node.filter, inner)
        return names
    return frozenset().union(*(free_names(child, scope) for child in _children(node)))


def children(node: Node) -> list[Node]:
    """The direct sub-expressions of a node (a macro's range, body and filter too)."""
    if isinstance(node, Comprehension):
        return [node.range, node.body] + ([node.filter] if node.filter is not None else [])
    return _children(node)


def _children(node: Node) -> list[Node]:
    if isinstance(node, Select):
        return [node.operand]
    if isinstance(node, Index):
        return [node.operand, node.index]
    if isinstance(node, Call):
        return ([node.target] if node.target else []) + list(node.args)
    if isinstance(node, ListLit):
        return list(node.items)
    if isinstance(node, MapLit):
        return [x for kv in node.entries for x in kv]
    if isinstance(node, Cond):
        return [node.cond, node.then, node.orelse]
    if isinstance(node, And | Or):
        return [node.left, node.right]
    if isinstance(node, Not):
        return [node.operand]
    if isinstance(node, Op):
        return [node.left] + ([node.right] if node.right is not None else [])
    return []


def compile_bool(node: Node, env: SqlEnv) -> SqlExpr:
    """The tri-state SQL of a boolean expression (1 true, 0 false, NULL error or non-bool)."""
    return _Compiler(env).boolean(node)


# -- constants ---------------------------------------------------------------------------
def _constant(v: Any) -> SqlExpr:
    t = type(v)
    if v is None:
        return SqlExpr("NULL", (), "null", "null", const=True)
    if t is bool:
        return SqlExpr("1" if v else "0", (), "bool", "never", const=True)
    if t is int or t is UInt:
        if v > INT64_MAX:
            raise NotSQL("uint beyond the 64-bit signed range")
        return SqlExpr("?", (int(v),), "int", "never", const=True)
    if t is float:
        if math.isnan(v):
            raise NotSQL("NaN")
        return SqlExpr("?", (v,), "double", "never", const=True)
    if t is str:
        return SqlExpr("?", (v,), "string", "never", const=True)
    if t is bytes:
        return SqlExpr("?", (v,), "bytes", "never", const=True)
    if isinstance(v, datetime):
        if v.microsecond % 1000:
            raise NotSQL("timestamp with sub-millisecond digits")
        return SqlExpr("?", (format_timestamp(v),), "timestamp", "never", const=True)
    raise NotSQL(f"constant of type {t.__name__}")


def _logical(x: SqlExpr) -> SqlExpr:
    """x in a boolean position: 1/0 for booleans, NULL (error) for anything else."""
    if x.kind == "bool":
        return x
    if x.kind == "json":
        jt = _json_type(x)
        return SqlExpr(
            f"(CASE {jt.sql} WHEN 'true' THEN 1 WHEN 'false' THEN 0 ELSE NULL END)", jt.params, "bool"
        )
    return ERROR


def _json_type(x: SqlExpr) -> SqlExpr:
    assert x.json is not None
    col, path = x.json
    if path == "$":
        return SqlExpr(f"(CASE WHEN {col} IS NULL THEN 'null' ELSE json_type({col}) END)", x.params)
    return SqlExpr(f"json_type({col}, ?)", (*x.params, path))


def _json_value(x: SqlExpr) -> SqlExpr:
    assert x.json is not None
    col, path = x.json
    return SqlExpr(f"json_extract({col}, ?)", (*x.params, path))


MAX_SQL_DEPTH = 10


class _Compiler:
    def __init__(self, env: SqlEnv) -> None:
        self.env = env
        self._depth = 0
        # Rows a `get(...)` reads, pending until the enclosing boolean wraps them in one
        # subquery: (table, alias, primary key, id expression).
        self._sources: list[tuple[str, str, str, SqlExpr]] | None = None
        self._aliases = 0

    def boolean(self, node: Node) -> SqlExpr:
        """`node` in a boolean position; the `get` rows it reads joined in one subquery,
        which yields NULL (an error) when one of them does not exist."""
        saved, self._sources = self._sources, []
        try:
            x = _logical(self.value(node))
            sources = self._sources
        finally:
            self._sources = saved
        if not sources:
            return x
        tables = ", ".join(f"{quote(t)} AS {a}" for t, a, _, _ in sources)
        where = " AND ".join(f"{a}.{quote(pk)} = {e.sql}" for _, a, pk, e in sources)
        params = (*x.params, *(p for *_, e in sources for p in e.params))
        return SqlExpr(f"(SELECT {x.sql} FROM {tables} WHERE {where})", params)

    def _alias(self) -> str:
        self._aliases += 1
        return f"_l{self._aliases}"

    def _column(self, name: str) -> str:
        outer = self.env.outer
        return f"{quote(outer)}.{quote(name)}" if outer is not None else quote(name)

    def value(self, node: Node) -> SqlExpr:
        if isinstance(node, Lit):
            return _constant(node.value)
        if not uses_doc(node) and (self.env.fold or not isinstance(node, And | Or | Not | Cond | Op | Call)):
            return self._fold(node)
        method = getattr(self, "_" + type(node).__name__.lower(), None)
        if method is None:
            raise NotSQL(type(node).__name__)
        self._depth += 1
        try:
            if self._depth > MAX_SQL_DEPTH:
                raise NotSQL(f"nested more than {MAX_SQL_DEPTH} levels (SQLite's parser stack)")
            out: SqlExpr = method(node)
        finally:
            self._depth -= 1
        return out

    def _fold(self, node: Node) -> SqlExpr:
        try:
            value = self.env.constant(node)
        except CelEvalError:
            return ERROR
        if isinstance(value, dict | list | tuple) and self.env.fold:
            return SqlExpr("NULL", (), "other", "never", const=True)
        return _constant(value)

    # -- doc paths -----------------------------------------------------------------------
    def _ident(self, node: Ident) -> SqlExpr:
        raise NotSQL("the whole doc as a value")

    def _select(self, node: Select) -> SqlExpr:
        op = node.operand
        fields = self.env.doc_fields
        if isinstance(op, Ident) and op.name == "doc" and fields is not None:
            if node.test_only:
                return SqlExpr("1", (), "bool", "never", const=True)
            kind = _COLUMN_KIND[fields[node.field]]
            col = self._column(node.field)
            if kind == "json":
                return SqlExpr(col, (), "json", "error", json=(col, "$"))
            return SqlExpr(col, (), kind, "null")
        if isinstance(op, Call) and op.function == "get" and is_lookup(op) and self.env.tables is not None:
            return self._get_field(op, node)
        base = self.value(op)
        if base.kind != "json" or base.json is None:
            raise NotSQL("selection from a non-json value")
        col, path = base.json
        child = _child_path(path, node.field)
        if node.test_only:
            parent = _json_type(base)
            sql = f"(CASE {parent.sql} WHEN 'object' THEN json_type({col}, ?) IS NOT NULL ELSE NULL END)"
            return SqlExpr(sql, (*parent.params, *base.params, child), "bool")
        return SqlExpr(col, base.params, "json", "error", json=(col, child))

    def _get_field(self, call: Call, node: Select) -> SqlExpr:
        """`get(c, id).f`: the column of a row joined in the enclosing boolean's subquery."""
        assert self.env.tables is not None
        if node.test_only or self._sources is None:
            raise NotSQL("get() outside a comparison")
        target = self.env.tables[call.args[0].value]  # type: ignore[attr-defined]
        ident = self.value(call.args[1])
        if ident.kind == "error":
            return ERROR
        if ident.kind not in ("string", "int", "double", "null"):
            raise NotSQL("get() of an id that is not a scalar")
        alias = self._alias()
        pk = target.primary.name
        self._sources.append((target.name, alias, pk, ident))
        field = target.field(node.field)
        kind = _COLUMN_KIND[field.type]
        col = f"{alias}.{quote(node.field)}"
        if kind == "json":
            return SqlExpr(col, (), "json", "error", json=(col, "$"))
        return SqlExpr(col, (), kind, "null" if field.nullable or field.primary else "never")

    def _exists(self, node: Call) -> SqlExpr:
        """`exists(c, {f: v, ...})`: EXISTS over c, correlated with the listed doc."""
        assert self.env.tables is not None
        target = self.env.tables[node.args[0].value]  # type: ignore[attr-defined]
        spec = node.args[1]
        if not isinstance(spec, MapLit):
            raise NotSQL("exists() without a map literal")
        alias = self._alias()
        saved, self._sources = self._sources, []
        try:
            conds: list[SqlExpr] = []
            for key, value in spec.entries:
                field = target.field(key.value)  # type: ignore[attr-defined]
                v = self.value(value)
                if v.kind == "error":
                    return ERROR
                if v.kind not in ("string", "int", "double", "bool", "timestamp", "bytes", "null"):
                    raise NotSQL("exists() with a value that is not a scalar")
                null = "null" if field.nullable else "never"
                col = SqlExpr(f"{alias}.{quote(field.name)}", (), _COLUMN_KIND[field.type], null)
                conds.append(_equal(col, v))
            if self._sources:
                raise NotSQL("get() inside exists()")
        finally:
            self._sources = saved
        # Each condition is 1, 0 or NULL; WHERE keeps only the 1s.
        where = " AND ".join(c.sql for c in conds)
        sql = f"EXISTS (SELECT 1 FROM {quote(target.name)} AS {alias} WHERE {where})"
        params = tuple(p for c in conds for p in c.params)
        return SqlExpr(f"({sql})", params, "bool", "never")

    def _index(self, node: Index) -> SqlExpr:
        base = self.value(node.operand)
        if base.kind != "json" or base.json is None or uses_doc(node.index):
            raise NotSQL("index into a non-json value")
        try:
            key = self.env.constant(node.index)
        except CelEvalError:
            return ERROR
        col, path = base.json
        if type(key) is str:
            return SqlExpr(col, base.params, "json", "error", json=(col, _child_path(path, key)))
        if type(key) is int and key >= 0:
            return SqlExpr(col, base.params, "json", "error", json=(col, f"{path}[{key}]"))
        raise NotSQL("json index that is not a string or a non-negative int")

    # -- logic ---------------------------------------------------------------------------
    def _and(self, node: And) -> SqlExpr:
        return self._kleene(node.left, node.right, "AND")

    def _or(self, node: Or) -> SqlExpr:
        return self._kleene(node.left, node.right, "OR")

    def _kleene(self, left: Node, right: Node, op: str) -> SqlExpr:
        a, b = self.boolean(left), self.boolean(right)
        return SqlExpr(f"({a.sql} {op} {b.sql})", (*a.params, *b.params))

    def _not(self, node: Not) -> SqlExpr:
        a = self.boolean(node.operand)
        return SqlExpr(f"(NOT {a.sql})", a.params)

    def _cond(self, node: Cond) -> SqlExpr:
        c = self.boolean(node.cond)
        a, b = self.value(node.then), self.value(node.orelse)
        if a.kind != "bool" or b.kind != "bool":
            raise NotSQL("conditional that is not boolean")
        sql = f"(CASE {c.sql} WHEN 1 THEN {a.sql} WHEN 0 THEN {b.sql} ELSE NULL END)"
        return SqlExpr(sql, (*c.params, *a.params, *b.params))

    # -- operators -----------------------------------------------------------------------
    def _op(self, node: Op) -> SqlExpr:
        if node.right is None or node.op not in ("==", "!=", "<", "<=", ">", ">=", "in"):
            if uses_doc(node):
                raise NotSQL(f"operator {node.op} on a document value")
            return self._fold(node)
        if node.op == "in":
            return self._in(node.left, node.right)
        a, b = self.value(node.left), self.value(node.right)
        if node.op in ("==", "!="):
            eq = _equal(a, b)
            return eq if node.op == "==" else SqlExpr(f"(NOT {eq.sql})", eq.params)
        return _order(node.op, a, b)

    def _in(self, left: Node, right: Node) -> SqlExpr:
        x = self.value(left)
        if not uses_doc(right):
            try:
                container = self.env.constant(right)
            except CelEvalError:
                return ERROR
            items = list(container.keys()) if isinstance(container, dict) else container
            if not isinstance(items, list | tuple) or (not items and x.null == "error" and not x.const):
                raise NotSQL("in over a value that is not a constant list or map")
            parts = [_equal(x, _constant(i)) for i in items]
            if not parts:
                return SqlExpr("0", (), "bool", "never", const=True)
            return SqlExpr(
                "(" + " OR ".join(p.sql for p in parts) + ")", tuple(v for p in parts for v in p.params)
            )
        c = self.value(right)
        if c.kind != "json" or c.json is None or not x.const or x.kind not in _JSON_TYPES:
            raise NotSQL("in over a non-json document value")
        return _json_in(x, c)

    def _call(self, node: Call) -> SqlExpr:
        name, args = node.function, node.args
        if not uses_doc(node) and (
            self.env.fold or name not in ("size", "startsWith", "endsWith", "contains", *_SQL_EXTENSIONS)
        ):
            return self._fold(node)
        if name == "exists" and is_lookup(node) and self.env.tables is not None:
            return self._exists(node)
        if name == "size":
            subject = node.target if node.target is not None else (args[0] if len(args) == 1 else None)
            if subject is None or (node.target is not None and args):
                raise NotSQL("size with several arguments")
            return _size(self.value(subject))
        if name in ("startsWith", "endsWith", "contains") and node.target is not None and len(args) == 1:
            return _string_test(name, self.value(node.target), self.value(args[0]))
        if name in ("lowerAscii", "upperAscii") and node.target is not None and not args:
            return _ascii_case(name, self.value(node.target))
        if name == "indexOf" and node.target is not None and len(args) == 1:
            return _index_of(self.value(node.target), self.value(args[0]))
        raise NotSQL(f"function {name}")


# CEL extensions with an exact SQL form; the others (math.*, format, split, optionals,
# two-variable macros, cel.bind, ...) make their `&&` part a per-row check in Python.
_SQL_EXTENSIONS = ("lowerAscii", "upperAscii", "indexOf")


def _text(x: SqlExpr) -> SqlExpr | None:
    """x as an SQL text value when it is a string (a json string narrowed), else None."""
    if x.kind == "json":
        x = _as_scalar(x, "string") or x
    return x if x.kind == "string" else None


def _ascii_case(name: str, x: SqlExpr) -> SqlExpr:
    """`s.lowerAscii()` / `s.upperAscii()`: SQLite's built-in lower() and upper() change
    ASCII letters only, exactly the extension's semantics. A null receiver is an error."""
    s = _text(x)
    if s is None:
        return ERROR
    function = "lower" if name == "lowerAscii" else "upper"
    return SqlExpr(f"{function}({s.sql})", s.params, "string", "error")


def _index_of(x: SqlExpr, y: SqlExpr) -> SqlExpr:
    """`s.indexOf(t)`: instr() counts characters (code points) in text, from 1; an empty
    `t` is found at 0, as in CEL. A null on either side is an error."""
    s, t = _text(x), _text(y)
    if s is None or t is None:
        return ERROR
    return SqlExpr(f"(instr({s.sql}, {t.sql}) - 1)", (*s.params, *t.params), "int", "error")


def _child_path(path: str, key: str) -> str:
    if '"' in key or "\\" in key:
        raise NotSQL("json key with quotes or backslashes")
    return f'{path}."{key}"'


def _as_scalar(x: SqlExpr, kind: str) -> SqlExpr | None:
    """A json value narrowed to `kind`'s JSON types, or None if x is not json."""
    if x.kind != "json":
        return None
    jt, jv = _json_type(x), _json_value(x)
    types = _JSON_TYPES[kind]
    return SqlExpr(
        f"(CASE WHEN {jt.sql} IS NULL THEN NULL WHEN {jt.sql} IN {types} THEN {jv.sql} END)",
        (*jt.params, *jt.params, *jv.params),
        kind,
        "error",
    )


def _compatible(a: str, b: str) -> bool:
    return a == b or (a in _NUMERIC and b in _NUMERIC)


def _equal(a: SqlExpr, b: SqlExpr) -> SqlExpr:
    """Heterogeneous equality as tri-state SQL."""
    if a.kind == "error" or b.kind == "error":
        return ERROR
    if a.kind == "json" and b.kind == "json":
        raise NotSQL("json compared with json")
    if a.kind == "json" or b.kind == "json":
        j, c = (a, b) if a.kind == "json" else (b, a)
        return _json_equal(j, c)
    if a.kind == "null" or b.kind == "null":
        other = b if a.kind == "null" else a
        if other.kind == "null":
            return SqlExpr("1", (), "bool", "never", const=True)
        if other.null == "null":
            return SqlExpr(f"({other.sql} IS NULL)", other.params)
        if other.null == "error":
            return SqlExpr(f"(CASE WHEN {other.sql} IS NULL THEN NULL ELSE 0 END)", other.params)
        return SqlExpr("0", (), "bool", "never", const=True)
    if {a.null, b.null} == {"null", "error"}:
        raise NotSQL("nullable value compared with a value that may be an error")
    if not _compatible(a.kind, b.kind):
        if a.null == "error" or b.null == "error":
            e = a if a.null == "error" else b
            return SqlExpr(f"(CASE WHEN {e.sql} IS NULL THEN NULL ELSE 0 END)", e.params)
        if a.null == "null" and b.null == "null":
            return SqlExpr(f"({a.sql} IS NULL AND {b.sql} IS NULL)", (*a.params, *b.params))
        return SqlExpr("0", (), "bool", "never", const=True)
    op = "IS" if "null" in (a.null, b.null) else "="
    a, b = _lossy(a, b)
    return SqlExpr(f"({a.sql} {op} {b.sql})", (*a.params, *b.params))


def _lossy(a: SqlExpr, b: SqlExpr) -> tuple[SqlExpr, SqlExpr]:
    """An int meeting a double compares as a double (SQLite would compare exactly)."""
    if {a.kind, b.kind} != {"int", "double"}:
        return a, b
    i, d = (a, b) if a.kind == "int" else (b, a)
    if i.const:
        i = SqlExpr("?", (float(i.params[0]),), "double", i.null, const=True)
    elif not d.const or abs(d.params[0]) >= 2.0**53:
        i = SqlExpr(f"CAST({i.sql} AS REAL)", i.params, "double", i.null)
    return (i, d) if a.kind == "int" else (d, i)


def _json_equal(j: SqlExpr, c: SqlExpr) -> SqlExpr:
    if c.kind not in _JSON_TYPES or not c.const:
        raise NotSQL("json compared with a non-constant or a container")
    jt = _json_type(j)
    if c.kind == "null":
        return SqlExpr(f"(CASE WHEN {jt.sql} IS NULL THEN NULL ELSE {jt.sql} = 'null' END)", jt.params * 2)
    scalar = _as_scalar(j, c.kind)
    assert scalar is not None
    sql = (
        f"(CASE WHEN {jt.sql} IS NULL THEN NULL WHEN {jt.sql} IN {_JSON_TYPES[c.kind]}"
        f" THEN {scalar.sql} = {c.sql} ELSE 0 END)"
    )
    return SqlExpr(sql, (*jt.params, *jt.params, *scalar.params, *c.params))


def _order(op: str, a: SqlExpr, b: SqlExpr) -> SqlExpr:
    """`<` `<=` `>` `>=`: only within one orderable kind (numbers across int and double)."""
    if a.kind == "json" or b.kind == "json":
        j, c = (a, b) if a.kind == "json" else (b, a)
        if not c.const or c.kind not in _ORDERED or c.kind in ("timestamp", "bytes"):
            raise NotSQL("json ordered against a non-constant")
        narrowed = _as_scalar(j, c.kind)
        assert narrowed is not None
        # A JSON value of another kind cannot be ordered against c: CASE gives NULL, an error.
        a, b = (narrowed, c) if a.kind == "json" else (c, narrowed)
    if a.kind not in _ORDERED or b.kind not in _ORDERED or not _compatible(a.kind, b.kind):
        return ERROR
    a, b = _lossy(a, b)
    return SqlExpr(f"({a.sql} {op} {b.sql})", (*a.params, *b.params))


def _json_in(x: SqlExpr, c: SqlExpr) -> SqlExpr:
    assert c.json is not None
    col, path = c.json
    jt = _json_type(c)
    types = _JSON_TYPES[x.kind]
    if x.kind == "null":
        value_test, key_test = "e.type = 'null'", "0"
    else:
        value_test = f"e.type IN {types} AND e.atom = {x.sql}"
        key_test = f"e.key = {x.sql}" if x.kind == "string" else "0"
    vp = x.params if x.kind != "null" else ()
    kp = x.params if x.kind == "string" else ()
    sql = (
        f"(CASE {jt.sql} WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each({col}, ?) AS e WHERE {value_test})"
        f" WHEN 'object' THEN EXISTS (SELECT 1 FROM json_each({col}, ?) AS e WHERE {key_test}) ELSE NULL END)"
    )
    return SqlExpr(sql, (*jt.params, path, *vp, path, *kp))


def _size(x: SqlExpr) -> SqlExpr:
    if x.kind in ("string", "bytes"):
        return SqlExpr(f"length({x.sql})", x.params, "int", "error")
    if x.kind == "json" and x.json is not None:
        col, path = x.json
        jt = _json_type(x)
        sql = (
            f"(CASE {jt.sql} WHEN 'array' THEN json_array_length({col}, ?)"
            f" WHEN 'object' THEN (SELECT count(*) FROM json_each({col}, ?))"
            f" WHEN 'text' THEN length(json_extract({col}, ?)) ELSE NULL END)"
        )
        return SqlExpr(sql, (*jt.params, path, path, path), "int", "error")
    return ERROR


def _string_test(name: str, s: SqlExpr, arg: SqlExpr) -> SqlExpr:
    if s.kind == "json":
        narrowed = _as_scalar(s, "string")
        assert narrowed is not None
        s = narrowed
    if arg.kind == "json":
        narrowed = _as_scalar(arg, "string")
        assert narrowed is not None
        arg = narrowed
    if s.kind != "string" or arg.kind != "string":
        return ERROR
    p = (*s.params, *arg.params)
    if name == "contains":
        return SqlExpr(f"(instr({s.sql}, {arg.sql}) > 0)", p)
    if name == "startsWith":
        sql = f"(substr({s.sql}, 1, length({arg.sql})) = {arg.sql})"
        return SqlExpr(sql, (*s.params, *arg.params, *arg.params))
    sql = (
        f"(CASE WHEN {s.sql} IS NULL OR {arg.sql} IS NULL THEN NULL WHEN length({arg.sql}) = 0 THEN 1"
        f" ELSE substr({s.sql}, -length({arg.sql})) = {arg.sql} END)"
    )
    return SqlExpr(sql, (*s.params, *arg.params, *arg.params, *s.params, *arg.params, *arg.params))


def sql_for_constant_activation(
    node: Node, activation: Mapping[str, Any], conn: sqlite3.Connection
) -> bool | None:
    """Evaluate a doc-free expression in SQLite (`SELECT <sql>`), its variables bound as constants.

    Returns True, False, or None for an error; NotSQL when it is not a boolean SQL expression.
    """
    from alyx_server.rules.compile_py import CompileEnv, compile_node

    def constant(n: Node) -> Any:
        return compile_node(n, CompileEnv(strict_functions=False))(activation)

    root = _Compiler(SqlEnv(None, constant, fold=False)).value(node)
    if root.kind not in ("bool", "error"):
        raise NotSQL("not a boolean expression")
    expr = _logical(root)
    (value,) = conn.execute(f"SELECT {expr.sql}", expr.params).fetchone()
    return None if value is None else bool(value)
