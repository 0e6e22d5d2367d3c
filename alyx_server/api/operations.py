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
from alyx_server.rules.lookups import reading
from alyx_server.schema.model import FieldType
from alyx_server.storage.files import FileEdit, apply_edit, file_entries
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
    "split_file_edits",
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
    with reading(conn):
        allowed = policy.can_read(view.collection, auth, request, doc)
    if not allowed:
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
    issues += _file_value_issues(view, body)
    if issues:
        listed = "; ".join(i.message for i in issues)
        raise ValidationError(f"invalid {view.name} document: {listed}", issues)


def _file_value_issues(view: CollectionView, body: Mapping[str, Any]) -> list[FieldIssue]:
    # File metadata comes only from what the server stored (api/uploads.py): a client that
    # could write it could point a document at another document's file.
    issues = []
    for key, value in body.items():
        fc = view.codec.fields.get(key)
        if fc is not None and fc.field.type is FieldType.FILE and value is not None and value != []:
            message = (
                f"{key} is a file field: upload files with multipart/form-data, or send null to clear it"
            )
            issues.append(FieldIssue(key, "invalid_type", message))
    return issues


def split_file_edits(
    view: CollectionView, body: Mapping[str, Any], edits: Mapping[str, FileEdit] | None = None
) -> tuple[dict[str, Any], dict[str, FileEdit]]:
    """The body without its file edits, and the edits of each file field: the uploads
    (`edits`, from a multipart body), `<field>-` names to remove, `<field>: null` or `[]`
    to clear. Other values of file fields stay in the body, where check_input_keys
    refuses them."""
    out: dict[str, Any] = {}
    found = {
        n: FileEdit(e.replace, list(e.append), list(e.remove), e.clear) for n, e in (edits or {}).items()
    }
    for key, value in body.items():
        name = key[:-1] if key.endswith("-") else key
        fc = view.codec.fields.get(name)
        if fc is None or fc.field.type is not FieldType.FILE:
            out[key] = value
            continue
        edit = found.setdefault(name, FileEdit())
        if key.endswith("-"):
            names = value if isinstance(value, list) else [value]
            if not all(isinstance(n, str) for n in names):
                message = f"{key} takes the names of files to remove"
                raise ValidationError(message, [FieldIssue(key, "invalid_type", message)])
            edit.remove.extend(names)
        elif value is None or value == []:
            edit.clear = True
        else:
            out[key] = value
    return out, found


def prepare_create(
    view: CollectionView,
    body: Mapping[str, Any],
    access: Access,
    clock: Clock,
    edits: Mapping[str, FileEdit] | None = None,
) -> Step:
    """`edits`: the uploads of a multipart body, by file field (api/uploads.py)."""
    body, found = split_file_edits(view, body, edits)
    check_input_keys(view, body)
    for name, edit in found.items():
        value, _ = apply_edit(view.codec.fields[name].field, None, edit)
        if value is not None or name not in body:
            body[name] = value
    doc = view.codec.with_defaults(body, clock)
    policy, auth, request = access
    collection = view.collection

    def step(conn: sqlite3.Connection) -> tuple[int, Any]:
        # In the write transaction: a rule's lookups (get, exists) read what it holds.
        with reading(conn):
            policy.check_create(collection, auth, request, doc)
        return 201, insert_doc(conn, collection, doc, clock=clock)

    return step


def prepare_update(
    view: CollectionView,
    doc_id: Any,
    body: Mapping[str, Any],
    access: Access,
    clock: Clock,
    edits: Mapping[str, FileEdit] | None = None,
    released: list[str] | None = None,
) -> Step:
    """`edits`: the uploads of a multipart body; `released` receives the storage keys of
    the files the update replaces or removes, for the caller to delete after the commit."""
    body, found = split_file_edits(view, body, edits)
    check_input_keys(view, body)
    policy, auth, request = access
    collection = view.collection

    def step(conn: sqlite3.Connection) -> tuple[int, Any]:
        stored = stored_doc(conn, view, doc_id, access)
        values = dict(body)
        dropped: list[str] = []
        for name, edit in found.items():
            values[name], keys = apply_edit(view.codec.fields[name].field, stored.get(name), edit)
            dropped += keys
        with reading(conn):
            policy.check_update(collection, auth, request, stored, values)
        doc = update_doc(conn, collection, doc_id, values, clock=clock)
        if released is not None:
            released.extend(dropped)
        return 200, doc

    return step


def prepare_delete(
    view: CollectionView, doc_id: Any, access: Access, released: list[str] | None = None
) -> Step:
    """`released` receives the storage keys of the doc's files, to delete after the commit."""
    policy, auth, request = access
    collection = view.collection
    file_fields = [f.name for f in collection.fields if f.type is FieldType.FILE]

    def step(conn: sqlite3.Connection) -> tuple[int, Any]:
        stored = stored_doc(conn, view, doc_id, access)
        with reading(conn):
            policy.check_delete(collection, auth, request, stored)
        delete_doc(conn, collection, doc_id)
        if released is not None:
            for name in file_fields:
                released.extend(str(x["key"]) for x in file_entries(stored.get(name)) if "key" in x)
        return 204, None

    return step


def prepare_get(view: CollectionView, doc_id: Any, access: Access) -> Step:
    def step(conn: sqlite3.Connection) -> tuple[int, Any]:
        return 200, public(view, stored_doc(conn, view, doc_id, access))

    return step
