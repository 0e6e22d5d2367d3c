"""The users page: accounts, found by email, created, verified, disabled, promoted.

    GET  <base>/users?q=ada&page=2          the list (50 a page, oldest first), the create form
    POST <base>/users                       create: email, password, role, verified
    POST <base>/users/{id}/{action}         verify, disable, enable, make_admin,
                                            remove_admin, revoke_sessions, send_reset
    POST <base>/users/{id}/identities/{identity}/unlink   unlink an OAuth sign-in identity,
                                            never the account's last way to sign in

Each account's sign-in identities (provider, the email it gave, when linked) are listed
in its row; unlinking goes through auth/identities.py as DELETE
/api/admin/users/{id}/identities/{identity} does (409 LAST_SIGN_IN_METHOD for the last).

Every change goes through the services of /api/admin/users (auth/admin_users.py): the
same checks, the same `LAST_ADMIN` refusal (the last enabled admin is never demoted or
disabled), the same revocation of sessions when an account is disabled. Revoking the
sessions of an account ends its refresh tokens (auth/sessions.py) and its admin UI
sessions; a password reset sends the email of POST /api/auth/reset-request through the
configured mailer. Password hashes are never read into a page: the template gets
`UserRecord.for_admin()`.

A browser is answered by a redirect back to the list (with what was done), or the list
again with the error shown above it (200, like every form of the UI that is shown again:
the form is the answer); a script (JSON, bearer token) by `{user}`, or the error envelope
with the error's status.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from aiohttp import web

from alyx_server.admin_ui.site import SITE, Admin, Site, wants_json
from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.api.pipeline import json_response
from alyx_server.auth import AuthService
from alyx_server.auth import admin_users as accounts
from alyx_server.auth.admin_sessions import revoke_admin_sessions
from alyx_server.auth.identities import identities_of, remove_identity
from alyx_server.auth.sessions import revoke_user_sessions
from alyx_server.auth.users import admin_count
from alyx_server.errors import AlyxError, Forbidden, NotFound

__all__ = ["PAGE_SIZE", "add_routes"]

PAGE_SIZE = 50
IDENTITIES_TABLE = "_alyx_identities"
"""Sign-in identities (OAuth), once they exist: the list shows a column for them then."""

_DONE = {
    "created": "Created {email}.",
    "verify": "Marked {email} verified.",
    "disable": "Disabled {email}; its sessions are revoked.",
    "enable": "Enabled {email}.",
    "make_admin": "{email} is an administrator now.",
    "remove_admin": "{email} is no longer an administrator.",
    "revoke_sessions": "Revoked every session of {email}.",
    "send_reset": "Sent a password reset email to {email}.",
    "unlink_identity": "Unlinked a sign-in identity from {email}.",
}
_CHANGES: dict[str, dict[str, Any]] = {
    "verify": {"verified": True},
    "disable": {"disabled": True},
    "enable": {"disabled": False},
    "make_admin": {"role": "admin"},
    "remove_admin": {"role": "user"},
}


def _page_number(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 10**9 else 1


def _has_identities(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (IDENTITIES_TABLE,)
    ).fetchone()
    return row is not None


async def _render(
    request: web.Request,
    admin: Admin,
    *,
    query: str,
    page: int,
    notice: str | None = None,
    error: str | None = None,
    form: dict[str, Any] | None = None,
) -> web.Response:
    svc: AuthService = request.app[AUTH_SERVICE]
    site = request.app[SITE]
    users, total = await accounts.list_accounts(
        svc, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, email=query or None
    )
    pages = max(1, -(-total // PAGE_SIZE))
    identities = await svc.db.read(_has_identities)
    linked: dict[str, list[dict[str, Any]]] = {}
    if identities:
        ids = [u.id for u in users]
        linked = await svc.db.read(
            lambda conn: {i: [found.public() for found in identities_of(conn, i)] for i in ids}
        )
    admins = await svc.db.read(admin_count)
    return site.render(
        request,
        "users.html",
        {
            "users": [_shown(u.for_admin(), linked.get(u.id, [])) for u in users],
            "total": total,
            "query": query,
            "page": page,
            "pages": pages,
            "page_size": PAGE_SIZE,
            "notice": notice,
            "form_error": error,
            "form": form or {"email": "", "role": "user", "verified": False},
            "identities": identities,
            "last_admin": admins <= 1,
        },
        admin=admin,
    )


def _shown(user: dict[str, Any], identities: list[dict[str, Any]]) -> dict[str, Any]:
    """A user as the list shows it: metadata as compact JSON text (escaped by the template),
    and its sign-in identities."""
    text = orjson.dumps(user["metadata"]).decode() if user["metadata"] else ""
    return {**user, "metadata_text": text, "identities": identities}


async def page(request: web.Request, admin: Admin) -> web.StreamResponse:
    query = request.query.get("q", "").strip()
    notice = None
    done, who = request.query.get("done", ""), request.query.get("user", "")
    if done in _DONE and who:
        svc: AuthService = request.app[AUTH_SERVICE]
        try:
            notice = _DONE[done].format(email=accounts.get_account(svc, who).email)
        except NotFound:
            notice = None
    return await _render(request, admin, query=query, page=_page_number(request), notice=notice)


def _where_from(form: Any) -> tuple[str, int]:
    """The list's search and page the form was sent from (hidden fields)."""
    query = form.get("q")
    raw = form.get("page")
    page = int(raw) if isinstance(raw, str) and raw.isdigit() and 0 < int(raw) < 10**9 else 1
    return (query.strip() if isinstance(query, str) else ""), page


async def create(request: web.Request, admin: Admin) -> web.StreamResponse:
    svc: AuthService = request.app[AUTH_SERVICE]
    site = request.app[SITE]
    form = await request.post()
    query, number = _where_from(form)
    email = form.get("email")
    role = form.get("role") if form.get("role") in ("user", "admin") else "user"
    body = {
        "email": email if isinstance(email, str) else "",
        "password": form.get("password") if isinstance(form.get("password"), str) else "",
        "role": role,
        "verified": form.get("verified") == "on",
    }
    try:
        user = await accounts.create_account(svc, body)
    except AlyxError as e:
        if wants_json(request):
            raise
        kept = {"email": body["email"], "role": role, "verified": body["verified"]}
        return await _render(request, admin, query=query, page=number, error=e.message, form=kept)
    if wants_json(request):
        return json_response({"user": user.for_admin()}, 201)
    raise web.HTTPSeeOther(site.url("users", q=user.email, done="created", user=user.id))


async def act(request: web.Request, admin: Admin) -> web.StreamResponse:
    svc: AuthService = request.app[AUTH_SERVICE]
    site = request.app[SITE]
    user_id, action = request.match_info["id"], request.match_info["action"]
    form = await request.post()
    query, number = _where_from(form)
    if action not in _CHANGES and action not in ("revoke_sessions", "send_reset"):
        known = [*_CHANGES, "revoke_sessions", "send_reset"]
        raise NotFound(f"no user action {action!r}; one of {', '.join(known)}")
    try:
        user = await _apply(svc, user_id, action)
    except AlyxError as e:
        if wants_json(request):
            raise
        return await _render(request, admin, query=query, page=number, error=e.message)
    if wants_json(request):
        return json_response({"user": user})
    where = {"q": query, "page": str(number) if number > 1 else ""}
    values = {k: v for k, v in where.items() if v}
    raise web.HTTPSeeOther(site.url("users", **values, done=action, user=user_id))


async def unlink(request: web.Request, admin: Admin) -> web.StreamResponse:
    svc: AuthService = request.app[AUTH_SERVICE]
    site = request.app[SITE]
    user_id, identity_id = request.match_info["id"], request.match_info["identity"]
    form = await request.post()
    query, number = _where_from(form)
    try:
        user = accounts.get_account(svc, user_id)
        await svc.db.write(lambda conn: remove_identity(conn, user_id, identity_id))
    except AlyxError as e:
        if wants_json(request):
            raise
        return await _render(request, admin, query=query, page=number, error=e.message)
    if wants_json(request):
        return json_response({"user": user.for_admin()})
    where = {"q": query, "page": str(number) if number > 1 else ""}
    values = {k: v for k, v in where.items() if v}
    raise web.HTTPSeeOther(site.url("users", **values, done="unlink_identity", user=user_id))


async def _apply(svc: AuthService, user_id: str, action: str) -> dict[str, Any]:
    """Do `action` to the account; its `for_admin()` view afterwards."""
    if action in _CHANGES:
        return (await accounts.update_account(svc, user_id, _CHANGES[action])).for_admin()
    user = accounts.get_account(svc, user_id)
    if action == "revoke_sessions":
        now = svc.stamp()

        def revoke(conn: sqlite3.Connection) -> None:
            revoke_user_sessions(conn, user_id, now)
            revoke_admin_sessions(conn, user_id, now)

        await svc.db.write(revoke)
    elif action == "send_reset":
        if user.disabled:
            raise Forbidden(f"{user.email} is disabled: enable the account before sending a reset")
        await svc.send_one_time(user, "reset")
    return user.for_admin()


def add_routes(app: web.Application, site: Site) -> None:
    site.nav("users", "Users", "users")
    site.get(app, "users", page, permission="users")
    site.post(app, "users", create, permission="users")
    site.post(app, "users/{id}/{action}", act, permission="users")
    site.post(app, "users/{id}/identities/{identity}/unlink", unlink, permission="users")
