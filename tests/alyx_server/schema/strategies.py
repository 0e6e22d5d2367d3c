"""Hypothesis strategies for valid schemas, shared by the loader, DDL and differ tests.

`schemas()` draws a `Schema` that `parse_schema` accepts and returns unchanged (values in
the loader's normal form: canonical timestamps and uuids, float defaults as floats), with
several collections, fields of every type, nullable/unique/index/internal flags, literal,
`auto` and `now` defaults, validation options, references between collections (and to
`_alyx_users.id`), declared indexes and rules. `schema_dicts()` gives the same as
`Schema.to_dict()` output.

Names are drawn so they cannot clash: collection names have no underscore, declared
indexes are named `ix_<collection>_<n>`, so neither meets the `uq_`/`idx_` names of the
indexes that the DDL derives from field options.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Sequence
from typing import Any, Literal

from hypothesis import strategies as st

from alyx_server.schema.model import (
    USERS_TABLE,
    Collection,
    Default,
    Field,
    FieldType,
    Index,
    Reference,
    Rules,
    Schema,
    Validation,
)

__all__ = [
    "collection_names",
    "field_names",
    "field_types",
    "json_values",
    "schema_dicts",
    "schemas",
    "texts",
]

# The loader reads these two words as `default: auto` / `default: now`, never as literals.
_KEYWORDS = ("auto", "now")

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _names(rest: str, max_size: int) -> st.SearchStrategy[str]:
    head, tail = st.sampled_from(_LETTERS), st.text(rest, max_size=max_size)
    return st.builds(str.__add__, head, tail)


collection_names = _names(_LETTERS + "0123456789", 9).filter(lambda n: not n.startswith("sqlite"))
field_names = _names(_LETTERS + "0123456789_", 11)
# File fields hold what uploads stored (tests/alyx_server/storage), never drawn values.
field_types = st.sampled_from([t for t in FieldType if t is not FieldType.FILE])
texts = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn")),
    max_size=12,
).filter(lambda t: t not in _KEYWORDS)
_finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _finite | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
).filter(lambda v: v is not None and v not in _KEYWORDS)
_timestamps = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2100, 1, 1)
).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z")
_uuids = st.uuids().map(str)
_FORMAT_EXAMPLES = {
    "email": ("ada@example.com", "x.y+z@mail.example.org"),
    "url": ("https://example.com/a?b=1", "http://localhost:8090"),
    "uuid": ("0b7e2e4a-3c1d-4f7e-9a55-8a2f1f3c9d10",),
}
_FORMATS: tuple[Literal["email", "url", "uuid"] | None, ...] = (None, "email", "url", "uuid")
_ACTIONS: tuple[Literal["restrict", "cascade", "set null"], ...] = (
    "restrict",
    "cascade",
    "set null",
)
_ORDERS: tuple[Literal["asc", "desc"], ...] = ("asc", "desc")
_formats = st.sampled_from(_FORMATS)
_maybe_count = st.none() | st.integers(0, 40)
_enum_extras = st.none() | st.lists(texts, max_size=3, unique=True)
_ints = st.integers(-(10**9), 10**9)
_maybe_int = st.none() | _ints
_maybe_float = st.none() | _finite
_literals: dict[FieldType, st.SearchStrategy[Any]] = {
    FieldType.UUID: _uuids,
    FieldType.BOOL: st.booleans(),
    FieldType.TIMESTAMP: _timestamps,
    FieldType.JSON: json_values,
    FieldType.BLOB: st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode()),
}
_other_defaults: dict[FieldType, st.SearchStrategy[Default | None]] = {
    ftype: st.one_of(
        st.none(),
        st.sampled_from(
            {FieldType.UUID: (Default("auto"),), FieldType.TIMESTAMP: (Default("now"),)}.get(ftype, (None,))
        ),
        literal.map(lambda v: Default("literal", v)),
    )
    for ftype, literal in _literals.items()
}
_actions = st.sampled_from(_ACTIONS)
_orders = st.sampled_from(_ORDERS)
_rules = st.none() | texts.filter(lambda t: t.strip() != "")
_primaries = st.sampled_from(
    (
        Field("id", FieldType.UUID, primary=True, default=Default("auto")),
        Field("id", FieldType.INT, primary=True, default=Default("auto")),
        Field("id", FieldType.INT, primary=True),
        Field("id", FieldType.STRING, primary=True, validation=Validation(max_length=64)),
        Field("id", FieldType.UUID, primary=True, unique=True),
    )
)
_USERS_ID = (USERS_TABLE, Field("id", FieldType.UUID, primary=True))


def _pick(draw: st.DrawFn, items: Sequence[Any]) -> Any:
    return items[draw(st.integers(0, len(items) - 1))]


@st.composite
def _text_options(draw: st.DrawFn) -> tuple[Validation, Default | None]:
    """String/text validation with a default (or none) that passes it."""
    fmt = draw(_formats)
    if fmt is not None:
        value = _pick(draw, (None, *_FORMAT_EXAMPLES[fmt]))
        return Validation(format=fmt), None if value is None else Default("literal", value)
    value = draw(texts)
    lo, hi = draw(_maybe_count), draw(_maybe_count)
    lo = None if lo is None else min(lo, len(value))
    hi = None if hi is None else max(hi, len(value))
    prefix = value[: draw(st.integers(0, len(value)))]
    pattern = _pick(draw, (None, "^" + re.escape(prefix), r"[\s\S]*"))
    extras = draw(_enum_extras)
    enum = None if extras is None else tuple(dict.fromkeys((*extras, value)))
    validation = Validation(min_length=lo, max_length=hi, pattern=pattern, enum=enum)
    return validation, (draw(st.booleans()) and Default("literal", value)) or None


@st.composite
def _number_options(draw: st.DrawFn, ftype: FieldType) -> tuple[Validation, Default | None]:
    """Int/float validation with a default (or none) inside its bounds."""
    number, maybe = (_ints, _maybe_int) if ftype is FieldType.INT else (_finite, _maybe_float)
    value, lo, hi = draw(number), draw(maybe), draw(maybe)
    lo = None if lo is None else min(lo, value)
    hi = None if hi is None else max(hi, value)
    enum = (value,) if draw(st.booleans()) else None
    default = Default("literal", value) if draw(st.booleans()) else None
    return Validation(min=lo, max=hi, enum=enum), default


def _options(draw: st.DrawFn, ftype: FieldType) -> tuple[Validation, Default | None]:
    if ftype in (FieldType.STRING, FieldType.TEXT):
        return draw(_text_options())
    if ftype in (FieldType.INT, FieldType.FLOAT):
        return draw(_number_options(ftype))
    return Validation(), draw(_other_defaults[ftype])


@st.composite
def _field(draw: st.DrawFn, name: str, targets: Sequence[tuple[str, Field]]) -> Field:
    """A non-primary field; `targets` are (collection, field) pairs it may reference."""
    target = _pick(draw, targets) if draw(st.booleans()) else None
    ftype = target[1].type if target else draw(field_types)
    validation, default = _options(draw, ftype)
    nullable = draw(st.booleans())
    reference = None
    if target is not None:
        action = draw(_actions)
        if action == "set null" and not nullable:
            action = "restrict"
        reference = Reference(target[0], target[1].name, action)
    return Field(
        name=name,
        type=ftype,
        unique=draw(st.booleans()),
        nullable=nullable,
        index=draw(st.booleans()),
        default=default,
        references=reference,
        on_update_now=ftype is FieldType.TIMESTAMP and draw(st.booleans()),
        internal=draw(st.booleans()),
        validation=validation,
    )


_widths = st.integers(1, 3)
_other_field_names = st.lists(field_names.filter(lambda n: n != "id"), max_size=6, unique=True)


@st.composite
def _collection(draw: st.DrawFn, name: str, earlier: Sequence[Collection]) -> Collection:
    primary = draw(_primaries)
    targets = [_USERS_ID, (name, primary)]  # a collection may reference itself
    targets += [(c.name, f) for c in earlier for f in c.fields if f.primary or f.unique]
    fields = (primary, *(draw(_field(n, targets)) for n in draw(_other_field_names)))
    indexes = tuple(
        Index(
            name=f"ix_{name}_{i}",
            fields=tuple(dict.fromkeys(_pick(draw, fields).name for _ in range(draw(_widths)))),
            unique=draw(st.booleans()),
            order=draw(_orders),
        )
        for i in range(draw(st.integers(0, 2)))
    )
    rules = Rules(**{a: draw(_rules) for a in ("create", "read", "update", "delete")})
    return Collection(name=name, fields=fields, indexes=indexes, rules=rules)


@st.composite
def schemas(draw: st.DrawFn, max_collections: int = 4) -> Schema:
    """A valid `Schema` in the loader's normal form."""
    names = draw(st.lists(collection_names, max_size=max_collections, unique=True))
    collections: list[Collection] = []
    for name in names:
        collections.append(draw(_collection(name, collections)))
    return draw(st.builds(Schema, collections=st.just(tuple(collections)), version=st.just(1)))


def schema_dicts(max_collections: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    """`Schema.to_dict()` of a valid schema: what schema.yaml and snapshots hold."""
    return schemas(max_collections).map(Schema.to_dict)
