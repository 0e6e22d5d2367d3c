"""`CompiledRule`: one CEL expression compiled for a collection, in every form Alyx needs.

    evaluate(activation)            the value (closures; cel-python outside the subset)
    allows(auth, request, doc)      True only for a `true` result; an error denies
    to_predicate(auth, request)     the rule as a database `Predicate` for lists: the
                                    top-level `&&` parts that have an SQL form go into
                                    the WHERE clause, the rest is checked per row
    can_read(auth, doc)             the same predicate in memory
    doc_check(auth, request)        the predicate bound to one caller, for realtime
                                    fan-out: per doc, or a bool when it reads no doc
    equality_constraints(auth)      {field: value} every admitted doc must have (from
                                    `doc.f == <no doc>` parts), for routing realtime events

`auth` is the caller as a mapping (`{id, email, role, verified, metadata, app_metadata}`)
or None; `doc` is a document as the database layer decodes it (internal fields included).

An expression that can loop or scan (`budgeted`) gets a fresh `EvalBudget` per evaluation
(per document for lists; per connection and changed document for realtime) of
`request.eval_budget` steps (the server's `rules.eval_budget`); running out is an
evaluation error, so the document is denied. Evaluation errors are logged at most once a
second per expression, with a count of the ones in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from typing import Any

from alyx_server.db.query import LOOP_CHECK_WORK, LoopWorkExceeded, Predicate
from alyx_server.rules.budget import BUDGET, EvalBudget
from alyx_server.rules.compile_py import (
    Activation,
    CompileEnv,
    Fn,
    Unsupported,
    compile_budgeted,
    compile_node,
)
from alyx_server.rules.compile_sql import NotSQL, SqlEnv, compile_bool, free_names, uses_doc
from alyx_server.rules.lookups import check_lookups, expand_references
from alyx_server.rules.policy import RequestInfo
from alyx_server.rules.syntax import And, Ident, Lit, Node, Op, Select
from alyx_server.rules.values import CelEvalError, from_json
from alyx_server.schema.model import Collection, FieldType
from alyx_server.tools.timestamps import format_timestamp

__all__ = ["CompiledRule", "auth_value", "request_value"]

log = logging.getLogger("alyx.rules")


def auth_value(auth: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The caller as the CEL `auth` map (None when anonymous); json metadata as CEL values."""
    if auth is None:
        return None
    return {k: from_json(v) for k, v in auth.items()}


def request_value(request: RequestInfo | None) -> dict[str, Any]:
    """RequestInfo as the CEL `request` map; `body` is `{}` when the request has none."""
    if request is None:
        return {"method": "", "ip": "", "time": None, "body": {}, "query": {}}
    return {
        "method": request.method,
        "ip": request.ip,
        "time": request.time,
        "body": from_json(dict(request.body)) if request.body is not None else {},
        "query": dict(request.query),
    }


def _conjuncts(node: Node) -> list[Node]:
    if isinstance(node, And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


_ALL_NAMES = frozenset(("auth", "request", "doc"))
_LOG_EVERY = 1.0
"""Seconds between two logged evaluation errors of one rule (the others are counted)."""
_UNREAD: dict[str, Any] = {}
_MAX_PREDICATES = 4096


class CompiledRule:
    """A rule or `where=` expression compiled once; see the module docstring."""

    def __init__(
        self,
        text: str,
        node: Node,
        collection: Collection,
        env: CompileEnv,
        label: str,
        lookup_depth: int | None = None,
    ) -> None:
        if env.tables is not None:
            # `doc.team_id.owner_id` through a `references` field: get('teams', doc.team_id).owner_id
            node = expand_references(node, collection, env.tables)
        self.text = text
        self.node = node
        self.collection = collection
        self.label = label
        self._env = env
        self._fields: Mapping[str, FieldType] = env.doc_fields or {}
        self._consts: dict[int, Fn] = {}
        self.parts = _conjuncts(node)
        # The collections the expression looks up (get, exists), checked against the schema.
        tables = env.tables
        self.lookups = check_lookups(node, tables, lookup_depth) if tables is not None else frozenset()
        try:
            self._fn, self.budgeted = compile_budgeted(node, env)
            self.part_fns: list[Fn] | None = [compile_node(p, env) for p in self.parts]
            self.fallback = False
        except Unsupported:
            from alyx_server.rules.cel import FallbackProgram  # cel-python, loaded when needed

            self._fn = FallbackProgram(text)
            self.part_fns = None
            self.fallback = True
            self.budgeted = False
        # What the expression reads: values it never reads are not built per request, and
        # a rule that does not read `request` has one SQL predicate per caller, kept in
        # `_predicates` by the caller's immutable auth mapping (AuthContexts are cached per
        # account and session and replaced when the account changes, so identity means
        # same values; a mutable dict is never cached).
        names = _ALL_NAMES if self.fallback else free_names(node)
        self.uses_auth = "auth" in names
        self.uses_request = "request" in names
        self.uses_doc = "doc" in names or bool(self.lookups)
        self._predicates: dict[int, tuple[object, int, Predicate]] = {}
        self._logged_at = -_LOG_EVERY
        self._unlogged = 0

    def __repr__(self) -> str:
        return f"CompiledRule({self.label}: {self.text!r})"

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, activation: Activation) -> Any:
        """The CEL value of the expression; CelEvalError for an error value."""
        return self._fn(activation)

    def allows(
        self, auth: Mapping[str, Any] | None, request: RequestInfo | None, doc: Mapping[str, Any]
    ) -> bool:
        """Whether the rule gives `true`; an evaluation error denies and is logged."""
        auth_v, request_v = self._bound(auth, request)
        act = {"auth": auth_v, "request": request_v, "doc": doc}
        if self.budgeted:
            act[BUDGET] = [limit := self._limit(request), limit]
        return self._allows(act)

    def _limit(self, request: RequestInfo | None) -> int:
        """Steps one evaluation may take: the request's (server setting), else the env's."""
        return request.eval_budget if request is not None else self._env.eval_budget

    def _bound(self, auth: Mapping[str, Any] | None, request: RequestInfo | None) -> tuple[Any, Any]:
        """`auth` and `request` as CEL values, built only when the expression reads them."""
        return (
            auth_value(auth) if self.uses_auth else None,
            request_value(request) if self.uses_request else _UNREAD,
        )

    def _allows(self, act: Activation) -> bool:
        try:
            return self._fn(act) is True
        except CelEvalError as e:
            self._log_error(act, e)
            return False

    def _log_error(self, act: Activation, error: CelEvalError) -> None:
        # At most one line a second per rule: a where that fails on every row of every
        # request (a caller's choice) must not turn into one log line per document.
        now = time.monotonic()
        if now - self._logged_at < _LOG_EVERY:
            self._unlogged += 1
            return
        unlogged, self._unlogged, self._logged_at = self._unlogged, 0, now
        doc = act.get("doc")
        pk = self.collection.primary.name
        doc_id = doc.get(pk) if isinstance(doc, Mapping) else None
        more = f" ({unlogged:,} more denied by errors since the last line)" if unlogged else ""
        log.warning("rule %s denied doc %r: evaluation error: %s%s", self.label, doc_id, error.message, more)

    def can_read(
        self, auth: Mapping[str, Any] | None, doc: Mapping[str, Any], request: RequestInfo | None = None
    ) -> bool:
        """The read decision for one document in memory (realtime fan-out)."""
        return self.allows(auth, request, doc)

    def doc_check(
        self,
        auth: Mapping[str, Any] | None,
        request: RequestInfo | None,
        shared: EvalBudget | None = None,
    ) -> Callable[[Mapping[str, Any]], bool] | bool:
        """The decision bound to one caller: a bool when the rule does not read `doc`.

        Realtime asks this once per subscription (for the read rule and for `where`)
        instead of `allows` per doc and subscriber: `auth` and `request` become CEL
        values once, and an expression that reads only them (`"true"`, `auth.id != null`)
        is decided once. With `shared`, every evaluation charges that one budget, which
        its owner refills (realtime: one budget per connection and changed document, so
        many subscriptions cannot multiply what one change may cost).
        """
        if not self.uses_doc:
            return self.allows(auth, request, {})
        auth_v, request_v = self._bound(auth, request)
        allows = self._allows
        if self.budgeted:
            if shared is not None:
                return lambda doc: allows({"auth": auth_v, "request": request_v, "doc": doc, BUDGET: shared})
            limit = self._limit(request)
            return lambda doc: allows(
                {"auth": auth_v, "request": request_v, "doc": doc, BUDGET: [limit, limit]}
            )
        return lambda doc: allows({"auth": auth_v, "request": request_v, "doc": doc})

    # -- SQL -----------------------------------------------------------------------------
    def _constant(self, act: Activation) -> Callable[[Node], Any]:
        def constant(node: Node) -> Any:
            if isinstance(node, Lit):
                return node.value
            fn = self._consts.get(id(node))
            if fn is None:
                try:
                    fn = compile_node(node, self._env)
                except Unsupported as e:
                    raise NotSQL(str(e)) from e
                self._consts[id(node)] = fn
            return fn(act)

        return constant

    def to_predicate(self, auth: Mapping[str, Any] | None, request: RequestInfo | None) -> Predicate:
        """The rule with `auth` and `request` bound, as SQL plus (when needed) a per-row check."""
        if self.uses_request or isinstance(auth, MutableMapping):
            return self._predicate(auth, request)
        key = id(auth) if self.uses_auth else 0
        limit = self._limit(request)
        found = self._predicates.get(key)
        if found is not None and (found[0] is auth or not self.uses_auth) and found[1] == limit:
            return found[2]
        predicate = self._predicate(auth, None, limit)
        if len(self._predicates) >= _MAX_PREDICATES:
            self._predicates.clear()
        self._predicates[key] = (auth, limit, predicate)
        return predicate

    def _predicate(
        self, auth: Mapping[str, Any] | None, request: RequestInfo | None, limit: int | None = None
    ) -> Predicate:
        act: dict[str, Any] = {"auth": auth_value(auth), "request": request_value(request)}
        if limit is None:
            limit = self._limit(request)
        env = SqlEnv(
            self._fields,
            self._constant(act),
            tables=self._env.tables,
            outer=self.collection.name if self.lookups else None,
        )
        sqls: list[str] = []
        params: list[Any] = []
        rest: list[int] = []
        for i, part in enumerate(self.parts):
            try:
                expr = compile_bool(part, env)
            except NotSQL:
                rest.append(i)
                continue
            sqls.append(expr.sql)
            params.extend(expr.params)
        sql = " AND ".join(sqls) if sqls else None
        if not rest:
            return Predicate(sql, tuple(params))
        return Predicate(sql, tuple(params), self._row_check(act, rest, limit))

    def _row_check(
        self, act: dict[str, Any], rest: list[int], limit: int
    ) -> Callable[[dict[str, Any]], bool]:
        fns = [self.part_fns[i] for i in rest] if self.part_fns is not None else [self._fn]
        if not self.budgeted:

            def check(doc: dict[str, Any]) -> bool:
                row = {**act, "doc": doc}
                try:
                    return all(fn(row) is True for fn in fns)
                except CelEvalError as e:
                    self._log_error(row, e)
                    return False

            return check
        meter_of = LOOP_CHECK_WORK.get

        def budgeted_check(doc: dict[str, Any]) -> bool:
            # One budget per document, shared by the parts checked in Python; on the loop
            # (read_small) the documents' work adds up, and past one budget the read
            # moves to a reader thread instead of holding the loop row after row.
            budget = [limit, limit]
            row = {**act, "doc": doc, BUDGET: budget}
            try:
                passed = all(fn(row) is True for fn in fns)
            except CelEvalError as e:
                self._log_error(row, e)
                passed = False
            meter = meter_of()
            if meter is not None:
                meter[0] += limit - budget[0]
                if meter[0] > limit:
                    raise LoopWorkExceeded(f"{self.label}: row checks past {limit:,} steps on the loop")
            return passed

        return budgeted_check

    # -- realtime routing ----------------------------------------------------------------
    def equality_constraints(
        self, auth: Mapping[str, Any] | None, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        """{field: value} that every doc the rule admits has (JSON-level values)."""
        act = {"auth": auth_value(auth), "request": request_value(request)}
        constant = self._constant(act)
        out: dict[str, Any] = {}
        for part in self.parts:
            found = self._equality(part, constant)
            if found is not None:
                out[found[0]] = found[1]
        return out

    def _equality(self, part: Node, constant: Callable[[Node], Any]) -> tuple[str, Any] | None:
        field = _doc_field(part)
        if field is not None and self._fields.get(field) is FieldType.BOOL:
            return field, True
        if not isinstance(part, Op) or part.op != "==" or part.right is None:
            return None
        for side, other in ((part.left, part.right), (part.right, part.left)):
            name = _doc_field(side)
            if name is None or uses_doc(other) or self._fields.get(name) is FieldType.JSON:
                continue
            try:
                value = constant(other)
            except (CelEvalError, NotSQL):
                return None
            return _stored_form(name, value, self._fields)
        return None


def _doc_field(node: Node) -> str | None:
    if isinstance(node, Select) and not node.test_only and isinstance(node.operand, Ident):
        return node.field if node.operand.name == "doc" else None
    return None


def _stored_form(name: str, value: Any, fields: Mapping[str, FieldType]) -> tuple[str, Any] | None:
    """The JSON-level value a decoded doc holds when `doc.name == value`, if it is one value."""
    t = fields.get(name)
    if value is None or isinstance(value, bool):
        return (name, value) if value is None or t is FieldType.BOOL else None
    if isinstance(value, datetime) and t is FieldType.TIMESTAMP and value.microsecond % 1000 == 0:
        return name, format_timestamp(value)
    if isinstance(value, str) and t in (FieldType.UUID, FieldType.STRING, FieldType.TEXT):
        return name, value
    if isinstance(value, int) and t is FieldType.INT:
        return name, int(value)
    return None
