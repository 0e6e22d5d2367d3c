"""The one HTTP middleware: request id, CORS, client IP, error envelope, access log, metrics,
and the schema gate (tools/gate.py) around each request that touches documents.

Everything a request passes through on its way in and out lives here, in one function,
because each middleware layer in aiohttp costs a coroutine frame on the hot path
(PERFORMANCE.md). Domain errors (`AlyxError`) and aiohttp's own HTTP exceptions become
the JSON envelope of SPEC §7; anything else is logged with its traceback and answered
500 with a message that does not leak internals.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from alyx_server.errors import AlyxError, RateLimited, ValidationError
from alyx_server.logs import AccessLog
from alyx_server.tools.gate import Gate
from alyx_server.tools.processes import worker_name
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock, now_timestamp

__all__ = [
    "CLIENT_IP",
    "HTTP_POLICY",
    "REQUEST_ID",
    "AuthHook",
    "HttpPolicy",
    "LiveHttpPolicy",
    "RequestHook",
    "direct_dispatch",
    "error_body",
    "json_response",
    "make_pipeline",
    "redact_query",
]

errors_log = logging.getLogger("alyx.errors")

REQUEST_ID = web.RequestKey("alyx.request_id", str)
CLIENT_IP = web.RequestKey("alyx.client_ip", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MetricsHook = Callable[[str, str, int, float], None]
AuthHook = Callable[[web.Request, str], None]
"""Called with the request and its `Authorization` header, before the handler; raises to refuse."""
RequestHook = Callable[[web.Request, web.StreamResponse, float], None]
"""Called after each request with its response and duration in seconds (the admin event stream)."""

_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:token|access_token|refresh_token|api_key)=)[^&]*", re.I)
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# aiohttp's own HTTP exceptions, as envelope codes.
_HTTP_CODES = {
    400: "INVALID_QUERY",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
}

_CORS_METHODS = "GET, POST, PATCH, PUT, DELETE, OPTIONS"

# Requests that do not hold the schema gate: long-lived ones (the realtime socket, the
# admin event stream), function calls (the function's own database calls come back
# through the internal API, which holds it: holding it here too would wait on itself
# while a deploy takes the gate), the deploy routes (which take it), health and metrics,
# and the internal API's `ping` (a starting worker's warm-up touches no document).
_UNGATED = (
    "/api/realtime",
    "/api/functions/",
    "/api/admin/deploy/",
    "/api/admin/events",
    "/health",
    "/metrics",
    "/internal/v1/ping",
)
# Downloads stream without holding the gate (their handlers hold it for their reads only).
_FILES = "/api/files/"
# Multipart bodies of these paths stream to file storage (api/uploads.py): no pre-read, no
# server.max_body_size (storage.max_file_size bounds each file), and the handler takes the
# gate once the files are stored.
_STREAMED = "/api/collections/"


async def _receive_body(request: web.Request) -> None:
    """Read the body now (see the pipeline): multipart forms parsed and cached by post()."""
    if request.content_type != "multipart/form-data":
        await request.read()
        return
    try:
        await request.post()
    except (ValueError, AssertionError, HttpProcessingError) as e:
        raise ValidationError(f"the multipart body is malformed: {e}", code="INVALID_MULTIPART") from e


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """The settings the pipeline needs, taken once from the settings object."""

    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    max_body_size: int = 10 * 1024 * 1024
    clock: Clock = SYSTEM_CLOCK

    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies)


class LiveHttpPolicy:
    """The part of the policy the pipeline reads per request; `update` swaps it while the
    server runs (the keys are "live" in alyx.yaml). `own_limits` holds the paths whose
    handler enforces a body limit of its own instead of server.max_body_size (the deploy
    bundle upload, bounded by deploy.max_bundle_size). `gate` is the application's schema
    gate (tools/gate.py): deploys take its exclusive side. `ungated` holds more paths that
    do not hold the gate, like those of `_UNGATED` (the admin UI's rollback, which takes
    it, under the configurable admin_ui.path)."""

    __slots__ = ("clock", "closing", "gate", "max_body", "origins", "own_limits", "trusted", "ungated")

    def __init__(self, policy: HttpPolicy, gate: Gate | None = None) -> None:
        self.own_limits: set[str] = set()
        self.ungated: set[str] = set()
        self.closing = False
        """Set while a worker hands its clients over to the others (app.serve): every
        response then closes its connection, and the client's next request connects anew."""
        self.gate = Gate() if gate is None else gate
        self.update(policy)

    def update(self, policy: HttpPolicy) -> None:
        self.trusted = policy.trusted_networks()
        self.origins = policy.cors_origins
        self.max_body = policy.max_body_size
        self.clock = policy.clock


HTTP_POLICY = web.AppKey("alyx.http_policy", LiveHttpPolicy)
"""The application's live HTTP policy (set by the app factory)."""


def redact_query(path_qs: str) -> str:
    """Hide token values in a logged URL (`?token=abc` → `?token=[REDACTED]`)."""
    return _SECRET_QUERY.sub(r"\1[REDACTED]", path_qs)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_body(
    message: str,
    code: str,
    request_id: str,
    details: Sequence[Any] = (),
    clock: Clock = SYSTEM_CLOCK,
) -> dict[str, Any]:
    """The error envelope of SPEC §7."""
    return {
        "error": message,
        "code": code,
        "details": list(details),
        "request_id": request_id,
        "timestamp": now_timestamp(clock),
    }


def _error_response(exc: AlyxError, request_id: str, clock: Clock) -> web.Response:
    status = exc.status if 400 <= exc.status < 600 else 500
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    if status == 500:
        # Internal failures never leak their message; the log has it.
        errors_log.error("internal error answered 500 (request %s): %s", request_id, exc)
        body = error_body("internal error", "INTERNAL_ERROR", request_id, (), clock)
    else:
        body = error_body(exc.message, exc.code, request_id, exc.details, clock)
    return json_response(body, status, headers)


def _http_error_response(
    exc: web.HTTPException, request: web.Request, request_id: str, clock: Clock
) -> web.Response:
    status = exc.status
    code = _HTTP_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "INVALID_QUERY")
    if status == 404:
        message = f"no route for {request.method} {request.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.path}"
    elif status == 413:
        message = "request body is too large (see server.max_body_size)"
    else:
        message = exc.reason
    response = json_response(error_body(message, code, request_id, (), clock), status)
    if status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _client_ip(request: web.Request, trusted: Sequence[Any]) -> str:
    peer = request.remote or ""
    if not trusted or not peer:
        return peer
    try:
        hops = [ipaddress.ip_address(peer)]
    except ValueError:
        return peer
    forwarded = request.headers.get("X-Forwarded-For", "")
    chain = [h.strip() for h in forwarded.split(",") if h.strip()]
    # Walk from the nearest hop outwards; the first address not in a trusted network is the client.
    current = hops[0]
    while any(current in net for net in trusted) and chain:
        try:
            current = ipaddress.ip_address(chain.pop())
        except ValueError:
            break
    return str(current)


def _cors_headers(origin: str | None, allowed: tuple[str, ...]) -> dict[str, str]:
    if not origin or not allowed:
        return {}
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*"}
    if origin in allowed:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def _preflight(request: web.Request, allowed: tuple[str, ...]) -> web.Response | None:
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    headers = _cors_headers(request.headers.get("Origin"), allowed)
    if headers:
        headers["Access-Control-Allow-Methods"] = _CORS_METHODS
        headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Authorization, Content-Type, X-Request-ID"
        )
        headers["Access-Control-Max-Age"] = "600"
    return web.Response(status=204, headers=headers)


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def make_pipeline(
    policy: HttpPolicy | LiveHttpPolicy,
    metrics: MetricsHook | None = None,
    authenticate: AuthHook | None = None,
    on_request: RequestHook | None = None,
    gate: Gate | None = None,
) -> Any:
    """Build the middleware for one application from its HTTP policy (and hooks).

    Given a `LiveHttpPolicy`, the pipeline follows its updates. `gate`: the schema gate to
    hold (the functions' internal API passes its parent application's); by default the
    policy's own.
    """
    live = policy if isinstance(policy, LiveHttpPolicy) else LiveHttpPolicy(policy, gate)
    clock = live.clock
    schema_gate = live.gate if gate is None else gate
    # Request ids: a random per-application prefix and a counter, 32 hex characters; as
    # unique as uuid4 for tracing, without a random draw per request.
    prefix = uuid.uuid4().hex[:16]
    counter = itertools.count(1)
    access_log = AccessLog()
    worker = worker_name()  # X-Alyx-Worker: which process answered (alyx serve --workers)

    @web.middleware
    async def pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        sent_id = request.headers.get("X-Request-ID")
        request_id = sent_id if sent_id and _REQUEST_ID_OK.match(sent_id) else f"{prefix}{next(counter):016x}"
        request[REQUEST_ID] = request_id
        ip = request[CLIENT_IP] = _client_ip(request, live.trusted)
        origins = live.origins
        response: web.StreamResponse
        try:
            preflight = _preflight(request, origins) if request.method == "OPTIONS" else None
            if preflight is not None:
                response = preflight
            else:
                length = request.content_length
                # `content_type` parses the header (and defaults without one): not for a GET.
                streamed = (
                    request.path.startswith(_STREAMED)
                    and "Content-Type" in request.headers
                    and request.content_type == "multipart/form-data"
                )
                if (
                    length is not None
                    and length > live.max_body
                    and not streamed
                    and request.path not in live.own_limits
                ):
                    raise web.HTTPRequestEntityTooLarge(live.max_body, length)
                if authenticate is not None:
                    header = request.headers.get("Authorization")
                    if header is not None:
                        authenticate(request, header)
                if (
                    streamed
                    or request.path.startswith(_UNGATED)
                    or request.path.startswith(_FILES)
                    or request.path in live.ungated
                ):
                    response = await handler(request)
                else:
                    if request.body_exists:
                        # The body arrives before the gate is held (the handler reads the
                        # cached copy): a client sending it slowly cannot hold a deploy up.
                        # A multipart form (the admin UI's file uploads) is parsed instead:
                        # aiohttp parses it from the stream, never from read()'s copy.
                        await _receive_body(request)
                    held = False
                    if schema_gate.closed:
                        held = await schema_gate.enter()
                    else:
                        schema_gate.readers += 1
                    try:
                        response = await handler(request)
                    finally:
                        schema_gate.leave(held)
        except AlyxError as exc:
            response = _error_response(exc, request_id, clock)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _http_error_response(exc, request, request_id, clock)
        except Exception:
            errors_log.exception(
                "unhandled error in %s %s (request %s)", request.method, request.path, request_id
            )
            response = json_response(
                error_body("internal error", "INTERNAL_ERROR", request_id, (), clock), 500
            )
        if not response.prepared:
            headers = response.headers
            headers["X-Request-ID"] = request_id
            headers["X-Alyx-Worker"] = worker
            if live.closing:
                response.force_close()
            if origins:
                for key, value in _cors_headers(request.headers.get("Origin"), origins).items():
                    headers[key] = value
        elapsed = time.perf_counter() - start
        if access_log.enabled():
            path = redact_query(request.path_qs) if request.query_string else request.path
            access_log(ip, request.method, path, response.status, elapsed * 1000, request_id)
        if metrics is not None:
            metrics(_route_name(request), request.method, response.status, elapsed)
        if on_request is not None:
            on_request(request, response, elapsed)
        return response

    return pipeline


_SUBAPPS = web.PrefixedSubAppResource  # and its subclass for add_domain()
_DOCUMENTS = "/api/collections/"
_DOCUMENT = "/api/collections/{collection}/{id}"
_SEGMENT = "[^{}/]+)"  # how aiohttp matches a `{name}` without a regex of its own


def _document_resource(router: web.UrlDispatcher) -> web.AbstractResource | None:
    """The resource of one document, when it is the first that can match a path of its
    shape (`/api/collections/A/B`), so that resolving it alone answers as the router would.

    `UrlDispatcher.resolve` tries the resources indexed under each prefix of the path,
    the longest first, in the order they were added: for a document's path it walks
    three prefixes and tries the collection's resource before the document's: resolving
    the document's resource alone costs about a third less (3.1 against 4.9 µs measured
    per view). That shortcut holds only while nothing indexed under a longer
    prefix exists and everything tried before the document's resource matches a single
    segment after `/api/collections/`; anything else keeps the router's walk.
    """
    index: dict[str, list[web.AbstractResource]] = router._resource_index
    if any(key.startswith(_DOCUMENTS) for key in index):
        return None
    for resource in index.get(_DOCUMENTS.rstrip("/"), ()):
        if resource.canonical == _DOCUMENT:
            return resource
        pattern = resource.get_info().get("pattern")
        if (
            not isinstance(resource, web.DynamicResource)
            or resource.canonical.count("/") != 3
            or pattern is None
            or not pattern.pattern.endswith(_SEGMENT)
        ):
            return None
    return None


def direct_dispatch(app: web.Application, server: web.Server) -> None:
    """Serve `app` through its pipeline without aiohttp's middleware machinery.

    `Application._handle` runs an application's middlewares through a cached chain of
    `functools.partial` objects and a middleware of its own that sets
    `match_info.current_app`: two coroutine frames and a cache lookup on every request,
    about 5% of a view measured (docs/benchmarks.md). `app` has exactly one middleware,
    the pipeline, and no sub-applications, so `server` (the runner's, before it accepts a
    connection) is given a handler that does what `_handle` does for such an application
    (resolve, freeze the match, answer `Expect: 100-continue`) and calls the pipeline with
    the route's handler itself. The application keeps its middleware for every other way
    of running it (aiohttp's test client, `web.run_app`).
    """
    middlewares = tuple(app.middlewares)
    router = app.router
    if len(middlewares) != 1 or any(isinstance(r, _SUBAPPS) for r in router.resources()):
        return
    (pipeline,) = middlewares
    document = _document_resource(router)

    async def handle(base: web.BaseRequest) -> web.StreamResponse:
        request = cast(web.Request, base)  # made by the application's request factory
        match_info: web.UrlMappingMatchInfo | None = None
        if document is not None:
            path = request.rel_url.path_safe
            if path.startswith(_DOCUMENTS) and path.count("/") == 4:
                match_info = (await document.resolve(request))[0]
        if match_info is None:
            match_info = await router.resolve(request)
        match_info.add_app(app)
        match_info.freeze()
        # What `Application._handle` sets; `Request.match_info` reads it.
        request._match_info = match_info
        if request.headers.get("Expect"):
            early = await match_info.expect_handler(request)
            await request.writer.drain()
            if early is not None:
                return early
        return await pipeline(request, match_info.handler)

    server.request_handler = handle
