"""The tokens page: admin and deploy tokens, created (the secret shown once), listed, revoked.

    GET  <base>/tokens                the list (newest first, revoked ones included) and the form
    POST <base>/tokens                create: name, kind (admin | deploy), permissions, expires
                                      (a duration such as 30d; empty: never); answers the
                                      page with the new secret, once
    POST <base>/tokens/{id}/revoke    revoke at once; the server refuses the token from the
                                      next request on

The same store as `alyx admin create-token | list-tokens | revoke-token`
(auth/admin_tokens.py): only the SHA-256 of a secret is kept, so the page that answers
the creation is the only place the secret ever appears; it is not in a URL, and the
answer is `Cache-Control: no-store` like every page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from alyx_server.admin_ui.site import SITE, Admin, Site, wants_json
from alyx_server.api.pipeline import json_response
from alyx_server.api.runtime import RUNTIME
from alyx_server.auth.admin_tokens import (
    PERMISSIONS,
    TokenKind,
    TokenRecord,
    create_token,
    list_tokens,
    revoke_token,
)
from alyx_server.errors import AlyxError, FieldIssue, ValidationError
from alyx_server.tools.durations import parse_duration
from alyx_server.tools.timestamps import format_timestamp

__all__ = ["add_routes"]

MAX_NAME = 100


def _state(token: TokenRecord, now: str) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "live"


async def _render(
    request: web.Request,
    admin: Admin,
    *,
    created: dict[str, Any] | None = None,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    rt = request.app[RUNTIME]
    now = format_timestamp(rt.clock.now())
    tokens = await rt.ready_db().read(list_tokens)
    rows = [{**t.to_dict(), "state": _state(t, now)} for t in tokens]
    return request.app[SITE].render(
        request,
        "tokens.html",
        {
            "tokens": rows,
            "permissions": PERMISSIONS,
            "created": created,
            "form_error": error,
            "form": form or {"name": "", "kind": "admin", "permissions": [], "expires": ""},
            "notice": notice,
        },
        admin=admin,
        status=status,
    )


async def page(request: web.Request, admin: Admin) -> web.StreamResponse:
    notice = None
    if request.query.get("done") == "revoked":
        name = request.query.get("name", "")
        notice = f"Revoked the token {name!r}." if name else "Revoked the token."
    return await _render(request, admin, notice=notice)


def _expiry(text: str, now: Any) -> str | None:
    if not text.strip():
        return None
    try:
        seconds = parse_duration(text.strip())
    except ValueError as e:
        message = f"expires: {e}; leave it empty for a token that never expires"
        raise ValidationError(message, [FieldIssue("expires", "invalid", message)]) from e
    if seconds <= 0:
        message = "expires must be a positive duration such as 30d, or empty for never"
        raise ValidationError(message, [FieldIssue("expires", "invalid", message)])
    return format_timestamp(now + timedelta(seconds=seconds))


async def create(request: web.Request, admin: Admin) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    form = await request.post()
    name = str(form.get("name") or "").strip()
    kind: TokenKind = "deploy" if form.get("kind") == "deploy" else "admin"
    permissions = tuple(str(p) for p in form.getall("permissions", []))
    expires = str(form.get("expires") or "")
    kept = {"name": name, "kind": kind, "permissions": list(permissions), "expires": expires}
    now_dt = rt.clock.now()
    try:
        if len(name) > MAX_NAME:
            raise ValidationError(f"a token name has at most {MAX_NAME} characters")
        expires_at = _expiry(expires, now_dt)
        secret, token = await rt.ready_db().write(
            lambda conn: create_token(
                conn, name=name, kind=kind, permissions=permissions, expires_at=expires_at,
                now=format_timestamp(now_dt),
            )
        )  # fmt: skip
    except AlyxError as e:
        if wants_json(request):
            raise
        return await _render(request, admin, error=e.message, form=kept)
    if wants_json(request):
        return json_response({"token": secret, **token.to_dict()}, 201)
    return await _render(request, admin, created={"secret": secret, **token.to_dict()}, status=201)


async def revoke(request: web.Request, admin: Admin) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    ident = request.match_info["id"]
    now = format_timestamp(rt.clock.now())
    token = await rt.ready_db().write(lambda conn: revoke_token(conn, ident, now))
    if wants_json(request):
        return json_response(token.to_dict())
    raise web.HTTPSeeOther(request.app[SITE].url("tokens", done="revoked", name=token.name))


def add_routes(app: web.Application, site: Site) -> None:
    site.nav("tokens", "Tokens", "tokens")
    site.get(app, "tokens", page, permission="tokens")
    site.post(app, "tokens", create, permission="tokens")
    site.post(app, "tokens/{id}/revoke", revoke, permission="tokens")
