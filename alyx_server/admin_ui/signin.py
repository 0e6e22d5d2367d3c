"""Signing in to the admin UI: the form, the session cookie, sign-out, one-time links.

    GET  <base>/login          the form (sets the pre-session cookie its CSRF token comes from)
    POST <base>/login          email + password + csrf_token: an admin gets a session cookie
                               and a redirect; a wrong password 401, a non-admin 403, too
                               many attempts 429 (auth.rate_limit.login, shared with
                               /api/auth/login and counted in the database)
    POST <base>/logout         ends the session (CSRF-checked like every state change)
    GET  <base>/link/{secret}  a one-time sign-in link (`alyx dev` prints one)

The session cookie (`alyx_admin`, or `__Host-alyx_admin` over HTTPS) is HttpOnly,
SameSite=Strict and Path=/ (the events WebSocket at /api/admin/events reads it too); it
is Secure when the request came over TLS, or from a proxy in server.trusted_proxies
that says `X-Forwarded-Proto: https`. It holds a random secret whose SHA-256 is the
session's row in `_alyx_admin_sessions` (auth/admin_sessions.py), so every worker
process sees the same sessions, and sign-out or expiry holds in all of them.

The sign-in form is CSRF-protected too (no one can sign a browser in to an account of
theirs): GET sets a short-lived pre-session cookie, and the form's token is derived from it.

`socket_admin(request)` is the events WebSocket's cookie check (api/admin.py calls it
through `BROWSER_AUTH`): a cookie-authenticated upgrade must come from a page of this
server (its `Origin` equals the server's own origin), or it is refused with 403.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from alyx_server.admin_ui.site import SITE, Admin, Site
from alyx_server.api.auth import AUTH_SERVICE, client_of
from alyx_server.api.pipeline import CLIENT_IP, HTTP_POLICY
from alyx_server.api.runtime import RUNTIME
from alyx_server.auth import AuthService, user_principal
from alyx_server.auth.admin_sessions import (
    AdminSession,
    close_admin_session,
    csrf_matches,
    csrf_token,
    find_admin_session,
    first_admin,
    issue_sign_in_link,
    open_admin_session,
    redeem_sign_in_link,
    touch_admin_session,
    touch_every,
)
from alyx_server.auth.passwords import MAX_PASSWORD_BYTES
from alyx_server.auth.tokens import new_secret
from alyx_server.auth.users import NO_ADMIN_HINT, normalize_email, user_by_email
from alyx_server.config import AdminUiSettings
from alyx_server.errors import AlyxError, Forbidden, RateLimited
from alyx_server.tools.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "SECURE_COOKIE",
    "DevSignIn",
    "add_routes",
    "cookie_admin",
    "dev_sign_in",
    "is_https",
    "own_origin",
    "socket_admin",
]

log = logging.getLogger("alyx.admin_ui")

COOKIE = "alyx_admin"
SECURE_COOKIE = "__Host-alyx_admin"
LOGIN_COOKIE = "alyx_admin_login"
LOGIN_FORM_TTL = 3600
_ENDED = {
    "expired": "Your session has expired; sign in again.",
    "idle": "Your session ended after a while without activity; sign in again.",
    "signed_out": "You are signed out.",
    "not_admin": "This account is no longer an administrator.",
}


# -- the request's scheme and origin --------------------------------------------------------
def is_https(request: web.Request) -> bool:
    """Whether the browser talks HTTPS to us: TLS here, or a trusted proxy says so."""
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https" and _from_trusted_proxy(request)


def _from_trusted_proxy(request: web.Request) -> bool:
    trusted = request.app[HTTP_POLICY].trusted
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return any(peer in net for net in trusted)


def own_origin(request: web.Request) -> str:
    """The origin the browser sees this server at (a trusted proxy's forwarded host counts)."""
    host = request.host
    if _from_trusted_proxy(request):
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or host
    return f"{'https' if is_https(request) else 'http'}://{host}".lower()


# -- sessions -------------------------------------------------------------------------------
def _settings(request: web.Request) -> AdminUiSettings:
    return request.app[RUNTIME].settings.admin_ui


def _secret_of(request: web.Request) -> str | None:
    value = request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE)
    return value if value and len(value) <= 128 and value.isascii() else None


async def _session(request: web.Request, secret: str) -> AdminSession | str:
    rt = request.app[RUNTIME]
    settings = rt.settings.admin_ui
    now_dt = rt.clock.now()
    now = format_timestamp(now_dt)
    idle_since = format_timestamp(now_dt - timedelta(seconds=settings.session_idle))
    db = rt.ready_db()
    found = await db.read(lambda conn: find_admin_session(conn, secret, now=now, idle_since=idle_since))
    if isinstance(found, AdminSession):
        seen = parse_timestamp(found.last_seen_at)
        if (now_dt - seen).total_seconds() >= touch_every(settings.session_idle):
            await db.write(lambda conn: touch_admin_session(conn, found.id, now))
    return found


async def cookie_admin(request: web.Request) -> Admin | None:
    """The admin of the request's session cookie; None without a live session (the reason
    is kept on the request for the sign-in page to show)."""
    secret = _secret_of(request)
    if secret is None:
        return None
    found = await _session(request, secret)
    if not isinstance(found, AdminSession):
        request[_ENDED_KEY] = found
        return None
    return Admin(user_principal(found.user, None), "cookie", csrf_token(secret), found.id)


_ENDED_KEY = web.RequestKey("alyx.admin_ui.ended", str)


async def socket_admin(request: web.Request) -> Admin | None:
    """The events WebSocket's cookie check: the admin of the cookie when the upgrade comes
    from this server's own pages; 403 from any other origin; None without a cookie."""
    if _secret_of(request) is None:
        return None
    origin = request.headers.get("Origin")
    expected = own_origin(request)
    if origin is None or origin.lower() != expected:
        raise Forbidden(
            f"a WebSocket signed in with the admin UI's cookie must come from {expected}, "
            f"not from {origin or 'a client that sends no Origin'}",
            code="ORIGIN_REFUSED",
        )
    admin = await cookie_admin(request)
    if admin is None:
        raise Forbidden("the admin UI session has ended; sign in again", code="SESSION_REVOKED")
    return admin


def _set_cookie(response: web.StreamResponse, request: web.Request, secret: str, max_age: float) -> None:
    secure = is_https(request)
    response.set_cookie(
        SECURE_COOKIE if secure else COOKIE, secret,
        max_age=int(max_age), path="/", httponly=True, samesite="Strict", secure=secure,
    )  # fmt: skip


def _clear_cookies(response: web.StreamResponse) -> None:
    for name in (COOKIE, SECURE_COOKIE):
        response.del_cookie(name, path="/")


async def _open(request: web.Request, user_id: str, *, link: str | None = None) -> str | None:
    """Open a session for `user_id` (redeeming `link` in the same write); its secret, or
    None when the link does not work."""
    rt = request.app[RUNTIME]
    settings = rt.settings.admin_ui
    secret = new_secret()
    now_dt = rt.clock.now()
    now = format_timestamp(now_dt)
    expires = format_timestamp(now_dt + timedelta(seconds=settings.session_max))
    client = client_of(request)

    def write(conn: Any) -> str | None:
        owner = user_id
        if link is not None:
            redeemed = redeem_sign_in_link(conn, link, now)
            if redeemed in ("unknown", "signed_out", "expired", "not_admin"):
                return None
            owner = redeemed
        open_admin_session(
            conn, user_id=owner, secret=secret, now=now, expires_at=expires,
            ip=client.ip, user_agent=client.user_agent,
        )  # fmt: skip
        return secret

    return await rt.ready_db().write(write)


def _safe_next(site: Site, value: object) -> str:
    """Where to go after signing in: a path of the UI, never another site."""
    if isinstance(value, str) and value.startswith(site.base + "/") and not any(c in value for c in "\\\r\n"):
        return value
    return site.url("")


# -- handlers ------------------------------------------------------------------------------
def _login_page(
    request: web.Request, site: Site, *, message: str | None = None, status: int = 200, email: str = ""
) -> web.Response:
    pre = request.cookies.get(LOGIN_COOKIE)
    fresh = not (pre and pre.isascii() and len(pre) <= 128)
    if fresh:
        pre = new_secret()
    assert pre is not None
    ended = request.get(_ENDED_KEY)
    notice = message or (_ENDED.get(ended) if isinstance(ended, str) else None)
    response = site.render(
        request,
        "login.html",
        {
            "login_csrf": csrf_token(pre, "login"),
            "message": notice,
            "error": status >= 400,
            "email": email,
            "next": _safe_next(site, request.query.get("next")),
        },
        status=status,
    )
    if fresh:
        response.set_cookie(
            LOGIN_COOKIE, pre, max_age=LOGIN_FORM_TTL, path=site.url("login"),
            httponly=True, samesite="Strict", secure=is_https(request),
        )  # fmt: skip
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    if await cookie_admin(request) is not None:
        raise web.HTTPSeeOther(_safe_next(site, request.query.get("next")))
    return _login_page(request, site)


async def login(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    form = await request.post()
    email_value, password = form.get("email"), form.get("password")
    email = email_value if isinstance(email_value, str) else ""
    pre = request.cookies.get(LOGIN_COOKIE)
    presented = form.get("csrf_token")
    if not (pre and isinstance(presented, str) and csrf_matches(pre, presented, "login")):
        return _login_page(
            request, site, status=403, email=email,
            message="The sign-in form expired or did not come from this server (CSRF check); try again.",
        )  # fmt: skip
    service: AuthService = request.app[AUTH_SERVICE]
    try:
        user_id = await _check_password(request, service, email, password)
    except AlyxError as e:
        response = _login_page(request, site, status=e.status, email=email, message=e.message)
        if isinstance(e, RateLimited):
            response.headers["Retry-After"] = str(e.retry_after)
        return response
    secret = await _open(request, user_id)
    assert secret is not None
    target = _safe_next(site, form.get("next"))
    response = web.Response(status=303, headers={"Location": target})
    _set_cookie(response, request, secret, _settings(request).session_max)
    response.del_cookie(LOGIN_COOKIE, path=site.url("login"))
    log.info("admin UI sign-in: %s from %s", email, request[CLIENT_IP])
    return response


async def _check_password(request: web.Request, service: AuthService, email: str, password: object) -> str:
    """The account id of an admin with this email and password, or the error to show."""
    from alyx_server.errors import Unauthorized

    try:
        address = normalize_email(email)
    except AlyxError as e:
        raise Unauthorized("the email or the password is wrong") from e
    if not isinstance(password, str) or len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise Unauthorized("the email or the password is wrong")
    await service.login_limit.hit(f"ip:{request[CLIENT_IP]}", f"email:{address}")
    user = service.db.read_now(lambda conn: user_by_email(conn, address))
    if not await service.hasher.verify(password, user.password_hash if user else None) or user is None:
        raise Unauthorized("the email or the password is wrong")
    if user.disabled:
        raise Forbidden("this account is disabled")
    if user.role != "admin":
        raise Forbidden("this account is not an administrator; the admin UI is for administrators only")
    return user.id


async def logout(request: web.Request, admin: Admin) -> web.StreamResponse:
    site = request.app[SITE]
    secret = _secret_of(request)
    rt = request.app[RUNTIME]
    if secret is not None:
        now = format_timestamp(rt.clock.now())
        await rt.ready_db().write(lambda conn: close_admin_session(conn, secret, now))
    response = web.Response(status=303, headers={"Location": site.url("login")})
    _clear_cookies(response)
    return response


async def link(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    secret = await _open(request, "", link=request.match_info["secret"])
    if secret is None:
        return _login_page(
            request, site, status=401,
            message="This sign-in link is invalid, expired or already used; sign in with your password.",
        )  # fmt: skip
    response = web.Response(status=303, headers={"Location": site.url("")})
    _set_cookie(response, request, secret, _settings(request).session_max)
    return response


@dataclass(frozen=True, slots=True)
class DevSignIn:
    """What `alyx dev` prints about the admin UI: its path, and a one-time sign-in link
    for the oldest admin account (None, with a hint instead, when there is none)."""

    base: str
    link: str | None
    email: str | None
    minutes: int

    def line(self, url: str) -> str:
        """The console line, for a server at `url` (`http://127.0.0.1:8000`)."""
        if self.link is None or self.email is None:
            return f"Admin UI: {url}{self.base}/ ({NO_ADMIN_HINT}, then sign in there)"
        return (
            f"Admin UI: {url}{self.base}/ - sign in as {self.email} with {url}{self.link} "
            f"(works once, for {self.minutes} min)"
        )


async def dev_sign_in(app: web.Application) -> DevSignIn:
    """Store a new one-time sign-in link for the oldest enabled admin account."""
    rt = app[RUNTIME]
    site = app[SITE]
    ttl = rt.settings.admin_ui.link_ttl
    secret = new_secret()
    now_dt = rt.clock.now()
    now, expires = format_timestamp(now_dt), format_timestamp(now_dt + timedelta(seconds=ttl))

    def write(conn: Any) -> str | None:
        admin = first_admin(conn)
        if admin is None:
            return None
        issue_sign_in_link(conn, user_id=admin.id, secret=secret, now=now, expires_at=expires)
        return admin.email

    email = await rt.ready_db().write(write)
    minutes = max(1, round(ttl / 60))
    link_path = site.url("link/" + secret) if email is not None else None
    return DevSignIn(site.base, link_path, email, minutes)


def add_routes(app: web.Application, site: Site) -> None:
    site.public(app, "GET", "login", login_form)
    site.public(app, "POST", "login", login)
    site.public(app, "GET", "link/{secret}", link)
    site.post(app, "logout", logout, permission="*")
