"""`CelAccess`: the AccessPolicy of schema.yaml's CEL rules (SPEC §9).

    admins            bypass every rule
    no rule           only admins: anyone else gets 403 naming the missing rule (a list,
                      a get whether or not the doc exists, a subscribe, a write)
    read              lists: the rule as SQL (and per-row checks) with auth and request
                      bound; get, update, delete: the stored doc must pass (else 404)
    create            `doc` is the document about to be stored, defaults applied
    update            `doc` is the stored document, `request.body` the changes
    delete            `doc` is the stored document
    an error          denies, and is logged with collection, action and document id

Rules are compiled when the schema loads (`compile_schema_rules`, called by the app
factory, stops the start on a bad rule); a schema installed later (after a migration)
is compiled on first use.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

from alyx_server.db.query import Predicate
from alyx_server.errors import Forbidden
from alyx_server.rules.compiled import CompiledRule
from alyx_server.rules.load import SchemaRules, compile_rule, compile_where, schema_tables
from alyx_server.rules.policy import USER_PROFILE_FIELDS, Auth, DocCheck, RequestInfo, doc_fields_in
from alyx_server.schema.model import Collection

__all__ = ["CelAccess", "is_admin", "where_predicate"]


def is_admin(auth: Auth | None) -> bool:
    """Admin-role callers bypass rules (an AuthContext says so itself; a mapping by its role)."""
    if auth is None:
        return False
    flag = getattr(auth, "is_admin", None)
    if isinstance(flag, bool):
        return flag
    return auth.get("role") == "admin"


class CelAccess:
    """AccessPolicy enforcing the CEL rules of each collection; see the module docstring."""

    def __init__(self, compiled: SchemaRules | None = None) -> None:
        self._lock = threading.Lock()
        # id(collection) -> (collection, {action: rule or None}); the entry keeps the
        # collection alive, so an id is never reused while cached.
        self._cache: dict[int, tuple[Collection, dict[str, CompiledRule | None]]] = {}
        self._tables = schema_tables(compiled.schema) if compiled is not None else None
        if compiled is not None:
            for c in compiled.schema.collections:
                rules = {a: compiled.get(c.name, a) for a in ("create", "read", "update", "delete")}
                self._cache[id(c)] = (c, rules)

    def rule(self, collection: Collection, action: str) -> CompiledRule | None:
        """The compiled rule of `action` on `collection` (None: no rule, admins only)."""
        entry = self._cache.get(id(collection))
        if entry is None or entry[0] is not collection:
            with self._lock:
                rules: dict[str, CompiledRule | None] = {}
                for a in ("create", "read", "update", "delete"):
                    text = collection.rules.get(a)
                    tables = self._tables
                    if tables is not None and tables.get(collection.name) is not collection:
                        tables = None
                    rules[a] = None if text is None else compile_rule(collection, a, text, tables)
                if len(self._cache) > 256:
                    self._cache.clear()
                entry = (collection, rules)
                self._cache[id(collection)] = entry
        return entry[1][action]

    # -- reads ---------------------------------------------------------------------------
    def read_predicate(
        self, collection: Collection, auth: Auth | None, request: RequestInfo
    ) -> Predicate | None:
        """The read rule for a list; a collection without one refuses non-admins (403),
        rather than answering an empty list that looks like "no documents"."""
        if is_admin(auth):
            return None
        rule = self.rule(collection, "read")
        if rule is None:
            raise _no_read_rule(collection)
        return rule.to_predicate(auth, request)

    def can_read(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, doc: Mapping[str, Any]
    ) -> bool:
        """Whether the caller may see `doc`; no read rule refuses non-admins (403)."""
        if is_admin(auth):
            return True
        rule = self.rule(collection, "read")
        if rule is None:
            raise _no_read_rule(collection)
        return rule.allows(auth, request, doc)

    # -- writes --------------------------------------------------------------------------
    def _check(
        self,
        collection: Collection,
        action: str,
        auth: Auth | None,
        request: RequestInfo,
        doc: Mapping[str, Any],
    ) -> None:
        if is_admin(auth):
            return
        rule = self.rule(collection, action)
        if rule is None:
            raise Forbidden(f"only admins may {action} {collection.name} documents (no {action} rule)")
        if not rule.allows(auth, request, doc):
            raise Forbidden(f"the {action} rule of {collection.name} refuses this request")

    def check_create(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, doc: Mapping[str, Any]
    ) -> None:
        self._check(collection, "create", auth, request, doc)

    def check_update(
        self,
        collection: Collection,
        auth: Auth | None,
        request: RequestInfo,
        stored: Mapping[str, Any],
        changes: Mapping[str, Any],
    ) -> None:
        self._check(collection, "update", auth, dataclasses.replace(request, body=changes), stored)

    def check_delete(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, stored: Mapping[str, Any]
    ) -> None:
        self._check(collection, "delete", auth, request, stored)

    def user_fields(self, auth: Auth | None, user_id: Any) -> tuple[str, ...]:
        """`{id, metadata}` of a user; `email` too for the user themself and for admins."""
        if auth is not None and (is_admin(auth) or auth.get("id") == user_id):
            return (*USER_PROFILE_FIELDS, "email")
        return USER_PROFILE_FIELDS

    # -- realtime ------------------------------------------------------------------------
    def read_check(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, shared: list[int] | None
    ) -> DocCheck | bool:
        """The read rule bound to `auth` (False without a rule: only admins, who bypass it)."""
        rule = self.rule(collection, "read")
        if rule is None:
            return False
        return rule.doc_check(auth, request, shared)

    def read_fields(self, collection: Collection) -> frozenset[str] | None:
        """The `doc.<field>` names of the read rule (none without a rule)."""
        rule = self.rule(collection, "read")
        return frozenset() if rule is None else doc_fields_in(rule.text)

    def read_lookups(self, collection: Collection) -> frozenset[str]:
        """The collections the read rule looks up (get, exists): realtime re-runs a
        subscription's query when one of them changes."""
        rule = self.rule(collection, "read")
        return frozenset() if rule is None else rule.lookups

    def read_routes(self, collection: Collection, auth: Auth | None) -> Mapping[str, Any]:
        """The read rule's `doc.<field> == <value>` equalities, bound to `auth`."""
        rule = self.rule(collection, "read")
        return {} if rule is None else rule.equality_constraints(auth)


def _no_read_rule(collection: Collection) -> Forbidden:
    name = collection.name
    return Forbidden(
        f"{name} has no read rule: only admins may read it; add rules.read to {name} in schema.yaml"
    )


_WHERE_CACHE: dict[tuple[int, str], tuple[Collection, CompiledRule]] = {}
_WHERE_LOCK = threading.Lock()


def where_predicate(collection: Collection, text: str, auth: Auth | None, request: RequestInfo) -> Predicate:
    """A REST `where=` expression as a list predicate, reading only the collection's
    non-internal fields (`load.visible_fields`); compiled once per collection and text."""
    key = (id(collection), text)
    entry = _WHERE_CACHE.get(key)
    if entry is None or entry[0] is not collection:
        rule = compile_where(collection, text)
        with _WHERE_LOCK:
            if len(_WHERE_CACHE) >= 512:
                _WHERE_CACHE.clear()
            _WHERE_CACHE[key] = (collection, rule)
        entry = (collection, rule)
    return entry[1].to_predicate(auth, request)
