"""`AccessPolicy`: the one place where read and write checks plug into Alyx.

Every route that touches documents asks the policy, with the caller (`auth`, None when
anonymous) and a plain description of the request (`RequestInfo`, no web framework
types), before it answers:

    read_predicate(collection, auth, request)          lists and expansions: a Predicate
                                                       added to the query, or None for all
    can_read(collection, auth, request, doc)           get, update, delete: may the caller
                                                       see this stored doc? (no: 404)
    check_create(collection, auth, request, doc)       raise Forbidden to refuse (403)
    check_update(collection, auth, request, stored, changes)
    check_delete(collection, auth, request, stored)
    user_fields(auth, user_id)                         what an expanded `_alyx_users`
                                                       reference shows of that user

Realtime re-checks the read decision on every changed doc for every subscriber, so it
asks three more questions once per subscription, to do that work cheaply:

    read_check(collection, auth, request, shared)      the read decision bound to the
                                                       caller: a per-doc check, or a bool
                                                       when it does not read the doc
    read_fields(collection)                            the doc fields that decision reads
                                                       (None: unknown, any field)
    read_routes(collection, auth)                      {field: value} every doc the caller
                                                       may read has (for the live index)

Reads of the stored doc and the write checks run inside the write transaction, on the
writer thread, so a policy must be thread-safe and must not block on I/O. `doc` always
holds every field, `internal` ones included; the API removes those before answering.

`read_predicate` and `can_read` raise Forbidden (or Unauthorized) when the caller may
read nothing of the collection, whatever the doc (CelAccess: no read rule). Routes then
answer 403 rather than an empty list or a 404; a get whose doc does not exist asks
`read_predicate` for that refusal, so the answer never tells whether the doc exists.
Expansions show a reference into such a collection as null.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from alyx_server.db.query import Predicate
from alyx_server.rules.budget import DEFAULT_EVAL_BUDGET
from alyx_server.schema.model import Collection

__all__ = [
    "USER_PROFILE_FIELDS",
    "AccessPolicy",
    "Auth",
    "DocCheck",
    "OpenAccess",
    "RequestInfo",
    "doc_fields_in",
]

Auth = Mapping[str, Any]
"""The signed-in caller (`{id, email, role, verified, metadata, app_metadata}`)."""

USER_PROFILE_FIELDS: tuple[str, ...] = ("id", "metadata")
"""What anyone sees of a user through an expanded `_alyx_users.id` reference (SPEC §6)."""

DocCheck = Callable[[Mapping[str, Any]], bool]
"""A decision on one doc, with the caller already bound."""

_DOC_FIELD = re.compile(r"\bdoc\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_DOC_ANY = re.compile(r"\bdoc\b")


def doc_fields_in(text: str | None) -> frozenset[str] | None:
    """The `doc.<field>` names a CEL text reads; None when it uses `doc` otherwise."""
    if not text:
        return frozenset()
    found = _DOC_FIELD.findall(text)
    if len(_DOC_ANY.findall(text)) != len(found):
        return None
    return frozenset(found)


@dataclass(slots=True)
class RequestInfo:
    """The request as rules see it (`request` in CEL): method, client IP, time, query, body.

    Built once per request and never changed; not a frozen dataclass, whose `__init__`
    (one `object.__setattr__` per field) costs four times as much on every request.
    """

    method: str
    ip: str
    time: datetime
    query: Mapping[str, str]
    body: Mapping[str, Any] | None = None
    # Steps one rule or `where` evaluation may take (rules.eval_budget; budget.EvalBudget).
    eval_budget: int = DEFAULT_EVAL_BUDGET


class AccessPolicy(Protocol):
    """Decides what a caller may read and write; see the module docstring."""

    def read_predicate(
        self, collection: Collection, auth: Auth | None, request: RequestInfo
    ) -> Predicate | None: ...

    def can_read(
        self,
        collection: Collection,
        auth: Auth | None,
        request: RequestInfo,
        doc: Mapping[str, Any],
    ) -> bool: ...

    def check_create(
        self,
        collection: Collection,
        auth: Auth | None,
        request: RequestInfo,
        doc: Mapping[str, Any],
    ) -> None: ...

    def check_update(
        self,
        collection: Collection,
        auth: Auth | None,
        request: RequestInfo,
        stored: Mapping[str, Any],
        changes: Mapping[str, Any],
    ) -> None: ...

    def check_delete(
        self,
        collection: Collection,
        auth: Auth | None,
        request: RequestInfo,
        stored: Mapping[str, Any],
    ) -> None: ...

    def user_fields(self, auth: Auth | None, user_id: Any) -> tuple[str, ...]: ...

    def read_check(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, shared: list[int] | None
    ) -> DocCheck | bool:
        """The read decision for `auth`, bound once per subscription; `shared` is the
        connection's evaluation budget `[left, limit]` the check spends from."""
        ...

    def read_fields(self, collection: Collection) -> frozenset[str] | None:
        """The doc fields the read decision reads (None: unknown, so any change counts)."""
        ...

    def read_routes(self, collection: Collection, auth: Auth | None) -> Mapping[str, Any]:
        """Equalities every doc `auth` may read satisfies ({}: none known)."""
        ...


class OpenAccess:
    """Everyone may read and write everything: the policy until accounts and rules exist."""

    def read_predicate(
        self, collection: Collection, auth: Auth | None, request: RequestInfo
    ) -> Predicate | None:
        return None

    def can_read(
        self,
        collection: Collection,
        auth: Auth | None,
        request: RequestInfo,
        doc: Mapping[str, Any],
    ) -> bool:
        return True

    def check_create(
        self,
        collection: Collection,
        auth: Auth | None,
        request: RequestInfo,
        doc: Mapping[str, Any],
    ) -> None:
        return None

    def check_update(
        self,
        collection: Collection,
        auth: Auth | None,
        request: RequestInfo,
        stored: Mapping[str, Any],
        changes: Mapping[str, Any],
    ) -> None:
        return None

    def check_delete(
        self,
        collection: Collection,
        auth: Auth | None,
        request: RequestInfo,
        stored: Mapping[str, Any],
    ) -> None:
        return None

    def user_fields(self, auth: Auth | None, user_id: Any) -> tuple[str, ...]:
        return USER_PROFILE_FIELDS

    # -- realtime ------------------------------------------------------------------------
    # Subclasses that narrow `can_read` keep a correct answer: the check then asks
    # `can_read` per doc and the fields it reads are unknown.
    def read_check(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, shared: list[int] | None
    ) -> DocCheck | bool:
        if type(self).can_read is OpenAccess.can_read:
            return True
        return lambda doc: self.can_read(collection, auth, request, doc)

    def read_fields(self, collection: Collection) -> frozenset[str] | None:
        if type(self).can_read is OpenAccess.can_read:
            return frozenset()
        return None

    def read_routes(self, collection: Collection, auth: Auth | None) -> Mapping[str, Any]:
        return {}
