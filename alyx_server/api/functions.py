"""`POST /api/functions/{name}` and `GET /api/admin/functions`, and the functions' lifetime.

    POST /api/functions/{name}  {"input": {...}}
        -> 200 {success, output | error{code, message, details}, logs, duration_ms}
        404 FUNCTION_NOT_FOUND, 403 FORBIDDEN, 400 VALIDATION_ERROR, 503 FUNCTIONS_BUSY,
        504 FUNCTION_TIMEOUT, 500 INVOCATION_ERROR (with its message: it is about the
        function, not the server's internals)
    GET /api/admin/functions -> {"functions": [{name, runtime, state, instances, stats...}],
                                 "backend": {...}}

`add_routes` also registers a cleanup context that, for the application's life, serves
the internal API on a Unix socket in a private temporary folder (outside the data
directory), discovers the project's functions and keeps their warm pools.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from alyx_server.api.auth import caller
from alyx_server.api.bodies import read_object
from alyx_server.api.collections import access_for
from alyx_server.api.internal import create_internal_app
from alyx_server.api.pipeline import REQUEST_ID, error_body, json_response
from alyx_server.api.runtime import RUNTIME
from alyx_server.config import Settings
from alyx_server.errors import Forbidden, FunctionError, Unauthorized, ValidationError
from alyx_server.functions.backend import Backend, ProcessBackend
from alyx_server.functions.manifest import Defaults, discover_functions
from alyx_server.functions.pool import PoolLimits
from alyx_server.functions.rules import compile_function_rule
from alyx_server.functions.sandbox import Runtimes
from alyx_server.functions.service import FunctionService, RuleCompiler
from alyx_server.functions.tokens import TokenRegistry
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
    """The application's functions: how to build them (set before start) and the service."""

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
        result = await service.invoke(request.match_info["name"], body.get("input"), auth, info)
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
    return json_response({"functions": service.describe(), "backend": service.backend.describe()})


def functions_context(app: web.Application) -> contextlib.AbstractAsyncContextManager[None]:
    """Internal API socket, discovery and warm pools for the application's life."""
    return _functions_life(app)


@contextlib.asynccontextmanager
async def _functions_life(app: web.Application) -> AsyncIterator[None]:
    settings = app[RUNTIME].settings
    folder = Path(tempfile.mkdtemp(prefix="alyx-functions-"))
    os.chmod(folder, 0o700)
    socket_path = folder / "api.sock"
    tokens = TokenRegistry()
    internal = web.AppRunner(create_internal_app(app, tokens), access_log=None)
    await internal.setup()
    service: FunctionService | None = None
    try:
        await web.UnixSite(internal, str(socket_path)).start()
        holder = app[FUNCTIONS]
        functions = settings.functions
        discovery = discover_functions(
            functions.path, Defaults(functions.timeout, functions.memory), root=settings.project_dir
        )
        pool = functions.pool
        service = FunctionService(
            discovery,
            holder.backend_factory(settings, socket_path),
            PoolLimits(pool.min_warm, pool.max_instances, pool.idle_timeout, pool.max_queue),
            compile_rule=holder.compile_rule,
            tokens=tokens,
            show_stacks=settings.mode == "dev",
        )
        await service.start()
        holder.service = service
        yield
    finally:
        app[FUNCTIONS].service = None
        if service is not None:
            await service.close()
        await internal.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def add_routes(app: web.Application) -> None:
    app[FUNCTIONS] = Functions()
    app.router.add_post("/api/functions/{name}", invoke)
    app.router.add_get("/api/admin/functions", list_functions)
    app.cleanup_ctx.append(functions_context)
