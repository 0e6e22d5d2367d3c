"""The internal API that functions call, versioned, on a Unix socket of its own.

    POST /internal/v1/db/query  {collection, id}                    -> {doc}
                                {collection, filter?, sort?, limit?, offset?}
                                                                    -> {docs, total, limit, offset}
    POST /internal/v1/db/exec   {collection, method, id?, body?}    -> {status, body}
    POST /internal/v1/db/tx     {operations: [{method, collection, id?, body?}, ...]}
                                                                    -> {results: [{status, body}]}
    POST /internal/v1/jobs/enqueue  {name, payload?, delay?, dedupe_key?} -> {id, created}
    POST /internal/v1/ping      {}                                  -> {ok: true}

`ping` needs no token and touches nothing: an executor calls it at start, before it says
it is ready, so that its first real call does not pay for loading and compiling the
client's code (see `runtimes/node/executor.mjs`). Every other call carries
`Authorization: Bearer <token>`, the token of one running invocation
(`functions.tokens`); once the invocation ends the token answers 401 INVALID_TOKEN.
Calls run as the function's caller under the access policy, or past it when the
function is `privileged`. `filter` is an object `{"field": value}` or `{"field":
{"$op": value}}` (the operators of live queries) or a list of REST `field:op:value`.
The socket lives in a private temporary folder, never in the data directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from alyx_server.api.bodies import read_object
from alyx_server.api.jobs import queue_of
from alyx_server.api.operations import (
    Access,
    Step,
    all_or_nothing,
    prepare_create,
    prepare_delete,
    prepare_get,
    prepare_update,
)
from alyx_server.api.pipeline import HTTP_POLICY, HttpPolicy, json_response, make_pipeline
from alyx_server.api.runtime import RUNTIME, Runtime
from alyx_server.db import (
    Condition,
    ListQuery,
    Predicate,
    condition_predicate,
    list_docs,
    parse_filter,
    parse_sort,
)
from alyx_server.db.query import DEFAULT_LIMIT, MAX_LIMIT
from alyx_server.errors import AlyxError, InvalidQuery, Unauthorized, ValidationError
from alyx_server.functions.tokens import Grant, TokenRegistry
from alyx_server.rules import AccessPolicy, OpenAccess
from alyx_server.schema.model import Collection

__all__ = ["MAX_OPERATIONS", "TOKENS", "create_internal_app"]

TOKENS = web.AppKey("alyx.function_tokens", TokenRegistry)
MAX_OPERATIONS = 100
_METHODS = ("GET", "POST", "PATCH", "DELETE")
_OPS = {
    "$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte",
    "$like": "like", "$contains": "contains", "$in": "in", "$nin": "not_in",
}  # fmt: skip
_OPEN = OpenAccess()


def _grant(request: web.Request) -> Grant:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    grant = request.app[TOKENS].get(token.strip()) if scheme.lower() == "bearer" else None
    if grant is None:
        raise Unauthorized(
            "invalid internal API token: a token is valid only while its invocation runs",
            code="INVALID_TOKEN",
        )
    return grant


def _access(rt: Runtime, grant: Grant, body: Any = None) -> Access:
    policy: AccessPolicy = _OPEN if grant.privileged else rt.policy
    return policy, grant.auth, replace(grant.request, body=body)


def _runtime(request: web.Request) -> Runtime:
    rt: Runtime = request.app[PARENT][RUNTIME]
    return rt


PARENT = web.AppKey("alyx.parent_app", web.Application)


def _step(rt: Runtime, grant: Grant, op: Mapping[str, Any], where: str) -> Step:
    """One `{method, collection, id?, body?}` operation, checked, as a write step."""
    method = op.get("method")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise ValidationError(f"{where}: method must be one of {', '.join(_METHODS)}, not {method!r}")
    method = method.upper()
    name, doc_id, body = op.get("collection"), op.get("id"), op.get("body")
    if not isinstance(name, str):
        raise ValidationError(f"{where}: collection must be a string")
    view = rt.catalog.get(name)
    if method in ("POST", "PATCH") and not isinstance(body, dict):
        raise ValidationError(f"{where}: {method} needs a body object")
    if method != "POST" and (isinstance(doc_id, bool) or not isinstance(doc_id, str | int)):
        raise ValidationError(f"{where}: {method} needs the id of a document")
    access = _access(rt, grant, body)
    if method == "POST":
        assert isinstance(body, dict)
        return prepare_create(view, body, access, rt.clock)
    if method == "PATCH":
        assert isinstance(body, dict)
        return prepare_update(view, doc_id, body, access, rt.clock)
    if method == "DELETE":
        return prepare_delete(view, doc_id, access)
    return prepare_get(view, doc_id, access)


async def db_exec(request: web.Request) -> web.StreamResponse:
    grant = _grant(request)
    rt = _runtime(request)
    db = rt.ready_db()
    data = await read_object(request)
    status, body = await db.write(_step(rt, grant, data, "operation"))
    return json_response({"status": status, "body": body})


async def db_tx(request: web.Request) -> web.StreamResponse:
    grant = _grant(request)
    rt = _runtime(request)
    db = rt.ready_db()
    ops = (await read_object(request)).get("operations")
    if not isinstance(ops, list) or len(ops) > MAX_OPERATIONS:
        raise ValidationError(f"operations must be an array of at most {MAX_OPERATIONS} operations")
    steps: list[Step] = []
    for index, op in enumerate(ops):
        if not isinstance(op, dict):
            raise ValidationError(f"operation {index}: expected an object {{method, collection, id?, body?}}")
        try:
            steps.append(_step(rt, grant, op, f"operation {index}"))
        except AlyxError as e:
            raise _failed(index, e) from e

    return json_response({"results": await db.write(all_or_nothing(steps, _failed)) if steps else []})


def _failed(index: int, error: AlyxError) -> AlyxError:
    detail: dict[str, Any] = {"index": index, "code": error.code, "message": error.message}
    return AlyxError(
        f"operation {index} failed, nothing was written: {error.message}",
        code=error.code,
        status=error.status,
        details=[detail],
    )


async def db_query(request: web.Request) -> web.StreamResponse:
    grant = _grant(request)
    rt = _runtime(request)
    db = rt.ready_db()
    data = await read_object(request)
    name = data.get("collection")
    if not isinstance(name, str):
        raise ValidationError("collection must be a string")
    view = rt.catalog.get(name)
    access = _access(rt, grant)
    if "id" in data:
        _status, doc = db.read_now(prepare_get(view, data["id"], access))
        return json_response({"doc": doc})
    policy, auth, info = access
    predicates = _filters(view.collection, data.get("filter"))
    read = policy.read_predicate(view.collection, auth, info)
    if read is not None:
        predicates.append(read)
    query = ListQuery(
        view.collection,
        predicates=predicates,
        sort=_sort(view.collection, data.get("sort")),
        limit=_bounded(data, "limit", DEFAULT_LIMIT, MAX_LIMIT),
        offset=_bounded(data, "offset", 0, 2**63 - 1),
        fields=view.codec.public_names if view.has_internal else None,
    )
    result = await db.read_small(lambda conn: list_docs(conn, query))
    return json_response(result.to_dict())


def _filters(collection: Collection, raw: Any) -> list[Predicate]:
    if raw is None:
        return []
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return [parse_filter(collection, item) for item in raw]
    if not isinstance(raw, dict):
        raise InvalidQuery('filter must be an object {"field": value} or a list of "field:op:value"')
    out = []
    for name, value in raw.items():
        for op, operand in _conditions(name, value):
            where = f"filter on {name}"
            out.append(condition_predicate(collection, Condition(name, op, operand), where=where))
    return out


def _conditions(name: str, value: Any) -> list[tuple[str, Any]]:
    if not isinstance(value, dict):
        return [("is_null", None)] if value is None else [("eq", value)]
    out: list[tuple[str, Any]] = []
    for key, operand in value.items():
        if key == "$exists":
            out.append(("not_null" if operand else "is_null", None))
        elif key in _OPS:
            out.append((_OPS[key], operand))
        else:
            known = ", ".join([*_OPS, "$exists"])
            raise InvalidQuery(f"unknown operator {key!r} in the filter on {name}; operators are: {known}")
    return out


def _sort(collection: Collection, raw: Any) -> list[tuple[str, bool]]:
    if raw is None:
        return []
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        raw = ",".join(raw)
    if not isinstance(raw, str):
        raise InvalidQuery('sort must be a string such as "-created_at,title" or a list of them')
    return parse_sort(collection, raw)


def _bounded(data: Mapping[str, Any], key: str, default: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise InvalidQuery(f"{key} must be an integer from 0 to {high}")
    return value


async def jobs_enqueue(request: web.Request) -> web.StreamResponse:
    """`ctx.jobs.enqueue`: a function queues any job, whatever the job's rule says (the
    function is the project's own code; the rule guards `POST /api/jobs/{name}`)."""
    _grant(request)
    data = await read_object(request)
    name = data.get("name")
    if not isinstance(name, str):
        raise ValidationError("name must be the name of a job function")
    queue = queue_of(request.app[PARENT])
    queued = await queue.enqueue(
        name, data.get("payload"), delay=data.get("delay") or 0, dedupe_key=data.get("dedupe_key")
    )
    return json_response(queued.to_dict())


async def ping(request: web.Request) -> web.StreamResponse:
    """The executors' warm-up call (see the module docstring)."""
    await request.read()
    return json_response({"ok": True})


def create_internal_app(parent: web.Application, tokens: TokenRegistry) -> web.Application:
    """The internal API application, reading the database and policy of `parent`."""
    # The parent's schema gate: a function's database calls wait for a deploy's swap too.
    policy = parent.get(HTTP_POLICY)
    gate = None if policy is None else policy.gate
    app = web.Application(middlewares=[make_pipeline(HttpPolicy(), gate=gate)])
    app[PARENT] = parent
    app[TOKENS] = tokens
    app.router.add_post("/internal/v1/db/query", db_query)
    app.router.add_post("/internal/v1/db/exec", db_exec)
    app.router.add_post("/internal/v1/db/tx", db_tx)
    app.router.add_post("/internal/v1/jobs/enqueue", jobs_enqueue)
    app.router.add_post("/internal/v1/ping", ping)
    return app
