"""The document operations behind both the REST routes and `POST /api/batch`.

Each `prepare_*` function checks what it can on the event loop (input keys, the create
rule) and returns a step: a function of the writer connection that runs inside the
write transaction and returns `(status, body)`. Reads of the stored doc and the update
and delete rules run in that same transaction, so nothing can change in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from alyx_server.api.runtime import CollectionView
from alyx_server.db import delete_doc, get_doc, insert_doc, update_doc
from alyx_server.errors import AlyxError, FieldIssue, NotFound, ValidationError
from alyx_server.rules import AccessPolicy, Auth, RequestInfo
from alyx_server.tools.timestamps import Clock

__all__ = [
    "Access",
    "Step",
    "all_or_nothing",
    "not_found",
    "prepare_create",
    "prepare_delete",
    "prepare_get",
    "prepare_update",
    "public",
    "stored_doc",
]

Step = Callable[[sqlite3.Connection], tuple[int, Any]]
Access = tuple[AccessPolicy, Auth | None, RequestInfo]


def all_or_nothing(
    steps: list[Step], failed: Callable[[int, AlyxError], AlyxError]
) -> Callable[[sqlite3.Connection], list[dict[str, Any]]]:
    """One write running `steps` in order: their statuses and bodies, or `failed(index, error)`
    raised for the first that fails (the write's savepoint then undoes them all)."""

    def run_all(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        results = []
        for index, step in enumerate(steps):
            try:
                status, body = step(conn)
            except AlyxError as e:
                raise failed(index, e) from e
            results.append({"status": status, "body": body})
        return results

    return run_all


def not_found(view: CollectionView, doc_id: Any) -> NotFound:
    return NotFound(f"no document {doc_id!r} in {view.name}")


def public(view: CollectionView, doc: dict[str, Any]) -> dict[str, Any]:
    """The doc without its `internal` fields."""
    return view.codec.project(doc, None) if view.has_internal else doc


def stored_doc(conn: sqlite3.Connection, view: CollectionView, doc_id: Any, access: Access) -> dict[str, Any]:
    """The stored doc (internal fields included) if the caller may read it, else 404.

    A caller who may read nothing of the collection (no read rule) gets the policy's 403
    whether or not the doc exists, so the answer does not tell which ids exist.
    """
    doc = get_doc(conn, view.collection, doc_id, internal=True)
    policy, auth, request = access
    if doc is None:
        policy.read_predicate(view.collection, auth, request)
        raise not_found(view, doc_id)
    if not policy.can_read(view.collection, auth, request, doc):
        raise not_found(view, doc_id)
    return doc


def check_input_keys(view: CollectionView, body: Mapping[str, Any]) -> None:
    """Refuse `internal` fields in input like unknown ones (clients never see them), and
    fields only the server writes (`default: now`, `onUpdate: now`) as `read_only`."""
    issues = view.codec.server_managed_issues(body) if view.codec.server_managed else []
    if view.has_internal:
        issues += [
            FieldIssue(str(k), "unknown_field", view.codec.unknown_field_message(str(k)))
            for k in body
            if k not in view.public_names and k in view.codec.fields
        ]
    if issues:
        listed = "; ".join(i.message for i in issues)
        raise ValidationError(f"invalid {view.name} document: {listed}", issues)


def prepare_create(view: CollectionView, body: Mapping[str, Any], access: Access, clock: Clock) -> Step:
    check_input_keys(view, body)
    doc = view.codec.with_defaults(body, clock)
    policy, auth, request = access
    policy.check_create(view.collection, auth, request, doc)
    collection = view.collection

    def step(conn: sqlite3.Connection) -> tuple[int, Any]:
        return 201, insert_doc(conn, collection, doc, clock=clock)

    return step


def prepare_update(
    view: CollectionView, doc_id: Any, body: Mapping[str, Any], access: Access, clock: Clock
) -> Step:
    check_input_keys(view, body)
    policy, auth, request = access
    collection = view.collection

    def step(conn: sqlite3.Connection) -> tuple[int, Any]:
        stored = stored_doc(conn, view, doc_id, access)
        policy.check_update(collection, auth, request, stored, body)
        return 200, update_doc(conn, collection, doc_id, body, clock=clock)

    return step


def prepare_delete(view: CollectionView, doc_id: Any, access: Access) -> Step:
    policy, auth, request = access
    collection = view.collection

    def step(conn: sqlite3.Connection) -> tuple[int, Any]:
        stored = stored_doc(conn, view, doc_id, access)
        policy.check_delete(collection, auth, request, stored)
        delete_doc(conn, collection, doc_id)
        return 204, None

    return step


def prepare_get(view: CollectionView, doc_id: Any, access: Access) -> Step:
    def step(conn: sqlite3.Connection) -> tuple[int, Any]:
        return 200, public(view, stored_doc(conn, view, doc_id, access))

    return step
