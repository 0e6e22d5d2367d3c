"""`POST /api/batch`: up to 100 document operations applied atomically.

    {"operations": [{"method": "POST", "collection": "posts", "body": {...}},
                    {"method": "PATCH", "collection": "posts", "id": "...", "body": {...}},
                    {"method": "DELETE", "collection": "posts", "id": "..."},
                    {"method": "GET", "collection": "posts", "id": "..."}]}
    -> {"results": [{"status": 201, "body": {...}}, ...]}

Every operation runs in one transaction, in order, so a later one sees what an earlier
one wrote. The first failure rolls back all of them: the answer is that operation's error
(status and code), with `details: [{index, code, message}]` naming it.

Each create and update first goes through its collection's before-write hooks, as the
REST routes' do (api/automation.before_write), in order and before the batch is queued;
a hook that refuses (or fails, or times out) fails the whole batch with its status and
code, naming the operation's index, and nothing is written. Writes to a collection an
after-write hook watches carry the acting user, as the REST routes' do.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from alyx_server.api.automation import acting, before_write
from alyx_server.api.bodies import read_object
from alyx_server.api.collections import access_for, caller
from alyx_server.api.operations import (
    Step,
    all_or_nothing,
    prepare_create,
    prepare_delete,
    prepare_get,
    prepare_update,
)
from alyx_server.api.pipeline import json_response
from alyx_server.api.runtime import RUNTIME, Runtime
from alyx_server.api.uploads import release
from alyx_server.db.codec import int64
from alyx_server.errors import AlyxError, ValidationError

__all__ = ["MAX_OPERATIONS", "add_routes"]

MAX_OPERATIONS = 100
_METHODS = ("GET", "POST", "PATCH", "DELETE")
_KEYS = frozenset({"method", "collection", "id", "body"})


def _refuse(index: int, message: str) -> ValidationError:
    error = ValidationError(f"operation {index}: {message}")
    error.details = [{"index": index, "code": "invalid_operation", "message": message}]
    return error


def _failed(index: int, error: AlyxError) -> AlyxError:
    detail: dict[str, Any] = {"index": index, "code": error.code, "message": error.message}
    if error.details:
        detail["details"] = error.details
    return AlyxError(
        f"operation {index} failed, nothing was written: {error.message}",
        code=error.code,
        status=error.status,
        details=[detail],
    )


def _checked(index: int, op: Any) -> tuple[str, str, Any, Any]:
    """(method, collection, id, body) of one operation, its shape checked."""
    if not isinstance(op, dict):
        raise _refuse(index, "expected an object {method, collection, id?, body?}")
    unknown = sorted(set(op) - _KEYS)
    if unknown:
        raise _refuse(index, f"unknown key {unknown[0]!r}; keys are: method, collection, id, body")
    method = op.get("method")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise _refuse(index, f"method must be one of {', '.join(_METHODS)}, not {method!r}")
    method = method.upper()
    collection = op.get("collection")
    if not isinstance(collection, str):
        raise _refuse(index, "collection must be a string")
    doc_id, body = op.get("id"), op.get("body")
    if method == "POST" and "id" in op:
        raise _refuse(index, "POST creates a document: put its id in body, not beside it")
    if method != "POST":
        # 5.0 is the integer 5 in JSON Schema, as in the REST routes' bodies.
        whole = int64(doc_id) if isinstance(doc_id, float) else None
        doc_id = whole if whole is not None else doc_id
        if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
            raise _refuse(index, f"{method} needs the id of a document (a string or an integer)")
    if method in ("POST", "PATCH") and not isinstance(body, dict):
        raise _refuse(index, f"{method} needs a body object")
    if method in ("GET", "DELETE") and "body" in op:
        raise _refuse(index, f"{method} takes no body: remove the body key")
    return method, collection, doc_id, body


async def _prepare(rt: Runtime, request: web.Request, index: int, op: Any, released: list[str]) -> Step:
    method, name, doc_id, body = _checked(index, op)
    try:
        view = rt.catalog.get(name)
        auth = caller(request)
        if method == "POST":
            body = await before_write(request.app, view, "create", body, auth)
            step = prepare_create(view, body, access_for(rt, request, body), rt.clock)
        elif method == "PATCH":
            body = await before_write(request.app, view, "update", body, auth, doc_id)
            access = access_for(rt, request, body)
            step = prepare_update(view, doc_id, body, access, rt.clock, released=released)
        elif method == "DELETE":
            step = prepare_delete(view, doc_id, access_for(rt, request), released)
        else:
            return prepare_get(view, doc_id, access_for(rt, request))
        return acting(request.app, view, step, auth)
    except AlyxError as e:
        raise _failed(index, e) from e


async def run_batch(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    db = rt.ready_db()
    data = await read_object(request)
    if set(data) != {"operations"}:
        raise ValidationError('the batch body must be {"operations": [...]} and nothing else')
    ops = data["operations"]
    if not isinstance(ops, list):
        raise ValidationError("operations must be an array")
    if len(ops) > MAX_OPERATIONS:
        raise ValidationError(f"a batch holds at most {MAX_OPERATIONS} operations, this one has {len(ops)}")
    # The files of deleted documents and of cleared file fields: deleted once the batch
    # committed, never before (a failed batch raises first and keeps them).
    released: list[str] = []
    steps = [await _prepare(rt, request, i, op, released) for i, op in enumerate(ops)]

    results = await db.write(all_or_nothing(steps, _failed)) if steps else []
    await release(request, sorted(set(released)))
    return json_response({"results": results})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/batch", run_batch)
