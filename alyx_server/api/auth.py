"""`/api/auth/*` (SPEC §8): register, login, refresh, logout, me, password, verify, reset.

Each handler parses the body, calls one operation of `alyx_server.auth` and renders its
result; the domain raises `AlyxError`s, which the pipeline turns into the error envelope.
The application's `AuthService` (under `AUTH_SERVICE`) is built by app.py, which also
gives the pipeline `authenticate_request` as its authentication hook: a request with
an `Authorization` header gets its `AuthContext` under the `AUTH` request key before its
handler runs (a bad token answers 401 whatever the route), and a request without one is
anonymous, which each route accepts or refuses.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from alyx_server.api.bodies import read_object
from alyx_server.api.collections import AUTH
from alyx_server.api.pipeline import CLIENT_IP, json_response
from alyx_server.auth import AuthContext, AuthService, Client
from alyx_server.auth import account as accounts
from alyx_server.errors import InvalidJSON

__all__ = ["AUTH_SERVICE", "add_routes", "authenticate_request", "caller", "client_of"]


AUTH_SERVICE = web.AppKey("alyx.auth_service", AuthService)
_ACCEPTED = {"message": "accepted: if the address has an account, an email is on its way"}
_MAX_USER_AGENT = 512


def authenticate_request(request: web.Request, header: str) -> None:
    """The pipeline's hook: the caller of the `Authorization` header, under `AUTH`."""
    request[AUTH] = request.app[AUTH_SERVICE].authenticate_header(header)


def caller(request: web.Request) -> AuthContext | None:
    found = request.get(AUTH)
    return found if isinstance(found, AuthContext) else None


def client_of(request: web.Request) -> Client:
    agent = request.headers.get("User-Agent")
    return Client(request[CLIENT_IP], agent[:_MAX_USER_AGENT] if agent else None)


def _service(request: web.Request) -> AuthService:
    return request.app[AUTH_SERVICE]


def _session(user: Any, tokens: Any) -> dict[str, Any]:
    return {"user": user.public(), "tokens": tokens.to_dict() if tokens is not None else None}


async def _optional_body(request: web.Request) -> dict[str, Any]:
    # body_exists, not can_read_body: the pipeline may have read the body already (it is
    # read before the schema gate is held), which leaves nothing more to read but keeps it.
    if not request.body_exists:
        return {}
    try:
        return await read_object(request)
    except InvalidJSON:
        if not (await request.read()).strip():
            return {}
        raise


async def register(request: web.Request) -> web.StreamResponse:
    body = await read_object(request)
    user, tokens = await _service(request).register(
        body.get("email"), body.get("password"), body.get("metadata"), client_of(request)
    )
    return json_response(_session(user, tokens), 201)


async def login(request: web.Request) -> web.StreamResponse:
    body = await read_object(request)
    user, tokens = await _service(request).login(body.get("email"), body.get("password"), client_of(request))
    return json_response(_session(user, tokens))


async def refresh(request: web.Request) -> web.StreamResponse:
    body = await read_object(request)
    user, tokens = await _service(request).refresh(body.get("refresh_token"), client_of(request))
    return json_response(_session(user, tokens))


async def logout(request: web.Request) -> web.StreamResponse:
    body = await read_object(request)
    await _service(request).logout(body.get("refresh_token"))
    return web.Response(status=204)


async def get_me(request: web.Request) -> web.StreamResponse:
    return json_response({"user": accounts.account_user(caller(request)).public()})


async def patch_me(request: web.Request) -> web.StreamResponse:
    body = await read_object(request)
    user = await accounts.update_profile(_service(request), caller(request), body)
    return json_response({"user": user.public()})


async def delete_me(request: web.Request) -> web.StreamResponse:
    auth = caller(request)
    accounts.account_user(auth)
    body = await read_object(request)
    await accounts.delete_account(
        _service(request),
        auth,
        body.get("password"),
        client_of(request),
        code=body.get("code"),
        code_verifier=body.get("code_verifier"),
    )
    return web.Response(status=204)


async def change_password(request: web.Request) -> web.StreamResponse:
    auth = caller(request)
    accounts.account_user(auth)
    body = await read_object(request)
    await accounts.change_password(
        _service(request), auth, body.get("current_password"), body.get("new_password"), client_of(request)
    )
    return web.Response(status=204)


async def request_verification(request: web.Request) -> web.StreamResponse:
    body = await _optional_body(request)
    await accounts.request_verification(
        _service(request), caller(request), body.get("email"), client_of(request)
    )
    return json_response(_ACCEPTED, 202)


async def verify(request: web.Request) -> web.StreamResponse:
    body = await read_object(request)
    user = await accounts.verify_email(_service(request), body.get("token"))
    return json_response({"user": user.public()})


async def request_reset(request: web.Request) -> web.StreamResponse:
    body = await read_object(request)
    await accounts.request_reset(_service(request), body.get("email"), client_of(request))
    return json_response(_ACCEPTED, 202)


async def reset(request: web.Request) -> web.StreamResponse:
    body = await read_object(request)
    await accounts.reset_password(_service(request), body.get("token"), body.get("new_password"))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Register the account routes (the `AuthService` they use is app.py's)."""
    router = app.router
    router.add_post("/api/auth/register", register)
    router.add_post("/api/auth/login", login)
    router.add_post("/api/auth/refresh", refresh)
    router.add_post("/api/auth/logout", logout)
    router.add_get("/api/auth/me", get_me)
    router.add_patch("/api/auth/me", patch_me)
    router.add_delete("/api/auth/me", delete_me)
    router.add_post("/api/auth/password", change_password)
    router.add_post("/api/auth/verify/request", request_verification)
    router.add_post("/api/auth/verify", verify)
    router.add_post("/api/auth/reset/request", request_reset)
    router.add_post("/api/auth/reset", reset)
