"""Lookups in rules: `get(collection, id).field` and `exists(collection, {field: value})`.

    get('teams', doc.team_id).owner_id == auth.id
    exists('members', {'team_id': doc.team_id, 'user_id': auth.id})

A rule may read other collections of the schema, by primary key (`get`, always followed
by one `.field`) or by equality on fields (`exists`). Past a `references` field a
selection reads the referenced doc: `doc.team_id.owner_id` is rewritten at load to
`get('teams', doc.team_id).owner_id` (`expand_references`). Checked when the schema loads
(`check_lookups`), with the location of the offending call in the error:

    the collection      a collection of the schema, written as a string literal
    the fields          fields of that collection that are not `internal`
    get(...)            read one field at a time: `get(c, id).f`; never the whole doc
    exists(...)         a non-empty map literal with literal keys; at least one of them
                        an indexed field of that collection (primary, unique, `index`,
                        or the first field of a declared index), so no list query ever
                        scans the looked-up table once per document (a cross join)
    depth               lookups nested in the arguments of lookups at most
                        `rules.lookup_depth` deep (`set_lookup_depth`)

Semantics. A lookup runs with system privileges over the looked-up collection: its read
rule does not apply. Only the rule's boolean result leaves the server; no looked-up value
reaches a response or an error message (evaluation errors are logged without values).
`get` of an id that does not exist is an error (so the rule denies); `exists` is true when
at least one document has every listed field equal (CEL equality, `null` matching null).

Evaluation. For lists and realtime queries a lookup is SQL: `get` a scalar subquery on the
primary key, `exists` an `EXISTS (SELECT 1 ...)` correlated with the listed document
(compile_sql.py). For one document (get, update, delete, create, a realtime event) the
closure does point reads through the connection in `READER` (the write transaction's, or a
reader's), each charged `LOOKUP_COST` steps of the evaluation budget. A top-level `&&` part
of a rule with no SQL form (a lookup under `charAt`, `math.abs`, ...) is a list's per-row
check: its point reads go through the list's own connection (`db.query.CHECKING`, same
read transaction), charged the same way, so a list on the event loop that reads too much
moves to a reader thread like any other row check (`Database.read_small`).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from datetime import datetime
from typing import Any

from alyx_server.db.query import CHECKING
from alyx_server.rules import budget as cost
from alyx_server.rules.syntax import (
    Call,
    CelCompileError,
    Comprehension,
    Ident,
    Lit,
    MapLit,
    Node,
    Select,
)
from alyx_server.rules.values import CelEvalError
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import Collection, Field, FieldType
from alyx_server.tools.timestamps import format_timestamp

__all__ = [
    "DEFAULT_LOOKUP_DEPTH",
    "LOOKUP_COST",
    "LOOKUP_FUNCTIONS",
    "READER",
    "Reader",
    "check_lookups",
    "expand_references",
    "has_lookup",
    "indexed_fields",
    "is_lookup",
    "lookup_depth",
    "point_exists",
    "point_get",
    "reading",
    "set_lookup_depth",
]

LOOKUP_FUNCTIONS = frozenset({"get", "exists"})
DEFAULT_LOOKUP_DEPTH = 2
LOOKUP_COST = 1000
"""Budget steps one point read costs (rules.eval_budget 100,000: at most 100 per evaluation)."""

Reader = Callable[[Callable[[sqlite3.Connection], Any]], Any]
"""Runs a function of a connection and returns its result (a point read)."""

READER: ContextVar[Reader | None] = ContextVar("alyx_rule_reader", default=None)
_DEPTH = [DEFAULT_LOOKUP_DEPTH]


def set_lookup_depth(depth: int) -> None:
    """The server's `rules.lookup_depth`: how deep lookups may nest (checked at load), for
    the rules compiled without an explicit depth (the server sets it when it starts; the
    CLI passes the project's setting to `load_schema_rules` instead)."""
    _DEPTH[0] = depth


def lookup_depth() -> int:
    return _DEPTH[0]


class reading:
    """Lookups evaluated inside run through `reader` (a connection: its transaction).

    A class rather than a `contextlib.contextmanager` generator: every document read by
    id enters it once, and a generator-based context manager costs twice as much.
    """

    __slots__ = ("_reader", "_token")

    def __init__(self, reader: Reader | sqlite3.Connection) -> None:
        if isinstance(reader, sqlite3.Connection):
            conn = reader

            def run(fn: Callable[[sqlite3.Connection], Any]) -> Any:
                return fn(conn)

            reader = run
        self._reader: Reader = reader
        self._token: Token[Reader | None] | None = None

    def __enter__(self) -> None:
        self._token = READER.set(self._reader)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            READER.reset(self._token)
            self._token = None


def is_lookup(node: Node) -> bool:
    return isinstance(node, Call) and node.target is None and node.function in LOOKUP_FUNCTIONS


_memo: dict[int, tuple[Node, bool]] = {}


def has_lookup(node: Node) -> bool:
    """Whether the expression calls `get` or `exists` anywhere (remembered per node)."""
    hit = _memo.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    answer = is_lookup(node) or any(has_lookup(c) for c in _children(node))
    if len(_memo) >= 8192:
        _memo.clear()
    _memo[id(node)] = (node, answer)
    return answer


def _children(node: Node) -> list[Node]:
    from alyx_server.rules.compile_sql import children

    return children(node)


def indexed_fields(c: Collection) -> frozenset[str]:
    """Fields an equality lookup can find through an index."""
    names = {f.name for f in c.fields if f.primary or f.unique or f.index}
    names |= {i.fields[0] for i in c.indexes if i.fields}
    return frozenset(names)


# -- load-time checks --------------------------------------------------------------------
def check_lookups(node: Node, tables: Mapping[str, Collection], depth: int | None = None) -> frozenset[str]:
    """Refuse a bad lookup (CelCompileError at its place); the collections looked up.

    `depth` is the project's `rules.lookup_depth` (None: the one `set_lookup_depth` set)."""
    found: set[str] = set()
    _Check(tables, found, lookup_depth() if depth is None else depth).walk(node, 0, None)
    return frozenset(found)


class _Check:
    def __init__(self, tables: Mapping[str, Collection], found: set[str], limit: int) -> None:
        self.tables = tables
        self.found = found
        self.limit = limit

    def walk(self, node: Node, depth: int, parent: Node | None) -> None:
        if is_lookup(node):
            assert isinstance(node, Call)
            depth += 1
            limit = self.limit
            if depth > limit:
                raise CelCompileError(
                    f"lookups nested {depth} deep; rules.lookup_depth allows {limit} "
                    "(look up fewer documents in a row, or raise rules.lookup_depth)",
                    node.line,
                    node.column,
                )
            target = self.collection(node)
            if node.function == "get":
                self.get(node, target, parent)
            else:
                self.exists(node, target)
            for arg in node.args[1:]:
                self.walk(arg, depth, node)
            return
        if isinstance(node, Comprehension) and has_lookup(node):
            raise CelCompileError(
                "lookups (get, exists) cannot be used inside a macro (all, exists, map, filter)",
                node.line,
                node.column,
            )
        for child in _children(node):
            self.walk(child, depth, node)

    def collection(self, node: Call) -> Collection:
        name = node.function
        if len(node.args) != 2:
            raise CelCompileError(
                f"{name}() takes a collection name and {'an id' if name == 'get' else 'a map of fields'}",
                node.line,
                node.column,
            )
        first = node.args[0]
        if not (isinstance(first, Lit) and isinstance(first.value, str)):
            raise CelCompileError(
                f"{name}() takes the collection name as a string literal, such as {name}('teams', ...)",
                first.line,
                first.column,
            )
        target = self.tables.get(first.value)
        if target is None:
            known = ", ".join(sorted(self.tables))
            raise CelCompileError(
                f"unknown collection {first.value!r} in {name}(); collections are: {known}",
                first.line,
                first.column,
            )
        self.found.add(target.name)
        return target

    def field(self, target: Collection, name: str, node: Node, written: str) -> None:
        visible = [f.name for f in target.fields if not f.internal]
        if name not in visible:
            raise CelCompileError(
                f"unknown field {name!r} in {written}; fields of {target.name} are: {', '.join(visible)}",
                node.line,
                node.column,
            )

    def get(self, node: Call, target: Collection, parent: Node | None) -> None:
        if not isinstance(parent, Select) or parent.operand is not node or parent.test_only:
            raise CelCompileError(
                f"get() reads one field at a time: write get({target.name!r}, id).<field>",
                node.line,
                node.column,
            )
        self.field(target, parent.field, parent, f"get({target.name!r}, ...).{parent.field}")

    def exists(self, node: Call, target: Collection) -> None:
        spec = node.args[1]
        if not isinstance(spec, MapLit) or not spec.entries:
            raise CelCompileError(
                "exists() takes a map literal of fields and values, such as "
                "exists('members', {'team_id': doc.team_id, 'user_id': auth.id})",
                spec.line,
                spec.column,
            )
        keys: list[str] = []
        for key, _value in spec.entries:
            if not (isinstance(key, Lit) and isinstance(key.value, str)):
                raise CelCompileError("exists() map keys are field names in quotes", key.line, key.column)
            self.field(target, key.value, key, f"exists({target.name!r}, ...)")
            kind = _field(target, key.value).type
            if kind in (FieldType.JSON, FieldType.FILE):
                raise CelCompileError(
                    f"exists() compares scalar fields; {key.value} is a {kind} field",
                    key.line,
                    key.column,
                )
            keys.append(key.value)
        indexed = indexed_fields(target)
        if not indexed.intersection(keys):
            raise CelCompileError(
                f"exists({target.name!r}, ...) filters on no indexed field, so every listed document "
                f"would scan {target.name}; add `index: true` to one of {', '.join(keys)} "
                f"or an index starting with it",
                spec.line,
                spec.column,
            )


def _field(c: Collection, name: str) -> Field:
    found = c.field(name)
    if found is None:
        raise CelEvalError(f"no field {name} in {c.name}")
    return found


# -- the references shorthand -----------------------------------------------------------
def expand_references(node: Node, collection: Collection, tables: Mapping[str, Collection]) -> Node:
    """`doc.team_id.owner_id`, where `team_id` is a `references: teams.id` field, as
    `get('teams', doc.team_id).owner_id`; chains follow the referenced collections'
    reference fields (`doc.project_id.team_id.owner_id`). Only fields with `references`
    (to the primary key) are followed: a json field keeps selecting into its value."""
    return _References(collection, tables).walk(node, frozenset())


class _References:
    def __init__(self, collection: Collection, tables: Mapping[str, Collection]) -> None:
        self.collection = collection
        self.tables = tables
        # id(rewritten `get(c, id).f`) -> the path the rule wrote (`doc.project_id.team_id`).
        self.written: dict[int, tuple[Node, str]] = {}

    def walk(self, node: Node, scope: frozenset[str]) -> Node:
        if isinstance(node, Select):
            operand = self.walk(node.operand, scope)
            target = self.referenced(operand, scope)
            if target is None:
                return node if operand is node.operand else dataclasses.replace(node, operand=operand)
            return self.follow(node, operand, target)
        if isinstance(node, Comprehension):
            inner = scope | node.variables
            return dataclasses.replace(
                node,
                range=self.walk(node.range, scope),
                body=self.walk(node.body, inner),
                filter=None if node.filter is None else self.walk(node.filter, inner),
            )
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            mapped = self.map(value, scope)
            if mapped is not value:
                changes[f.name] = mapped
        return dataclasses.replace(node, **changes) if changes else node

    def map(self, value: Any, scope: frozenset[str]) -> Any:
        if isinstance(value, Node):
            return self.walk(value, scope)
        if isinstance(value, tuple):
            mapped = tuple(self.map(v, scope) for v in value)
            return value if all(a is b for a, b in zip(mapped, value, strict=True)) else mapped
        return value

    def referenced(self, node: Node, scope: frozenset[str]) -> tuple[Collection, str, str] | None:
        """(referenced collection, field, how it was written) when `node` reads a reference
        field: `doc.f` of the rule's collection, or `get(c, id).f` of collection c."""
        if not isinstance(node, Select) or node.test_only or node.optional:
            return None
        op = node.operand
        if isinstance(op, Ident) and op.name == "doc" and (op.root or "doc" not in scope):
            owner, written = self.collection, f"doc.{node.field}"
        elif is_lookup(op) and isinstance(op, Call) and op.function == "get":
            first = op.args[0] if op.args else None
            if not (isinstance(first, Lit) and isinstance(first.value, str)):
                return None
            found = self.tables.get(first.value)
            if found is None:
                return None
            known = self.written.get(id(node))
            written = known[1] if known is not None and known[0] is node else f"get(...).{node.field}"
            owner = found
        else:
            return None
        field = owner.field(node.field)
        if field is None or field.references is None:
            return None
        ref = field.references
        target = self.tables.get(ref.collection)
        if target is None:
            return None
        if ref.field != target.primary.name:
            raise CelCompileError(
                f"{written} references {ref.collection}.{ref.field}, not the primary key of "
                f"{ref.collection}, so {written}.<field> cannot read the referenced document; "
                f"write exists({ref.collection!r}, {{{ref.field!r}: {written}, ...}}) instead",
                node.line,
                node.column,
            )
        return target, node.field, written

    def follow(self, node: Select, operand: Node, found: tuple[Collection, str, str]) -> Node:
        target, via, written = found
        if node.test_only:
            raise CelCompileError(
                f"has() cannot test a field through the reference {written}: a referenced "
                f"document is read one field at a time (test {written} != null instead)",
                node.line,
                node.column,
            )
        visible = [f.name for f in target.fields if not f.internal]
        if node.field not in visible:
            raise CelCompileError(
                f"unknown field {node.field!r} in {written}.{node.field} ({via} references "
                f"{target.name}); fields of {target.name} are: {', '.join(visible)}",
                node.line,
                node.column,
            )
        name = Lit(node.line, node.column, target.name)
        lookup = Call(node.line, node.column, "get", None, (name, operand))
        out = dataclasses.replace(node, operand=lookup)
        self.written[id(out)] = (out, f"{written}.{node.field}")
        return out


# -- point reads (the closure path) ------------------------------------------------------
def _reader() -> Reader:
    """Where point reads go: the connection of the list whose row checks run now (in its
    read transaction), else `READER` (one document's check)."""
    conn = CHECKING.get()
    if conn is not None:
        return lambda fn: fn(conn)
    reader = READER.get()
    if reader is None:
        raise CelEvalError("lookups are not available here")
    return reader


def point_get(target: Collection, doc_id: Any, budget: list[int] | None) -> dict[str, Any]:
    """The looked-up doc's non-internal fields, as stored; an error when it does not exist."""
    from alyx_server.db import get_doc

    if budget is not None:
        cost.spend(budget, LOOKUP_COST)
    if doc_id is None or isinstance(doc_id, dict | list | bytes):
        raise CelEvalError(f"get(): no such document in {target.name}")
    doc = _reader()(lambda conn: get_doc(conn, target, doc_id, internal=True))
    if doc is None:
        raise CelEvalError(f"get(): no such document in {target.name}")
    hidden = {f.name for f in target.fields if f.internal}
    return {k: v for k, v in doc.items() if k not in hidden}


_NO_MATCH = object()


def _stored(t: FieldType, value: Any) -> Any:
    """The column value equal to CEL `value` in a field of type `t`, or _NO_MATCH."""
    if value is None:
        return None
    if t in (FieldType.STRING, FieldType.TEXT, FieldType.UUID):
        return value if type(value) is str else _NO_MATCH
    if t is FieldType.BOOL:
        return int(value) if type(value) is bool else _NO_MATCH
    if t is FieldType.INT or t is FieldType.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _NO_MATCH
        return float(value) if t is FieldType.INT and isinstance(value, float) else value
    if t is FieldType.TIMESTAMP:
        if not isinstance(value, datetime):
            return _NO_MATCH
        if value.microsecond % 1000:
            raise CelEvalError("exists(): timestamp with sub-millisecond digits")
        return format_timestamp(value)
    if t is FieldType.BLOB:
        return value if type(value) is bytes else _NO_MATCH
    return _NO_MATCH


def point_exists(target: Collection, spec: Mapping[str, Any], budget: list[int] | None) -> bool:
    """Whether a doc of `target` has every field of `spec` equal to its value."""
    if budget is not None:
        cost.spend(budget, LOOKUP_COST)
    conds: list[str] = []
    params: list[Any] = []
    for name, value in spec.items():
        stored = _stored(_field(target, name).type, value)
        if stored is _NO_MATCH:
            return False
        if stored is None:
            conds.append(f"{quote(name)} IS NULL")
        else:
            conds.append(f"{quote(name)} = ?")
            params.append(stored)
    sql = f"SELECT 1 FROM {quote(target.name)} WHERE {' AND '.join(conds)} LIMIT 1"
    return bool(_reader()(lambda conn: conn.execute(sql, params).fetchone() is not None))
