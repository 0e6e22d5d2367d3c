"""Query parameters of document routes, checked against the schema before any SQL.

    filter=field:op:value   repeatable, all must hold (db.query.parse_filter)
    where=<CEL>             a CEL expression over doc's non-internal fields, at most 1024
                            characters (rules.access.where_predicate, rules.limits)
    sort=-created_at,title  ties broken by the primary key
    limit=0..1000 (100)     offset=0..   total=true|false
    fields=a,b              the primary key is always returned as well
    expand=ref_a,ref_b      reference fields, one level

Every problem is a 400 INVALID_QUERY naming the parameter and what would be accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from multidict import MultiMapping

from alyx_server.api.runtime import CollectionView
from alyx_server.db.query import DEFAULT_LIMIT, MAX_LIMIT, ListQuery, Predicate, parse_filter, parse_sort
from alyx_server.errors import InvalidQuery

__all__ = ["PLAIN", "Shape", "parse_list", "parse_shape"]

_INT64_MAX = 2**63 - 1
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True, slots=True)
class Shape:
    """What each returned doc shows.

    `fields` None means every public field; `expand` lists reference fields to inline;
    `hidden` are fields read only to expand them, removed before answering.
    """

    fields: tuple[str, ...] | None = None
    expand: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...] | None:
        return None if self.fields is None else (*self.fields, *self.hidden)


PLAIN = Shape()


def _names(raw: str) -> list[str]:
    out: list[str] = []
    for part in raw.split(","):
        name = part.strip()
        if name and name not in out:
            out.append(name)
    return out


def _unknown(view: CollectionView, name: str, param: str) -> InvalidQuery:
    known = ", ".join(view.codec.public_names)
    return InvalidQuery(f"unknown field {name!r} in {param}; fields of {view.name} are: {known}")


def parse_shape(view: CollectionView, query: Mapping[str, str]) -> Shape:
    """`fields` and `expand` of a get or list request."""
    fields: tuple[str, ...] | None = None
    raw_fields = query.get("fields")
    if raw_fields is not None and raw_fields.strip():
        names = _names(raw_fields)
        for name in names:
            if name not in view.public_names:
                raise _unknown(view, name, "fields")
        pk = view.codec.pk.name
        fields = tuple(names) if pk in names else (pk, *names)
    expand: list[str] = []
    raw_expand = query.get("expand")
    if raw_expand is not None:
        for name in _names(raw_expand):
            if name not in view.references:
                raise _not_expandable(view, name)
            expand.append(name)
    if fields is None and not expand:
        return PLAIN
    hidden = () if fields is None else tuple(n for n in expand if n not in fields)
    return Shape(fields, tuple(expand), hidden)


def _not_expandable(view: CollectionView, name: str) -> InvalidQuery:
    refs = ", ".join(view.references) or "(none)"
    if name in view.public_names:
        return InvalidQuery(
            f"cannot expand {name!r}: it is not a reference field; reference fields of "
            f"{view.name} are: {refs}"
        )
    return InvalidQuery(f"unknown field {name!r} in expand; reference fields of {view.name} are: {refs}")


def _integer(query: Mapping[str, str], name: str, default: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > high:
        raise InvalidQuery(f"invalid {name} {raw!r}: expected an integer from 0 to {high}")
    return int(text)


def _flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidQuery(f"invalid {name} {raw!r}: expected true or false")


def parse_list(
    view: CollectionView,
    query: MultiMapping[str],
    read: Predicate | None,
    where: Callable[[str], Predicate] | None = None,
) -> tuple[ListQuery, Shape]:
    """The ListQuery and Shape of a list request; `read` is the policy's read predicate,
    `where` compiles a `where=` expression (None: where= is refused)."""
    collection = view.collection
    predicates: list[Predicate] = [parse_filter(collection, f) for f in query.getall("filter", ())]
    for text in query.getall("where", ()):
        if where is None:
            raise InvalidQuery("where= is not available here; use filter=field:op:value instead")
        predicates.append(where(text))
    if read is not None:
        predicates.append(read)
    sort: Sequence[tuple[str, bool]] = ()
    raw_sort = query.get("sort")
    if raw_sort:
        sort = parse_sort(collection, raw_sort)
    shape = parse_shape(view, query)
    list_query = ListQuery(
        collection,
        predicates=predicates,
        sort=sort,
        limit=_integer(query, "limit", DEFAULT_LIMIT, MAX_LIMIT),
        offset=_integer(query, "offset", 0, _INT64_MAX),
        fields=shape.columns,
        with_total=_flag(query, "total", True),
    )
    return list_query, shape
