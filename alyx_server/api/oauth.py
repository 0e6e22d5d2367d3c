"""OAuth2 / OpenID Connect sign-in routes (docs/auth.md), over `auth/oauth.py`'s `OAuthService`.

    GET    /api/auth/providers                      {providers: [{name, label, start_url}]}
    GET    /api/auth/oauth/{provider}/start?redirect=<app URL>[&link=<ticket>][&code_challenge=<S256>]
                                                    302 to the provider
    GET    /api/auth/oauth/{provider}/callback      302 to the app: ?code=... | ?linked=... | ?error=...
    POST   /api/auth/oauth/{provider}/callback      the same, for providers that post the answer (Apple)
    POST   /api/auth/oauth/exchange                 {code[, code_verifier]} -> {user, tokens}
    GET    /api/auth/identities                     {identities, password}        (signed in)
    POST   /api/auth/identities                     {provider, redirect} -> {url}  a one-time link URL
    DELETE /api/auth/identities/{id}                204; 409 LAST_SIGN_IN_METHOD
    GET    /api/admin/users/{id}/identities         {identities}                  (admin)
    DELETE /api/admin/users/{id}/identities/{identity}   204

/start sets a short-lived HttpOnly cookie whose hash the stored state carries; /callback
refuses a state without it, so a callback URL sent to someone else signs nobody in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from alyx_server.api.auth import caller, client_of
from alyx_server.api.bodies import read_object
from alyx_server.api.pipeline import json_response
from alyx_server.api.runtime import RUNTIME
from alyx_server.auth import admin_users as admin
from alyx_server.auth.account import account_user
from alyx_server.auth.oauth import FLOW_TTL, OAuthService
from alyx_server.errors import ValidationError

__all__ = ["OAUTH", "add_routes", "oauth_context"]

OAUTH = web.AppKey("alyx.oauth", OAuthService)
COOKIE = "alyx_oauth"
_COOKIE_PATH = "/api/auth/oauth/"


def _service(request: web.Request) -> OAuthService:
    return request.app[OAUTH]


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def providers(request: web.Request) -> web.StreamResponse:
    return json_response({"providers": _service(request).listing()})


async def start(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    name = request.match_info["provider"]
    started = await service.start(
        name,
        request.query.get("redirect"),
        request_origin=_origin(request),
        link=request.query.get("link"),
        code_challenge=request.query.get("code_challenge"),
    )
    response = web.Response(status=302, headers={"Location": started.authorize_url})
    form_post = service.provider(name).config.preset == "apple"
    secure = request.scheme == "https" or service.settings.public_url.startswith("https:")
    response.set_cookie(
        COOKIE,
        started.browser_secret,
        max_age=int(FLOW_TTL),
        path=_COOKIE_PATH,
        httponly=True,
        # Apple posts its answer from its own site: only a SameSite=None cookie comes along.
        samesite="None" if form_post else "Lax",
        secure=secure or form_post,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    params = {k: v for k, v in request.query.items()}
    if request.method == "POST":
        try:
            form = await request.post()
        except (ValueError, AssertionError) as e:  # aiohttp's parsers' words for a bad form
            raise ValidationError(
                f"the callback's form body is malformed ({e}); the provider should post "
                "application/x-www-form-urlencoded",
                code="INVALID_MULTIPART",
            ) from e
        params |= {k: v for k, v in form.items() if isinstance(v, str)}
    target = await _service(request).callback(
        request.match_info["provider"],
        params,
        browser_secret=request.cookies.get(COOKIE),
        client=client_of(request),
    )
    response = web.Response(status=302, headers={"Location": target})
    response.del_cookie(COOKIE, path=_COOKIE_PATH)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def exchange(request: web.Request) -> web.StreamResponse:
    body = await read_object(request)
    user, tokens = await _service(request).exchange(
        body.get("code"), body.get("code_verifier"), client_of(request)
    )
    return json_response({"user": user.public(), "tokens": tokens.to_dict()})


async def list_identities(request: web.Request) -> web.StreamResponse:
    user = account_user(caller(request))
    found, password = await _service(request).identities(user.id)
    return json_response({"identities": [i.public() for i in found], "password": password})


async def link_identity(request: web.Request) -> web.StreamResponse:
    auth = caller(request)
    account_user(auth)
    body = await read_object(request)
    url = await _service(request).link_url(auth, body.get("provider"), body.get("redirect"))
    return json_response({"url": url})


async def unlink_identity(request: web.Request) -> web.StreamResponse:
    user = account_user(caller(request))
    await _service(request).unlink(user.id, request.match_info["id"])
    return web.Response(status=204)


async def admin_identities(request: web.Request) -> web.StreamResponse:
    admin.require_admin(caller(request), "users")
    found, password = await _service(request).identities(request.match_info["id"])
    return json_response({"identities": [i.public() for i in found], "password": password})


async def admin_unlink(request: web.Request) -> web.StreamResponse:
    admin.require_admin(caller(request), "users")
    await _service(request).unlink(request.match_info["id"], request.match_info["identity"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Register the routes (the `OAuthService` under `OAUTH` is app.py's)."""
    router = app.router
    router.add_get("/api/auth/providers", providers)
    router.add_post("/api/auth/oauth/exchange", exchange)
    router.add_get("/api/auth/oauth/{provider}/start", start)
    router.add_get("/api/auth/oauth/{provider}/callback", callback)
    router.add_post("/api/auth/oauth/{provider}/callback", callback)
    router.add_get("/api/auth/identities", list_identities)
    router.add_post("/api/auth/identities", link_identity)
    router.add_delete("/api/auth/identities/{id}", unlink_identity)
    router.add_get("/api/admin/users/{id}/identities", admin_identities)
    router.add_delete("/api/admin/users/{id}/identities/{identity}", admin_unlink)


async def oauth_context(app: web.Application) -> AsyncIterator[None]:
    """At start, read the OpenID providers' discovery documents: under `alyx serve` an
    unreachable issuer stops the start (a ConfigError), under `alyx dev` it is logged."""
    service = app[OAUTH]
    await service.check_providers(strict=app[RUNTIME].settings.mode == "serve")
    yield
