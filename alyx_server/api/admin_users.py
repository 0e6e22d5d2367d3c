"""`/api/admin/users` (SPEC §8, §12): account management for admin users and admin tokens.

    GET    /api/admin/users?limit=50&offset=0&email=ada   {users, total, limit, offset}
    POST   /api/admin/users        {email, password, role?, verified?, metadata?, app_metadata?} → 201 {user}
    GET    /api/admin/users/{id}   {user}
    PATCH  /api/admin/users/{id}   {role?, verified?, disabled?, metadata?, app_metadata?} → {user}
    DELETE /api/admin/users/{id}   204

Users appear with `app_metadata` and `disabled`, never with their password hash.
"""

from __future__ import annotations

from aiohttp import web

from alyx_server.api.auth import AUTH_SERVICE, caller
from alyx_server.api.bodies import read_object
from alyx_server.api.pipeline import json_response
from alyx_server.auth import AuthService
from alyx_server.auth import admin_users as admin
from alyx_server.errors import InvalidQuery

__all__ = ["MAX_LIMIT", "MAX_OFFSET", "add_routes"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_OFFSET = 2**62
"""The largest `offset`: what SQLite takes without overflow checks."""


def _admin_service(request: web.Request) -> AuthService:
    admin.require_admin(caller(request), "users")
    return request.app[AUTH_SERVICE]


def _int_param(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise InvalidQuery(f"{name} must be a whole number, not {raw!r}") from e
    if not 0 <= value <= maximum:
        raise InvalidQuery(f"{name} must be between 0 and {maximum}")
    return value


async def list_users(request: web.Request) -> web.StreamResponse:
    svc = _admin_service(request)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, MAX_OFFSET)
    users, total = await admin.list_accounts(
        svc, limit=limit, offset=offset, email=request.query.get("email")
    )
    return json_response(
        {"users": [u.for_admin() for u in users], "total": total, "limit": limit, "offset": offset}
    )


async def create_user(request: web.Request) -> web.StreamResponse:
    svc = _admin_service(request)
    user = await admin.create_account(svc, await read_object(request))
    return json_response({"user": user.for_admin()}, 201)


async def get_user(request: web.Request) -> web.StreamResponse:
    svc = _admin_service(request)
    return json_response({"user": admin.get_account(svc, request.match_info["id"]).for_admin()})


async def update_user(request: web.Request) -> web.StreamResponse:
    svc = _admin_service(request)
    user = await admin.update_account(svc, request.match_info["id"], await read_object(request))
    return json_response({"user": user.for_admin()})


async def delete_user(request: web.Request) -> web.StreamResponse:
    svc = _admin_service(request)
    await admin.remove_account(svc, request.match_info["id"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Register the routes (after `alyx_server.api.auth.add_routes`, which builds the service)."""
    base = "/api/admin/users"
    app.router.add_get(base, list_users)
    app.router.add_post(base, create_user)
    app.router.add_get(base + "/{id}", get_user)
    app.router.add_patch(base + "/{id}", update_user)
    app.router.add_delete(base + "/{id}", delete_user)
