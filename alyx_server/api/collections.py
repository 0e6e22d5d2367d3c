"""`/api/collections/{c}` and `/api/collections/{c}/{id}`: list, create, get, update, delete.

Gets are point reads by primary key and run on the event-loop thread (`Database.read_now`);
lists may scan and count, so they run on the reader pool; writes go through the group-
committing writer. Responses are encoded once with orjson.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aiohttp import web

from alyx_server.api.automation import acting, before_write
from alyx_server.api.expand import expand_docs
from alyx_server.api.listing import PLAIN, Shape, parse_list, parse_shape
from alyx_server.api.operations import (
    Access,
    prepare_create,
    prepare_delete,
    prepare_update,
    public,
    stored_doc,
)
from alyx_server.api.pipeline import CLIENT_IP, json_response
from alyx_server.api.runtime import RUNTIME, CollectionView, Runtime
from alyx_server.api.uploads import receive, release
from alyx_server.db import ListQuery, list_docs
from alyx_server.rules import Auth, RequestInfo
from alyx_server.rules.access import where_predicate

__all__ = ["AUTH", "access_for", "add_routes", "caller"]

AUTH: web.RequestKey[Auth] = web.RequestKey("alyx.auth")
"""Request key under which authentication (when present) puts the caller."""


def caller(request: web.Request) -> Auth | None:
    return request.get(AUTH)


_NO_QUERY: Mapping[str, str] = MappingProxyType({})


def access_for(rt: Runtime, request: web.Request, body: Any = None) -> Access:
    # `request.query` parses the query string into a new MultiDict on every call: only
    # when there is one.
    query = request.query if request.query_string else _NO_QUERY
    info = RequestInfo(
        request.method, request[CLIENT_IP], rt.clock.now(), query, body,
        eval_budget=rt.settings.rules.eval_budget,
    )  # fmt: skip
    return rt.policy, caller(request), info


def _shaped(doc: dict[str, Any], shape: Shape) -> dict[str, Any]:
    if shape.fields is None:
        return doc
    out = {n: doc[n] for n in shape.fields}
    if "expand" in doc and shape.expand:
        out["expand"] = doc["expand"]
    return out


async def get_document(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    db = rt.ready_db()
    view = rt.catalog.get(request.match_info["collection"])
    doc_id = request.match_info["id"]
    shape = parse_shape(view, request.query) if request.query_string else PLAIN
    access = access_for(rt, request)

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        doc = public(view, stored_doc(conn, view, doc_id, access))
        if shape.expand:
            expand_docs(conn, rt.catalog, view, [doc], shape.expand, access)
        return _shaped(doc, shape)

    return json_response(db.read_now(_traced(rt, read)))


async def list_documents(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    db = rt.ready_db()
    view = rt.catalog.get(request.match_info["collection"])
    access = access_for(rt, request)
    policy, auth, info = access
    query, shape = parse_list(
        view,
        request.query,
        policy.read_predicate(view.collection, auth, info),
        lambda text: where_predicate(view.collection, text, auth, info),
    )

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        return _run_list(conn, rt, view, query, shape, access)

    return json_response(await db.read_small(_traced(rt, read)))


def _run_list(
    conn: sqlite3.Connection,
    rt: Runtime,
    view: CollectionView,
    query: ListQuery,
    shape: Shape,
    access: Access,
) -> dict[str, Any]:
    own = bool(shape.expand) and not conn.in_transaction
    if own:
        conn.execute("BEGIN")  # the page, its count and the expansions read one snapshot
    try:
        result = list_docs(conn, query)
        docs = result.docs
        if shape.expand:
            expand_docs(conn, rt.catalog, view, docs, shape.expand, access)
            if shape.hidden:
                for doc in docs:
                    for name in shape.hidden:
                        del doc[name]
    finally:
        if own:
            conn.execute("COMMIT")
    out: dict[str, Any] = {"docs": docs, "limit": result.limit, "offset": result.offset}
    if result.total is not None:
        out["total"] = result.total
    return out


def _traced(rt: Runtime, fn: Any) -> Any:
    """`fn`, with every SQL statement it runs reported to `rt.sql_trace` (tests only)."""
    trace = rt.sql_trace
    if trace is None:
        return fn

    def traced(conn: sqlite3.Connection) -> Any:
        conn.set_trace_callback(trace)
        try:
            return fn(conn)
        finally:
            conn.set_trace_callback(None)

    return traced


async def create_document(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    db = rt.ready_db()
    view = rt.catalog.get(request.match_info["collection"])
    async with receive(request, view) as upload:
        body = await before_write(request.app, view, "create", upload.body, caller(request))
        step = prepare_create(view, body, access_for(rt, request, body), rt.clock, upload.edits)
        status, doc = await db.write(acting(request.app, view, step, caller(request)))
    return json_response(doc, status)


async def update_document(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    db = rt.ready_db()
    view = rt.catalog.get(request.match_info["collection"])
    doc_id = request.match_info["id"]
    async with receive(request, view) as upload:
        body = await before_write(request.app, view, "update", upload.body, caller(request), doc_id)
        access = access_for(rt, request, body)
        step = prepare_update(view, doc_id, body, access, rt.clock, upload.edits, upload.released)
        status, doc = await db.write(acting(request.app, view, step, caller(request)))
    return json_response(doc, status)


async def delete_document(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    db = rt.ready_db()
    view = rt.catalog.get(request.match_info["collection"])
    released: list[str] = []
    step = prepare_delete(view, request.match_info["id"], access_for(rt, request), released)
    await db.write(acting(request.app, view, step, caller(request)))
    await release(request, released)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    base = "/api/collections/{collection}"
    app.router.add_get(base, list_documents)
    app.router.add_post(base, create_document)
    app.router.add_get(base + "/{id}", get_document)
    app.router.add_patch(base + "/{id}", update_document)
    app.router.add_delete(base + "/{id}", delete_document)
