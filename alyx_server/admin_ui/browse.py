"""The data browser's plain logic: keyset pages, cursors, and form values to JSON values.

Keyset pagination. A page is the `limit` documents that come after (or before) a cursor
in the order of the list: the `sort` keys, then the primary key as the tie-break, in the
direction `build_list_sql` gives it (`tie_break_descending`). A cursor is the values of
those keys in the last (or first) document of the page, as JSON, base64url-encoded into
the URL (`after=` / `before=`). Each page costs one index seek however deep it is, where
`offset=90000` reads and skips 90,000 rows first.

The cursor becomes a `Predicate` added to the REST list query, so `where`, `sort`, the
read rules and the checks are those of `GET /api/collections/{c}`:

    same direction, no NULL in the cursor, and (ascending or the keys are not nullable):
        (a, b, id) > (?, ?, ?)           a row value, which SQLite seeks in an index
    otherwise, key by key (SQLite sorts NULL first, before every value):
        a > ? OR (a IS ? AND (b < ? OR b IS NULL OR (b IS ? AND id > ?)))

`before=` reads the same query in the reversed order and turns the page back around.

Form values. The create and edit forms send text; `form_value` turns a field's text into
the JSON value the REST API would receive (numbers, true/false, parsed JSON), leaving
anything that does not parse as the text itself, so the codec's own validation reports
it with the REST API's message.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from alyx_server.db.codec import CollectionCodec
from alyx_server.db.query import ListQuery, Predicate, tie_break_descending
from alyx_server.db.validation import InvalidValue
from alyx_server.errors import FieldIssue, InvalidQuery
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import Collection, Field, FieldType

__all__ = [
    "Keys",
    "cursor_of",
    "form_value",
    "keyset_predicate",
    "order_keys",
    "page_query",
    "parse_cursor",
]

Keys = tuple[tuple[Field, bool], ...]
"""The keys of a list's order: (field, descending), ending with the primary key."""


def order_keys(collection: Collection, sort: Sequence[tuple[str, bool]]) -> Keys:
    """The order `build_list_sql` gives a list: the sort keys, then the primary key."""
    keys: list[tuple[Field, bool]] = []
    pk = collection.primary
    for name, desc in sort:
        f = collection.field(name)
        if f is None:  # parse_sort checked the names already
            raise InvalidQuery(f"unknown field {name!r} in sort")
        keys.append((f, desc))
        if f.name == pk.name:
            return tuple(keys)
    keys.append((pk, tie_break_descending(sort)))
    return tuple(keys)


def cursor_of(keys: Keys, doc: Mapping[str, Any]) -> str:
    """The cursor naming `doc`'s place in the order (its values of the keys)."""
    raw = orjson.dumps([doc.get(f.name) for f, _desc in keys])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def parse_cursor(codec: CollectionCodec, keys: Keys, text: str, param: str) -> tuple[Any, ...]:
    """The stored values a cursor holds; InvalidQuery if it is not one of this list's."""
    bad = InvalidQuery(
        f"invalid {param} cursor: it does not belong to this list (its sort changed, or it "
        "was edited); go back to the first page"
    )
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise bad from None
    if not isinstance(values, list) or len(values) != len(keys):
        raise bad
    stored: list[Any] = []
    for (f, _desc), value in zip(keys, values, strict=True):
        if value is None:
            if not f.nullable:
                raise bad
            stored.append(None)
            continue
        try:
            stored.append(codec.fields[f.name].convert(value))
        except InvalidValue:
            raise bad from None
    return tuple(stored)


def keyset_predicate(keys: Keys, values: Sequence[Any], *, backwards: bool = False) -> Predicate:
    """Rows strictly after `values` in the order of `keys` (before them if `backwards`)."""
    directions = [desc != backwards for _f, desc in keys]
    uniform = all(d == directions[0] for d in directions)
    if (
        uniform
        and all(v is not None for v in values)
        and (not directions[0] or all(not f.nullable or f.primary for f, _d in keys))
    ):
        cols = ", ".join(quote(f.name) for f, _d in keys)
        marks = ", ".join("?" for _ in keys)
        op = "<" if directions[0] else ">"
        if len(keys) == 1:
            return Predicate(f"{cols} {op} ?", tuple(values))
        return Predicate(f"({cols}) {op} ({marks})", tuple(values))
    sql, params = _after(keys, directions, values, 0)
    return Predicate(sql, tuple(params))


def _after(keys: Keys, directions: Sequence[bool], values: Sequence[Any], i: int) -> tuple[str, list[Any]]:
    f, _desc = keys[i]
    col, value, desc = quote(f.name), values[i], directions[i]
    # Strictly after `value` in this key alone (NULL sorts before every value).
    if value is None:
        beyond, beyond_params = ("0", []) if desc else (f"{col} IS NOT NULL", [])
    elif desc:
        beyond, beyond_params = f"({col} < ? OR {col} IS NULL)", [value]
    else:
        beyond, beyond_params = f"{col} > ?", [value]
    if i == len(keys) - 1:
        return beyond, beyond_params
    rest, rest_params = _after(keys, directions, values, i + 1)
    return (
        f"({beyond} OR ({col} IS ? AND {rest}))",
        [*beyond_params, value, *rest_params],
    )


@dataclass(frozen=True, slots=True)
class PageQuery:
    """The list query of one page (one more row than shown, to know if there is another)."""

    query: ListQuery
    backwards: bool


def page_query(
    base: ListQuery, keys: Keys, limit: int, after: tuple[Any, ...] | None, before: tuple[Any, ...] | None
) -> PageQuery:
    """`base` (predicates and sort of the REST list) as one keyset page of `limit` docs."""
    predicates = list(base.predicates)
    sort = list(base.sort)
    backwards = before is not None
    if after is not None:
        predicates.append(keyset_predicate(keys, after))
    elif before is not None:
        predicates.append(keyset_predicate(keys, before, backwards=True))
        # Reversed: every key, the primary key included, in the other direction.
        sort = [(f.name, not desc) for f, desc in keys]
    query = ListQuery(
        base.collection,
        predicates=predicates,
        sort=sort,
        limit=limit + 1,
        offset=0,
        fields=base.fields,
        with_total=False,
    )
    return PageQuery(query, backwards)


# -- form text -> JSON values -------------------------------------------------------------
def form_value(f: Field, text: str, *, creating: bool) -> tuple[bool, Any, FieldIssue | None]:
    """(send it?, the JSON value, an issue found before the codec) of one form field.

    Empty input: left out on create (the default applies, or `required` is reported);
    on edit it is null for a nullable field and "" for a string or text field (whose
    length rules then apply), null otherwise (reported as `required`)."""
    t = f.type
    if text == "":
        if creating:
            return False, None, None
        if not f.nullable and t in (FieldType.STRING, FieldType.TEXT):
            return True, "", None
        return True, None, None
    if t is FieldType.INT:
        try:
            return True, int(text.strip()), None
        except ValueError:
            return True, text, None
    if t is FieldType.FLOAT:
        try:
            return True, float(text.strip()), None
        except ValueError:
            return True, text, None
    if t is FieldType.BOOL:
        low = text.strip().lower()
        return True, {"true": True, "false": False}.get(low, text), None
    if t is FieldType.JSON:
        try:
            return True, orjson.loads(text), None
        except orjson.JSONDecodeError as e:
            message = f"{f.name} is not valid JSON: {e.args[0] if e.args else e}"
            return True, None, FieldIssue(f.name, "invalid_json", message)
    return True, text, None


def form_text(f: Field, value: Any) -> str:
    """A stored JSON value as the text its form input shows (the inverse of form_value)."""
    if value is None:
        return ""
    if f.type is FieldType.JSON:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    if f.type is FieldType.BOOL:
        return "true" if value else "false"
    return str(value)
