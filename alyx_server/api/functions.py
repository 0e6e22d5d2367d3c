"""`POST /api/functions/{name}` and `GET /api/admin/functions`.

    POST /api/functions/{name}  {"input": {...}}
        -> 200 {success, output | error{code, message, details}, logs, duration_ms}
        404 FUNCTION_NOT_FOUND, 403 FORBIDDEN, 400 VALIDATION_ERROR, 503 FUNCTIONS_BUSY,
        504 FUNCTION_TIMEOUT, 500 INVOCATION_ERROR (with its message: it is about the
        function, not the server's internals)
    GET /api/admin/functions -> {"functions": [{name, runtime, state, instances, stats...,
                                 hook?, before?, schedule?}], "backend": {...}}
        hook: {collection, events, when, cursor, behind, delivered, failed, last_error, runner}
        schedule: {schedule | every, timezone, catch_up, next_run, last_run, last_scheduled,
                   last_status, last_error, last_duration_ms, runs, skipped, running}

The handlers read the application's `FunctionService` under `FUNCTIONS`; app.py builds
it, with the internal API it needs, in a cleanup context of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from alyx_server.api.auth import caller
from alyx_server.api.automation import describe as describe_automation
from alyx_server.api.bodies import read_object
from alyx_server.api.collections import access_for
from alyx_server.api.pipeline import REQUEST_ID, error_body, json_response
from alyx_server.api.runtime import RUNTIME
from alyx_server.config import Settings
from alyx_server.errors import Forbidden, FunctionError, Unauthorized, ValidationError
from alyx_server.functions.backend import Backend, ProcessBackend
from alyx_server.functions.rules import compile_function_rule
from alyx_server.functions.sandbox import Runtimes
from alyx_server.functions.service import FunctionService, RuleCompiler
from alyx_server.resources import data_dir

__all__ = ["FUNCTIONS", "BackendFactory", "Functions", "add_routes", "default_backend"]

log = logging.getLogger("alyx.functions")

BackendFactory = Callable[[Settings, Path], Backend]


def default_backend(settings: Settings, socket_path: Path) -> Backend:
    """The backend `functions.backend` names."""
    runtimes = Runtimes.detect(data_dir("runtimes"))
    if settings.functions.backend == "docker":
        # Imported here: the docker SDK (and requests) load only for servers that use it.
        from alyx_server.functions.docker_backend import DockerBackend

        return DockerBackend(runtimes, socket_path)
    return ProcessBackend(runtimes, socket_path)


@dataclass(slots=True)
class Functions:
    """The application's functions: how to build them (set before start) and the service,
    which app.py's functions context sets for the application's life (None before and after).
    """

    backend_factory: BackendFactory = default_backend
    compile_rule: RuleCompiler | None = compile_function_rule
    service: FunctionService | None = None


FUNCTIONS = web.AppKey("alyx.functions", Functions)


def _service(app: web.Application) -> FunctionService:
    service = app[FUNCTIONS].service
    if service is None:
        raise FunctionError("functions are starting; try again in a moment", code="UNAVAILABLE", status=503)
    return service


async def invoke(request: web.Request) -> web.StreamResponse:
    service = _service(request.app)
    body = await read_object(request)
    unknown = sorted(set(body) - {"input"})
    if unknown:
        raise ValidationError(f'unknown key {unknown[0]!r}: the body is {{"input": {{...}}}}')
    rt = request.app[RUNTIME]
    _policy, auth, info = access_for(rt, request, body.get("input"))
    try:
        result = await service.invoke(
            request.match_info["name"], body.get("input"), auth, info, request_id=request[REQUEST_ID]
        )
    except FunctionError as e:
        # The pipeline hides 500 messages; this one is about the function, not the server.
        envelope = error_body(e.message, e.code, request[REQUEST_ID], e.details, rt.clock)
        return json_response(envelope, e.status)
    return json_response(result.to_dict())


async def list_functions(request: web.Request) -> web.StreamResponse:
    auth = caller(request)
    if auth is None:
        raise Unauthorized("sign in as an admin to list functions")
    if not auth.allows("functions"):
        raise Forbidden("only admins may list functions")
    service = _service(request.app)
    functions = service.describe()
    automation = await describe_automation(request.app)
    for entry in functions:
        entry.update(automation.get(entry["name"], {}))
    return json_response({"functions": functions, "backend": service.backend.describe()})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/functions/{name}", invoke)
    app.router.add_get("/api/admin/functions", list_functions)
