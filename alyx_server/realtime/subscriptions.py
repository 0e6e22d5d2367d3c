"""Subscriptions: a live query checked against the schema and bound to its caller.

`LiveQuery` is what a subscribe message asks, in the schema's terms: the filter as
database `Condition`s (SPEC §7 ops; `{"field": value}` is `$eq`), a `where` expression,
sort, limit and expand. `Subscription` binds it to one caller's access:

    predicates   the snapshot's query, the read rule pushed into SQL by the AccessPolicy
    matches      the same conditions in memory, run on each changed doc
    route        one equality (field, values) that every match has, for the index
    match_fields the fields whose change can change `matches` (None: any field)

The read rule is re-checked for every subscriber (admins bypass it), so a doc the caller
may no longer read leaves the view like a doc that stops matching.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from alyx_server.db.query import (
    Condition,
    Predicate,
    condition_check,
    condition_predicate,
    parse_sort,
)
from alyx_server.errors import AlyxError, InvalidQuery
from alyx_server.realtime.protocol import MessageId, RealtimeError, SubscribeRequest
from alyx_server.realtime.windows import Holders, LiveView, PendingDelta, sort_key
from alyx_server.rules.policy import AccessPolicy, Auth, DocCheck, RequestInfo, doc_fields_in
from alyx_server.schema.model import Collection, FieldType
from alyx_server.tools.timestamps import normalize_timestamp

__all__ = [
    "FILTER_OPERATORS",
    "Access",
    "LiveExpression",
    "LiveQuery",
    "ReadChecks",
    "ReadFields",
    "ReadRoutes",
    "Subscription",
    "WhereCompiler",
    "live_query",
    "parse_live_filter",
]

FILTER_OPERATORS = {
    "$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte",
    "$like": "like", "$contains": "contains", "$in": "in", "$nin": "not_in", "$exists": "exists",
}  # fmt: skip
_UNSORTABLE = frozenset({FieldType.JSON, FieldType.BLOB, FieldType.FILE})


class LiveExpression(Protocol):
    """A compiled CEL expression over `doc`, `auth` and `request` (rules' CompiledRule)."""

    text: str

    def to_predicate(self, auth: Auth | None, request: RequestInfo | None) -> Predicate: ...

    def doc_check(
        self, auth: Auth | None, request: RequestInfo | None, shared: list[int] | None = None
    ) -> DocCheck | bool: ...

    def equality_constraints(
        self, auth: Auth | None, request: RequestInfo | None = None
    ) -> dict[str, Any]: ...


WhereCompiler = Callable[[Collection, str], LiveExpression]
"""Compiles a subscribe `where` (InvalidQuery when it is bad)."""
ReadRoutes = Callable[[Collection, Auth | None], Mapping[str, Any]]
"""{field: value} every doc the caller may read in the collection has (read rule equalities)."""
ReadFields = Callable[[Collection], frozenset[str] | None]
"""The doc fields the collection's read decision depends on (None: unknown, any field)."""
ReadChecks = Callable[[Collection, Auth | None, RequestInfo, list[int] | None], DocCheck | bool]
"""The read decision bound to one caller (and its shared evaluation budget, `Access.budget`):
per doc, or a bool when it does not read the doc."""


@dataclass(frozen=True, slots=True)
class Access:
    """Who subscribes, as the AccessPolicy sees them; admins bypass the read rule."""

    policy: AccessPolicy
    auth: Auth | None
    request: RequestInfo
    read_routes: ReadRoutes | None = None
    read_fields: ReadFields | None = None
    read_checks: ReadChecks | None = None
    budget: list[int] | None = None
    """The connection's evaluation budget `[left, limit]`, shared by the read rule and
    `where` checks of all its subscriptions; the fan-out refills it per changed doc."""

    @property
    def is_admin(self) -> bool:
        return bool(getattr(self.auth, "is_admin", False))


# -- filter ------------------------------------------------------------------------------
def _bad(name: str, problem: str) -> RealtimeError:
    return RealtimeError("INVALID_FILTER", f"filter on {name!r}: {problem}")


def _operator_conditions(name: str, ops: Mapping[str, Any]) -> list[Condition]:
    if not ops:
        raise _bad(name, 'expected a value or an object of operators such as {"$gt": 1}')
    out: list[Condition] = []
    for op, value in ops.items():
        db_op = FILTER_OPERATORS.get(op)
        if db_op is None:
            known = ", ".join(FILTER_OPERATORS)
            raise _bad(name, f"unknown operator {op!r}; operators are: {known}")
        if db_op == "exists":
            if not isinstance(value, bool):
                raise _bad(name, f"$exists takes true or false, not {value!r}")
            out.append(Condition(name, "not_null" if value else "is_null"))
        elif db_op in ("in", "not_in") and not isinstance(value, list):
            raise _bad(name, f"{op} takes a list of values, not {value!r}")
        elif isinstance(value, dict | list) and db_op not in ("in", "not_in"):
            raise _bad(name, f"{op} takes a single value, not {value!r}")
        else:
            out.append(Condition(name, db_op, value))
    return out


def parse_live_filter(collection: Collection, raw: Mapping[str, Any]) -> tuple[Condition, ...]:
    """`{"field": value}` / `{"field": {"$op": value}}` as checked Conditions (all must hold)."""
    conditions: list[Condition] = []
    for name, spec in raw.items():
        if isinstance(spec, dict):
            found = _operator_conditions(name, spec)
        elif isinstance(spec, list):
            raise _bad(name, 'a list needs an operator: {"$in": [...]}')
        else:
            found = [Condition(name, "is_null") if spec is None else Condition(name, "eq", spec)]
        for cond in found:
            try:
                condition_check(collection, cond)
            except InvalidQuery as e:
                raise _bad(name, e.message) from e
        conditions.extend(found)
    return tuple(conditions)


# -- the query ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LiveQuery:
    """A subscribe request checked against its collection."""

    collection: Collection
    conditions: tuple[Condition, ...]
    where: LiveExpression | None
    sort: tuple[tuple[str, bool], ...]
    limit: int | None
    expand: tuple[str, ...]
    checks: tuple[Callable[[dict[str, Any]], bool], ...] = field(default=())

    @property
    def page_size(self) -> int:
        """How many docs the snapshot holds at most (the REST default for live sets)."""
        return self.limit if self.limit is not None else 100


def _sort(collection: Collection, names: Sequence[str]) -> tuple[tuple[str, bool], ...]:
    if not names:
        return ()
    try:
        sort = parse_sort(collection, ",".join(names))
    except InvalidQuery as e:
        raise RealtimeError("INVALID_PAYLOAD", e.message) from e
    for name, _desc in sort:
        f = collection.field(name)
        if f is not None and f.type in _UNSORTABLE:
            raise RealtimeError(
                "INVALID_PAYLOAD", f"cannot sort a live query by {f.type.value} field {name!r}"
            )
    return tuple(sort)


def _expand(collection: Collection, names: Sequence[str]) -> tuple[str, ...]:
    refs = [f.name for f in collection.fields if f.references is not None and not f.internal]
    for name in names:
        if name not in refs:
            known = ", ".join(refs) or "(none)"
            message = f"cannot expand {name!r}; reference fields of {collection.name} are: {known}"
            raise RealtimeError("INVALID_PAYLOAD", message)
    return tuple(dict.fromkeys(names))


def live_query(
    collection: Collection, request: SubscribeRequest, compile_where: WhereCompiler | None
) -> LiveQuery:
    """Check a subscribe request against `collection` (INVALID_FILTER / INVALID_PAYLOAD)."""
    conditions = parse_live_filter(collection, request.filter)
    where: LiveExpression | None = None
    if request.where is not None:
        if compile_where is None:
            raise RealtimeError("INVALID_FILTER", "where needs CEL rules, which this server does not have")
        try:
            where = compile_where(collection, request.where)
        except AlyxError as e:
            raise RealtimeError("INVALID_FILTER", e.message) from e
    checks = tuple(condition_check(collection, c) for c in conditions)
    return LiveQuery(
        collection, conditions, where, _sort(collection, request.sort), request.limit,
        _expand(collection, request.expand), checks,
    )  # fmt: skip


# -- subscriptions -----------------------------------------------------------------------
def _route(
    query: LiveQuery, access: Access, where_eq: Mapping[str, Any]
) -> tuple[str, tuple[Any, ...]] | None:
    for cond in query.conditions:
        if cond.op == "eq":
            values = _hashable(cond, query.collection)
            if values is not None:
                return cond.field, values
    candidates: list[Mapping[str, Any]] = [where_eq]
    if access.read_routes is not None and not access.is_admin:
        candidates.append(access.read_routes(query.collection, access.auth))
    for found in candidates:
        for name, value in found.items():
            if _can_route(value):
                return name, (value,)
    for cond in query.conditions:
        if cond.op == "in":
            values = _hashable(cond, query.collection)
            if values is not None:
                return cond.field, values
    return None


def _can_route(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def _hashable(cond: Condition, collection: Collection) -> tuple[Any, ...] | None:
    """The values a decoded doc holds when it meets an `eq`/`in` condition; None if unsure."""
    f = collection.field(cond.field)
    raw = cond.value if cond.op == "in" else [cond.value]
    if f is None or not isinstance(raw, list):
        return None
    out: list[Any] = []
    for item in raw:
        value = _route_value(f.type, item)
        if value is None:
            return None
        out.append(value)
    return tuple(out)


def _route_value(t: FieldType, v: Any) -> Any:
    if isinstance(v, bool):
        return v if t is FieldType.BOOL else None
    if t in (FieldType.UUID, FieldType.STRING, FieldType.TEXT):
        return v if isinstance(v, str) else None
    if t is FieldType.TIMESTAMP and isinstance(v, str):
        try:
            return normalize_timestamp(v)
        except ValueError:
            return None
    if t is FieldType.INT and isinstance(v, int):
        return v
    if t is FieldType.FLOAT and isinstance(v, int | float):
        return v
    return None


class Subscription:
    """One live query of one client; the hub and the index drive it."""

    __slots__ = (
        "access", "active", "backlog", "client", "depends", "epoch", "frame_prefix", "id", "match_fields",
        "matches", "message_id", "pending", "predicates", "query", "ready", "route", "stale", "view",
    )  # fmt: skip

    def __init__(
        self,
        sub_id: str,
        client: Any,
        message_id: MessageId,
        query: LiveQuery,
        access: Access,
        holders: Holders,
    ) -> None:
        self.id = sub_id
        # A delta frame up to its first payload key (fanout appends the shared rest).
        self.frame_prefix = b'{"type":"delta","payload":{"subscription_id":' + orjson.dumps(sub_id) + b","
        self.client = client
        self.message_id = message_id
        self.query = query
        self.active = True
        self.ready = False
        self.stale = False
        self.epoch = 0
        self.backlog: set[Any] = set()
        self.pending: PendingDelta | None = None
        c = query.collection
        self.view = LiveView(self, holders, sort_key(query.sort, c.primary.name), query.limit)
        self.access = access
        self.predicates: list[Predicate] = []
        self.matches: Callable[[dict[str, Any]], bool] = _never
        self.route: tuple[str, tuple[Any, ...]] | None = None
        self.match_fields: frozenset[str] | None = None
        # Collections the read rule looks up (get, exists): a change there re-runs the query.
        self.depends: frozenset[str] = frozenset()
        self.bind(access)

    def __repr__(self) -> str:
        return f"Subscription({self.id}, {self.query.collection.name})"

    def bind(self, access: Access) -> None:
        """(Re)compute everything that depends on the caller (subscribe, re-auth).

        Raises the policy's Unauthorized/Forbidden when the caller may not list at all.
        """
        q, c = self.query, self.query.collection
        predicates = [condition_predicate(c, cond) for cond in q.conditions]
        checks = list(q.checks)
        where_eq: Mapping[str, Any] = {}
        fields: set[str] | None = {cond.field for cond in q.conditions}
        if q.where is not None:
            predicates.append(q.where.to_predicate(access.auth, access.request))
            _add_check(checks, q.where.doc_check(access.auth, access.request, access.budget))
            where_eq = q.where.equality_constraints(access.auth, access.request)
            fields = _union(fields, doc_fields_in(q.where.text))
        if not access.is_admin:
            read = access.policy.read_predicate(c, access.auth, access.request)
            if read is not None:
                predicates.append(read)
            if access.read_checks is None:
                checks.append(_read_check(access, c))
            else:
                _add_check(checks, access.read_checks(c, access.auth, access.request, access.budget))
            fields = _union(fields, access.read_fields(c) if access.read_fields is not None else None)
        depends: frozenset[str] = frozenset()
        read_lookups = getattr(access.policy, "read_lookups", None)
        if not access.is_admin and read_lookups is not None:
            depends = read_lookups(c)
        self.access = access
        self.depends = depends
        self.predicates = predicates
        self.matches = _all(checks)
        self.route = _route(q, access, where_eq)
        self.match_fields = frozenset(fields) if fields is not None else None

    def unchanged_by(self, changed: tuple[str, ...] | None) -> bool:
        """Whether an update of only `changed` fields cannot change `matches`."""
        if changed is None or self.match_fields is None:
            return False
        return self.match_fields.isdisjoint(changed)

    def pending_delta(self) -> PendingDelta:
        pending = self.pending
        if pending is None:
            pending = self.pending = PendingDelta(self.view)
        return pending


def _union(a: set[str] | None, b: frozenset[str] | None) -> set[str] | None:
    if a is None or b is None:
        return None
    return a | b


def _never(doc: Mapping[str, Any]) -> bool:
    return False


def _add_check(checks: list[Callable[[dict[str, Any]], bool]], bound: DocCheck | bool) -> None:
    """Add a decision bound to the caller: nothing when it admits every doc."""
    if bound is False:
        checks.append(_never)
    elif bound is not True:
        checks.append(bound)


def _read_check(access: Access, collection: Collection) -> Callable[[dict[str, Any]], bool]:
    policy, auth, request = access.policy, access.auth, access.request
    return lambda doc: policy.can_read(collection, auth, request, doc)


def _all(checks: list[Callable[[dict[str, Any]], bool]]) -> Callable[[dict[str, Any]], bool]:
    if not checks:
        return lambda doc: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda doc: a(doc) and b(doc)
    frozen = tuple(checks)
    return lambda doc: all(check(doc) for check in frozen)
