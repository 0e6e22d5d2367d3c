"""The functions page: every function with its manifest, invoking one, its recent calls.

    GET  <base>/functions                      the list (runtime, state, rule, limits, network,
                                               calls, mean duration; functions that cannot load
                                               with the reason)
    GET  <base>/functions/{name}               one function: its manifest, an invoke form, its
                                               recent invocations (functions.html)
    POST <base>/functions/{name}/invoke        run it as the signed-in admin: JSON
                                               `{"input": {...}}` (functions.js) answers the
                                               result as JSON; the plain form (field `input`,
                                               JSON text) renders the page with the result.
                                               Either answers 200 once the call was tried:
                                               the result's `status` is what
                                               POST /api/functions/{name} would have answered
                                               (400 for a refused input, 504 for a timeout...)
    GET  <base>/functions/{name}/recent.json   {"invocations": [...], "unreachable": [worker...]}

An invocation from this page runs exactly as `POST /api/functions/{name}` with the admin's
own credentials (admins pass every rule), so it shows what a client would get.

Recent invocations are what `FunctionService.recent_invocations` remembers: the last
`RECENT_INVOCATIONS` calls of each function in each worker process, in memory (a restart
forgets them). With several workers the page asks every sibling through its peer socket
(`GET /peer/v1/invocations`, api/peer_app.py) and merges the answers, newest first; each
record names its `worker`. A sibling that does not answer in time is listed under
`unreachable`. functions.js reloads the list after each invocation from the page and when
the admin events stream reports an invocation of the function on any worker.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from alyx_server.admin_ui.site import SITE, Admin, Site
from alyx_server.api.admin import ADMIN_EVENTS, PEERS
from alyx_server.api.collections import access_for
from alyx_server.api.functions import FUNCTIONS
from alyx_server.api.peer_app import PEER_INVOCATIONS_PATH
from alyx_server.api.pipeline import REQUEST_ID, json_response
from alyx_server.api.runtime import RUNTIME
from alyx_server.errors import AlyxError, FunctionError, NotFound, ValidationError
from alyx_server.functions.service import RECENT_INVOCATIONS, FunctionService

__all__ = ["add_routes", "log_text", "recent_invocations"]

PEER_TIMEOUT = 1.0
SHOWN_INVOCATIONS = 100


def _service(request: web.Request) -> FunctionService:
    service = request.app[FUNCTIONS].service
    if service is None:
        raise FunctionError(
            "functions are starting; reload the page in a moment", code="UNAVAILABLE", status=503
        )
    return service


def _describe(service: FunctionService) -> list[dict[str, Any]]:
    """`describe()` plus what the list shows of each manifest (input fields)."""
    out = service.describe()
    for entry in out:
        spec = service.specs.get(entry["name"])
        if spec is not None:
            entry["input"] = spec.input.to_dict() if spec.input is not None else None
            entry["output"] = spec.output.to_dict() if spec.output is not None else None
            entry["env"] = sorted(spec.env)  # names only: values may be secrets
            entry["source"] = (
                spec.source.name if spec.folder is None else f"{spec.folder.name}/{spec.source.name}"
            )
    return out


def _entry(service: FunctionService, name: str) -> dict[str, Any]:
    for entry in _describe(service):
        if entry["name"] == name:
            return entry
    raise NotFound(f"no function named {name!r}: the functions page lists them", code="FUNCTION_NOT_FOUND")


async def recent_invocations(app: web.Application, name: str | None) -> dict[str, Any]:
    """The remembered invocations of `name` (None: all) on every worker, newest first."""
    worker = app[ADMIN_EVENTS].worker
    service = app[FUNCTIONS].service
    found = [] if service is None else [{**r, "worker": worker} for r in service.recent_invocations(name)]
    unreachable: list[str] = []
    peers = app.get(PEERS)
    if peers is not None:
        path = PEER_INVOCATIONS_PATH + ("" if name is None else f"?function={quote(name, safe='')}")
        for answer in await peers.call_all(path, timeout=PEER_TIMEOUT):
            body = answer.body
            if answer.ok and isinstance(body, dict) and isinstance(body.get("invocations"), list):
                sibling = str(body.get("worker") or answer.peer.worker)
                found.extend({**r, "worker": sibling} for r in body["invocations"] if isinstance(r, dict))
            else:
                unreachable.append(answer.peer.worker)
    found.sort(key=lambda r: str(r.get("time")), reverse=True)
    return {"invocations": found[:SHOWN_INVOCATIONS], "unreachable": sorted(unreachable)}


def log_text(line: Any) -> str:
    """One captured log line as text: `level message` for the runtimes' {level, message,
    time}, JSON for anything else."""
    if isinstance(line, dict) and "message" in line:
        return f"{line.get('level') or 'log'} {line['message']}"
    if isinstance(line, str):
        return line
    return orjson.dumps(line, default=str).decode()


def _pretty(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode()


# -- handlers --------------------------------------------------------------------------------
async def list_page(request: web.Request, admin: Admin) -> web.StreamResponse:
    service = _service(request)
    context = {"functions": _describe(service), "backend": service.backend.describe()}
    return request.app[SITE].render(request, "functions.html", context, admin=admin)


async def _detail(
    request: web.Request, admin: Admin, *, body: str | None = None, result: dict[str, Any] | None = None
) -> web.Response:
    service = _service(request)
    name = request.match_info["name"]
    entry = _entry(service, name)
    recent = await recent_invocations(request.app, name)
    context = {
        "f": entry,
        "body": body if body is not None else "{}",
        "result": result,
        "recent": recent,
        "kept": RECENT_INVOCATIONS,
    }
    return request.app[SITE].render(request, "function.html", context, admin=admin)


async def detail_page(request: web.Request, admin: Admin) -> web.StreamResponse:
    return await _detail(request, admin)


def _parse_input(text: str) -> Any:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError as e:
        raise ValidationError(f'the input is not JSON: {e}; write an object such as {{"title": "hi"}}') from e
    return value


async def invoke(request: web.Request, admin: Admin) -> web.StreamResponse:
    service = _service(request)
    name = request.match_info["name"]
    as_form = request.content_type != "application/json"
    text = ""
    try:
        if as_form:
            form = await request.post()
            raw = form.get("input")
            text = raw if isinstance(raw, str) else ""
            data = _parse_input(text)
        else:
            try:
                body = await request.json(loads=orjson.loads)
            except ValueError as e:
                raise ValidationError(f'the body is not JSON: {e}; send {{"input": {{...}}}}') from e
            if not isinstance(body, dict) or set(body) - {"input"}:
                raise ValidationError('the body is {"input": {...}}')
            data = body.get("input")
        rt = request.app[RUNTIME]
        _policy, auth, info = access_for(rt, request, data)
        outcome = await service.invoke(name, data, auth, info, request_id=request[REQUEST_ID])
        result: dict[str, Any] = {**outcome.to_dict(), "status": 200}
    except AlyxError as e:
        # Shown on the page with its own message, 500s included: they are about the function.
        result = {
            "success": False,
            "status": e.status,
            "error": {"code": e.code, "message": e.message, "details": e.details},
            "logs": [],
            "duration_ms": None,
        }
    result["request_id"] = request[REQUEST_ID]
    result["worker"] = request.app[ADMIN_EVENTS].worker
    if not as_form:
        return json_response(result)
    shown = {
        **result,
        "output_text": _pretty(result.get("output")) if result.get("success") else None,
    }
    return await _detail(request, admin, body=text, result=shown)


async def recent(request: web.Request, admin: Admin) -> web.StreamResponse:
    service = _service(request)
    name = request.match_info["name"]
    _entry(service, name)
    return json_response(await recent_invocations(request.app, name))


def add_routes(app: web.Application, site: Site) -> None:
    site.nav("functions", "Functions", "functions")
    site.filters["log_text"] = log_text
    site.filters["pretty"] = _pretty
    site.get(app, "functions", list_page, permission="functions")
    site.get(app, "functions/{name}", detail_page, permission="functions")
    site.post(app, "functions/{name}/invoke", invoke, permission="functions")
    site.get(app, "functions/{name}/recent.json", recent, permission="functions")
