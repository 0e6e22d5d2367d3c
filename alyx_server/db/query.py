"""The list query builder: filters, sort, paging; bound parameters only.

Every identifier is checked against the schema before it reaches SQL, and every value is
a bound parameter. Conditions on documents arrive as plain `Predicate` objects — an SQL
fragment with its parameters, and/or a Python callable run on each decoded row — so the
rules layer (CEL) can plug its compiled predicates in without this module knowing it.

REST filters (`field:op:value`) parse into a `Condition`, the structured form the
realtime layer shares; `condition_predicate` turns it into SQL and `condition_check`
into a Python test over a decoded document, with the same meaning:

    eq ne gt gte lt lte   comparisons (`ne` is true for NULL, like `IS NOT`)
    like                  SQL LIKE: `%` any run, `_` one character, `\\` escapes them;
                          case-insensitive for ASCII
    contains              case-sensitive substring (instr), no wildcards
    in not_in             comma list (`not_in` is true for NULL)
    is_null not_null      no value
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from alyx_server.db.codec import INT64_MAX, INT64_MIN, int64
from alyx_server.errors import InvalidQuery
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import Collection, Field, FieldType
from alyx_server.tools.timestamps import normalize_timestamp

__all__ = [
    "CHECKING",
    "DEFAULT_LIMIT",
    "LOOP_CHECK_WORK",
    "MAX_LIMIT",
    "OPERATORS",
    "Condition",
    "ListQuery",
    "ListSQL",
    "LoopWorkExceeded",
    "Predicate",
    "build_list_sql",
    "condition_check",
    "condition_predicate",
    "parse_condition",
    "parse_filter",
    "parse_sort",
    "tie_break_descending",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_IN_VALUES = 1000
OPERATORS = (
    "eq", "ne", "gt", "gte", "lt", "lte", "like", "contains", "in", "not_in", "is_null", "not_null",
)  # fmt: skip

_ANY = frozenset(FieldType)
_ORDERED = frozenset(
    {
        FieldType.UUID,
        FieldType.STRING,
        FieldType.TEXT,
        FieldType.INT,
        FieldType.FLOAT,
        FieldType.TIMESTAMP,
    }
)
_TEXTUAL = frozenset({FieldType.UUID, FieldType.STRING, FieldType.TEXT, FieldType.TIMESTAMP})
_EQUALITY = _ANY - {FieldType.JSON, FieldType.BLOB, FieldType.FILE}
_APPLIES = {
    "eq": _EQUALITY, "ne": _EQUALITY, "in": _EQUALITY, "not_in": _EQUALITY,
    "gt": _ORDERED, "gte": _ORDERED, "lt": _ORDERED, "lte": _ORDERED,
    "like": _TEXTUAL, "contains": _TEXTUAL, "is_null": _ANY, "not_null": _ANY,
}  # fmt: skip
_SQL_COMPARE = {"eq": "=", "ne": "IS NOT", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class LoopWorkExceeded(Exception):
    """A row check did more work on the event loop than one read may (its own budget).

    `Database.read_small` treats it as SQLite's step budget running out: the read is
    abandoned and runs again on a reader thread, where no check raises it.
    """


LOOP_CHECK_WORK: ContextVar[list[int] | None] = ContextVar("alyx_loop_check_work", default=None)
"""While `read_small` runs a read on the loop: `[steps the row checks have spent]`, which
checks that count their work (CEL's evaluation budget) add to; None anywhere else."""

CHECKING: ContextVar[sqlite3.Connection | None] = ContextVar("alyx_checking_conn", default=None)
"""While a list runs its row checks (`Predicate.check`): the connection reading the list.
A check that reads other rows (a rule's lookups, rules/lookups.py) reads through it, in
the list's own read transaction."""


@dataclass(frozen=True, slots=True)
class Predicate:
    """A condition on documents as plain objects.

    `sql` is a boolean SQL fragment over the collection's columns with `?` placeholders
    bound to `params`; `check` is called with each decoded document (internal fields
    included) after the SQL has filtered. Either may be None; both must hold.
    """

    sql: str | None = None
    params: tuple[Any, ...] = ()
    check: Callable[[dict[str, Any]], bool] | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    """One `field op value` test; the value is a JSON value, or text from a query string."""

    field: str
    op: str
    value: Any = None


def _public_names(collection: Collection) -> str:
    return ", ".join(f.name for f in collection.fields if not f.internal)


def _field(collection: Collection, name: str, where: str) -> Field:
    f = collection.field(name)
    if f is None or f.internal:
        known = _public_names(collection)
        raise InvalidQuery(f"unknown field {name!r} in {where}; fields of {collection.name} are: {known}")
    return f


# -- values ------------------------------------------------------------------------------
def _from_text(f: Field, text: str) -> Any:
    """A query-string value as the JSON value of the field's type (ValueError if it is not)."""
    t = f.type
    if t is FieldType.INT:
        return int(text)
    if t is FieldType.FLOAT:
        return float(text)
    if t is FieldType.BOOL:
        low = text.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValueError(text)
    return text


_KIND = {
    FieldType.INT: "an integer", FieldType.FLOAT: "a number", FieldType.BOOL: "true or false",
    FieldType.TIMESTAMP: "an ISO-8601 timestamp",
}  # fmt: skip


def _value(f: Field, raw: Any, where: str) -> tuple[Any, Any]:
    """(JSON value, stored value) of one operand; InvalidQuery if it does not fit the field.

    Numbers are decided here, never by SQLite: an integer outside the 64-bit range is
    refused (binding it would overflow), and a float operand is bound as a float.
    """
    t = f.type
    try:
        v = _from_text(f, raw) if isinstance(raw, str) else raw
        if t in (FieldType.UUID, FieldType.STRING, FieldType.TEXT) and isinstance(v, str):
            return v, v
        if t is FieldType.TIMESTAMP and isinstance(v, str):
            norm = normalize_timestamp(v)
            return norm, norm
        if t is FieldType.BOOL and isinstance(v, bool):
            return v, int(v)
        if t is FieldType.INT and isinstance(v, int | float) and not isinstance(v, bool):
            n = int64(v)
            if n is not None:
                return n, n
            if isinstance(v, int) or (v.is_integer() and not INT64_MIN <= v <= INT64_MAX):
                raise InvalidQuery(
                    f"invalid {where}: {f.name} is an int field and {raw!r} is outside the "
                    f"64-bit integer range ({INT64_MIN} to {INT64_MAX})"
                )
        if t is FieldType.FLOAT and isinstance(v, int | float) and not isinstance(v, bool):
            x = float(v)
            if math.isfinite(x):
                return v, x
    except (ValueError, OverflowError):
        pass
    kind = _KIND.get(t, "a string")
    article = "an" if t.value[0] in "aeiou" else "a"
    raise InvalidQuery(f"invalid {where}: {f.name} is {article} {t.value} field and {raw!r} is not {kind}")


def _values(f: Field, raw: Any, where: str) -> list[tuple[Any, Any]]:
    if isinstance(raw, str):
        items: list[Any] = raw.split(",") if raw else []
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise InvalidQuery(f"invalid {where}: expected a list of values")
    if len(items) > MAX_IN_VALUES:
        raise InvalidQuery(f"invalid {where}: at most {MAX_IN_VALUES} values")
    return [_value(f, item, where) for item in items]


def like_regex(pattern: str) -> re.Pattern[str]:
    """The Python regex with the meaning of `LIKE pattern ESCAPE '\\'` (ASCII case-folding)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.ASCII | re.IGNORECASE | re.DOTALL)


# -- conditions --------------------------------------------------------------------------
def _describe(cond: Condition) -> str:
    return f"condition {cond.field} {cond.op}"


def _resolve(collection: Collection, cond: Condition, where: str) -> Field:
    f = _field(collection, cond.field, where)
    if cond.op not in _APPLIES:
        raise InvalidQuery(
            f"invalid {where}: unknown operator {cond.op!r}; operators are: {', '.join(OPERATORS)}"
        )
    if f.type not in _APPLIES[cond.op]:
        kind = f.type.value
        raise InvalidQuery(f"invalid {where}: operator {cond.op!r} does not apply to {kind} field {f.name!r}")
    return f


def condition_predicate(collection: Collection, cond: Condition, *, where: str | None = None) -> Predicate:
    """The SQL form of a condition (no Python check: SQL alone decides)."""
    where = where or _describe(cond)
    f = _resolve(collection, cond, where)
    col, op = quote(f.name), cond.op
    if op == "is_null":
        return Predicate(f"{col} IS NULL")
    if op == "not_null":
        return Predicate(f"{col} IS NOT NULL")
    if op in ("in", "not_in"):
        stored = tuple(s for _j, s in _values(f, cond.value, where))
        marks = ", ".join("?" for _ in stored)
        if op == "in":
            return Predicate(f"{col} IN ({marks})" if stored else "0", stored)
        return Predicate(f"({col} IS NULL OR {col} NOT IN ({marks}))" if stored else "1", stored)
    _json_value, value = _value(f, cond.value, where)
    if op == "like":
        return Predicate(f"{col} LIKE ? ESCAPE '\\'", (value,))
    if op == "contains":
        return Predicate(f"instr({col}, ?) > 0", (value,))
    return Predicate(f"{col} {_SQL_COMPARE[op]} ?", (value,))


def condition_check(collection: Collection, cond: Condition) -> Callable[[dict[str, Any]], bool]:
    """The same condition as a Python test over a decoded document (for realtime matching)."""
    where = _describe(cond)
    f = _resolve(collection, cond, where)
    name, op = f.name, cond.op
    if op == "is_null":
        return lambda d: d.get(name) is None
    if op == "not_null":
        return lambda d: d.get(name) is not None
    if op in ("in", "not_in"):
        options = tuple(j for j, _s in _values(f, cond.value, where))
        if op == "in":
            return lambda d: d.get(name) is not None and d.get(name) in options
        return lambda d: d.get(name) is None or d.get(name) not in options
    x, _stored = _value(f, cond.value, where)
    return _compare(name, op, x)


def _compare(name: str, op: str, x: Any) -> Callable[[dict[str, Any]], bool]:
    if op == "like":
        rx = like_regex(x)
        return lambda d: isinstance(v := d.get(name), str) and rx.fullmatch(v) is not None
    if op == "contains":
        return lambda d: isinstance(v := d.get(name), str) and x in v
    if op == "eq":
        return lambda d: d.get(name) == x
    if op == "ne":
        return lambda d: d.get(name) != x
    if op == "gt":
        return lambda d: (v := d.get(name)) is not None and v > x
    if op == "gte":
        return lambda d: (v := d.get(name)) is not None and v >= x
    if op == "lt":
        return lambda d: (v := d.get(name)) is not None and v < x
    return lambda d: (v := d.get(name)) is not None and v <= x


def parse_condition(collection: Collection, text: str) -> Condition:
    """`field:op:value` (split on the first two colons) checked against the schema."""
    where = f"filter {text!r}"
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise InvalidQuery(f"invalid {where}: expected field:op:value, e.g. title:eq:hello")
    name, op = parts[0], parts[1]
    value: Any = parts[2] if len(parts) == 3 else None
    if op in ("is_null", "not_null"):
        if value not in (None, "", "true"):
            raise InvalidQuery(f"invalid {where}: {op} takes no value")
        value = None
    elif value is None:
        raise InvalidQuery(f"invalid {where}: expected field:op:value, e.g. title:eq:hello")
    cond = Condition(name, op, value)
    _resolve(collection, cond, where)
    return cond


def parse_filter(collection: Collection, text: str) -> Predicate:
    """A REST `filter=field:op:value` as a Predicate; InvalidQuery names the filter and field."""
    cond = parse_condition(collection, text)
    return condition_predicate(collection, cond, where=f"filter {text!r}")


def parse_sort(collection: Collection, text: str) -> list[tuple[str, bool]]:
    """`-created_at,title` as [(field, descending)], each field checked against the schema."""
    out: list[tuple[str, bool]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        desc = part.startswith("-")
        name = part.lstrip("+-")
        _field(collection, name, "sort")
        out.append((name, desc))
    return out


# -- list queries ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ListQuery:
    """What a list request asks for; see `build_list_sql` for how each part is checked."""

    collection: Collection
    predicates: Sequence[Predicate] = ()
    sort: Sequence[tuple[str, bool]] = ()
    limit: int | None = None
    offset: int = 0
    fields: Sequence[str] | None = None
    with_total: bool = True


@dataclass(frozen=True, slots=True)
class ListSQL:
    """The statements of a list query.

    With `checks`, `select` has no LIMIT/OFFSET and selects every column (the checks see
    whole documents): the caller filters, pages and counts in Python.
    """

    select: str
    params: tuple[Any, ...]
    count: str | None
    count_params: tuple[Any, ...]
    columns: tuple[str, ...]
    checks: tuple[Callable[[dict[str, Any]], bool], ...]
    limit: int
    offset: int
    fields: tuple[str, ...] | None = field(default=None)


def _page(query: ListQuery) -> tuple[int, int]:
    limit = DEFAULT_LIMIT if query.limit is None else query.limit
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidQuery(f"invalid limit {query.limit!r}: expected an integer from 0 to {MAX_LIMIT}")
    offset = query.offset
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= INT64_MAX:
        raise InvalidQuery(
            f"invalid offset {offset!r}: expected an integer of 0 or more (at most {INT64_MAX})"
        )
    return min(limit, MAX_LIMIT), query.offset


def tie_break_descending(sort: Sequence[tuple[str, bool]]) -> bool:
    """Ties are broken by the primary key in the direction of the last sort key.

    `ORDER BY n DESC, id DESC` is served backwards by an index ending `(…, n, id)`; with
    `id ASC` SQLite sorts every tie group in a temporary B-tree instead. No sort: ascending.
    """
    return bool(sort) and sort[-1][1]


def build_list_sql(query: ListQuery) -> ListSQL:
    """Compile a ListQuery: checked identifiers, bound values, ties broken by the primary key.

    `limit` defaults to 100 and is capped at 1000; the count statement is built only when
    the total is asked for.
    """
    c = query.collection
    limit, offset = _page(query)
    order = [f"{quote(_field(c, n, 'sort').name)} {'DESC' if desc else 'ASC'}" for n, desc in query.sort]
    pk = c.primary.name
    if all(n != pk for n, _d in query.sort):
        order.append(f"{quote(pk)} {'DESC' if tie_break_descending(query.sort) else 'ASC'}")
    wanted = None if query.fields is None else tuple(_field(c, n, "fields").name for n in query.fields)
    sqls = [p.sql for p in query.predicates if p.sql]
    params = tuple(v for p in query.predicates if p.sql for v in p.params)
    checks = tuple(p.check for p in query.predicates if p.check is not None)
    where = (" WHERE " + " AND ".join(f"({s})" for s in sqls)) if sqls else ""
    table = quote(c.name)
    columns = c.field_names if checks else (wanted or tuple(f.name for f in c.fields if not f.internal))
    cols = ", ".join(quote(n) for n in columns)
    select = f"SELECT {cols} FROM {table}{where} ORDER BY {', '.join(order)}"
    select_params = params
    if not checks:
        select += " LIMIT ? OFFSET ?"
        select_params = (*params, limit, offset)
    count = f"SELECT count(*) FROM {table}{where}" if query.with_total and not checks else None
    return ListSQL(select, select_params, count, params, columns, checks, limit, offset, wanted)
