"""Reference expansion: `expand=author_id` puts the referenced doc under `expand.author_id`.

One query per expanded field, whatever the number of docs: the distinct referenced keys
travel as one JSON array parameter (`IN (SELECT value FROM json_each(?))`), so the SQL
text is the same for one doc or a thousand. Expanded docs obey the access policy's read
predicate; one the caller may not read (or whose collection the caller may not read at
all), or that does not exist, expands to null. A
reference to `_alyx_users.id` expands to the profile the policy allows (`{id, metadata}`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from alyx_server.api.runtime import Catalog, CollectionView
from alyx_server.errors import Forbidden, Unauthorized
from alyx_server.rules import AccessPolicy, Auth, RequestInfo
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import USERS_TABLE, Reference

__all__ = ["expand_docs"]

_USER_COLUMNS = ("id", "metadata", "email")
_USERS_SQL = f"SELECT id, metadata, email FROM {USERS_TABLE} WHERE id IN (SELECT value FROM json_each(?))"


def expand_docs(
    conn: sqlite3.Connection,
    catalog: Catalog,
    view: CollectionView,
    docs: Sequence[dict[str, Any]],
    names: Sequence[str],
    access: tuple[AccessPolicy, Auth | None, RequestInfo],
) -> None:
    """Add `expand: {name: doc | None}` to each of `docs` (in place)."""
    for name in names:
        keys = list({d[name] for d in docs if d.get(name) is not None})
        ref = view.references[name]
        found = _fetch(conn, catalog, ref, keys, access) if keys else {}
        for doc in docs:
            value = doc.get(name)
            target = doc.get("expand")
            if not isinstance(target, dict):
                target = doc["expand"] = {}
            target[name] = None if value is None else found.get(value)


def _fetch(
    conn: sqlite3.Connection,
    catalog: Catalog,
    ref: Reference,
    keys: list[Any],
    access: tuple[AccessPolicy, Auth | None, RequestInfo],
) -> dict[Any, dict[str, Any]]:
    if ref.collection == USERS_TABLE:
        return _fetch_users(conn, keys, access)
    target = catalog.find(ref.collection)
    if target is None:
        return {}
    policy, auth, request = access
    codec = target.codec
    try:
        predicate = policy.read_predicate(target.collection, auth, request)
    except (Forbidden, Unauthorized):
        return {}  # a collection the caller may not read at all: its references show null
    sql = f"SELECT {codec.columns_sql} FROM {codec.table} WHERE {quote(ref.field)} IN " + (
        "(SELECT value FROM json_each(?))"
    )
    params: tuple[Any, ...] = (orjson.dumps(keys).decode(),)
    if predicate is not None and predicate.sql:
        sql += f" AND ({predicate.sql})"
        params += tuple(predicate.params)
    check = predicate.check if predicate is not None else None
    out: dict[Any, dict[str, Any]] = {}
    for row in conn.execute(sql, params):
        doc = codec.decode(row, internal=True)
        if check is not None and not check(doc):
            continue
        out[doc[ref.field]] = codec.project(doc, None) if target.has_internal else doc
    return out


def _fetch_users(
    conn: sqlite3.Connection, keys: list[Any], access: tuple[AccessPolicy, Auth | None, RequestInfo]
) -> dict[Any, dict[str, Any]]:
    policy, auth, _request = access
    out: dict[Any, dict[str, Any]] = {}
    for row in conn.execute(_USERS_SQL, (orjson.dumps(keys).decode(),)):
        user = dict(zip(_USER_COLUMNS, row, strict=True))
        user["metadata"] = orjson.loads(user["metadata"]) if user["metadata"] else {}
        shown = policy.user_fields(auth, user["id"])
        out[user["id"]] = {k: user[k] for k in shown if k in user}
    return out
