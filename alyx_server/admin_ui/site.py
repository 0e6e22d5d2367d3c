"""`Site`: the admin UI's routes, templates, static files and safety headers.

Every UI route goes through `Site.route` (or `get`/`post`), which wraps its handler:

    1. who is calling: an admin token or an admin user's access token (`Authorization:
       Bearer`, authenticated by the pipeline), or the admin UI's session cookie
       (signin.py). Nobody: a page redirects to the sign-in form, anything else gets 401;
       somebody who is not an admin: 403, never a page.
    2. for a state-changing method (anything but GET and HEAD) under the cookie, the
       CSRF token of the session, from the `csrf_token` form field or the `X-CSRF-Token`
       header; missing or wrong: 403 with a message saying so. Bearer callers send no
       cookie a browser could attach by itself, so they need no token.
    3. the handler, called as `handler(request, admin)`.
    4. the safety headers on whatever comes back, errors included (`SAFETY_HEADERS`,
       plus `Cache-Control: no-store` on everything but the static files).

Errors raised by a handler (`AlyxError`) become an HTML error page for browsers and the
JSON envelope of SPEC §7 for callers that ask for JSON or come with a bearer token.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import markupsafe
from aiohttp import web

from alyx_server import __version__
from alyx_server.api.auth import caller
from alyx_server.api.collections import AUTH
from alyx_server.api.pipeline import REQUEST_ID, error_body, json_response
from alyx_server.auth import AuthContext
from alyx_server.errors import AlyxError, Forbidden, RateLimited, Unauthorized

if TYPE_CHECKING:
    import jinja2
    import jinja2.runtime

__all__ = [
    "NAV_SLOTS",
    "SAFETY_HEADERS",
    "SITE",
    "STATIC_DIR",
    "TEMPLATE_DIR",
    "Admin",
    "NavItem",
    "PageHandler",
    "Site",
    "wants_json",
]

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

NAV_SLOTS = ("overview", "schema", "data", "users", "functions", "logs", "migrations", "tokens")
"""The navigation's order. A page takes its slot with `Site.nav`; a slot without a page
is not shown."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SAFETY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Admin:
    """Who is using the UI: an admin user (cookie session or bearer token) or an admin token.

    `csrf` is the session's CSRF token (None for bearer callers, who need none);
    `session_id` the admin UI session (None for bearer callers)."""

    auth: AuthContext
    via: Literal["cookie", "bearer"]
    csrf: str | None = None
    session_id: str | None = None

    @property
    def name(self) -> str:
        """What the header shows: the email, or the token's name."""
        return str(self.auth.get("email") or self.auth.get("name") or self.auth.id)


PageHandler = Callable[[web.Request, Admin], Awaitable[web.StreamResponse]]
PublicHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CookieAuth = Callable[[web.Request], Awaitable[Admin | None]]


@dataclass(frozen=True, slots=True)
class NavItem:
    slot: str
    title: str
    path: str


@dataclass
class Site:
    """The admin UI of one application, mounted at `base` (admin_ui.path)."""

    base: str
    cookie_auth: CookieAuth | None = None
    nav_items: dict[str, NavItem] = field(default_factory=dict)
    dev_sign_in: Any = None
    """Under `alyx dev`: the one-time sign-in link made at start (signin.DevSignIn)."""
    filters: dict[str, Callable[..., Any]] = field(default_factory=dict)
    """The pages' template filters (`site.filters["cell"] = cell`), set before the first render."""
    static_files: dict[str, tuple[bytes, str, str]] = field(init=False)
    _env: jinja2.Environment | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.static_files = _load_static(STATIC_DIR)

    @property
    def env(self) -> jinja2.Environment:
        """The templates' environment, made (and Jinja2 imported) by the first page rendered:
        a server whose admin UI is never opened does not load Jinja2."""
        if self._env is None:
            import jinja2

            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.globals.update(
                url=self.url, static=self.static_url, version=__version__,
                csrf_field=jinja2.pass_context(_csrf_field),
            )  # fmt: skip
            env.filters.update(self.filters)
            self._env = env
        return self._env

    # -- URLs -------------------------------------------------------------------------------
    def url(self, path: str = "", **query: str) -> str:
        """The absolute path of a UI page: `url("data/posts")` -> `/_admin/data/posts`."""
        out = f"{self.base}/{path.lstrip('/')}"
        if query:
            out += "?" + "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in query.items())
        return out

    def static_url(self, name: str) -> str:
        """A static file's URL, with its content hash so browsers may cache it for good.

        JavaScript modules are the exception: they import each other by relative URL
        (`./admin.js`), which must be the very URL the page loads, or the browser would run
        a module twice; they are revalidated with their ETag instead."""
        if name not in self.static_files:
            raise KeyError(f"no static file {name!r} in {STATIC_DIR}")
        if name.endswith(".js"):
            return f"{self.base}/static/{name}"
        return f"{self.base}/static/{name}?v={self.static_files[name][2]}"

    # -- registration -----------------------------------------------------------------------
    def nav(self, slot: str, title: str, path: str) -> None:
        """Show a page in the navigation, in its slot of `NAV_SLOTS`."""
        if slot not in NAV_SLOTS:
            raise ValueError(f"unknown navigation slot {slot!r}; one of {', '.join(NAV_SLOTS)}")
        self.nav_items[slot] = NavItem(slot, title, self.url(path))

    def navigation(self) -> list[NavItem]:
        return [self.nav_items[s] for s in NAV_SLOTS if s in self.nav_items]

    def get(self, app: web.Application, path: str, handler: PageHandler, *, permission: str) -> None:
        self.route(app, "GET", path, handler, permission=permission)

    def post(self, app: web.Application, path: str, handler: PageHandler, *, permission: str) -> None:
        self.route(app, "POST", path, handler, permission=permission)

    def route(
        self, app: web.Application, method: str, path: str, handler: PageHandler, *, permission: str
    ) -> None:
        """An admin-only route at `base/path` (see the module docstring). `permission`: what
        an admin token needs to call it (one of auth/admin_tokens.py's PERMISSIONS; admin
        users have them all)."""
        app.router.add_route(method, self.url(path), self._guarded(handler, permission))

    def public(self, app: web.Application, method: str, path: str, handler: PublicHandler) -> None:
        """A route anyone may reach (sign-in, static files), with the safety headers."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                response = await handler(request)
            except AlyxError as e:
                response = self.error(request, e)
            except web.HTTPRedirection as redirect:
                response = web.Response(status=redirect.status, headers=redirect.headers)
            return self.secure(response)

        app.router.add_route(method, self.url(path), wrapped)

    # -- the wrapper ------------------------------------------------------------------------
    def _guarded(self, handler: PageHandler, permission: str) -> PublicHandler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                admin = await self.admin_of(request, permission)
                if admin is None:
                    if request.method in _SAFE_METHODS and not wants_json(request):
                        raise web.HTTPSeeOther(self.url("login", next=request.path_qs))
                    raise Unauthorized("sign in to the admin UI, or send an admin token")
                if admin.via == "cookie" and request.method not in _SAFE_METHODS:
                    await self.check_csrf(request, admin)
                request[AUTH] = admin.auth
                response = await handler(request, admin)
            except AlyxError as e:
                response = self.error(request, e)
            except web.HTTPRedirection as redirect:
                response = web.Response(status=redirect.status, headers=redirect.headers)
            return self.secure(response)

        return guarded

    async def admin_of(self, request: web.Request, permission: str) -> Admin | None:
        """The admin behind a request, None when nobody is signed in; 403 for non-admins."""
        auth = caller(request)
        if auth is not None:
            if not auth.allows(permission):
                raise Forbidden(
                    f"the admin UI is for administrators (or admin tokens with the {permission!r} permission)"
                )
            return Admin(auth, "bearer")
        return None if self.cookie_auth is None else await self.cookie_auth(request)

    async def check_csrf(self, request: web.Request, admin: Admin) -> None:
        presented = request.headers.get("X-CSRF-Token")
        if presented is None and request.content_type in _FORM_TYPES:
            form = await request.post()
            value = form.get("csrf_token")
            presented = value if isinstance(value, str) else None
        if not presented:
            raise Forbidden(
                "this request has no CSRF token: send the page's csrf_token form field "
                "or the X-CSRF-Token header",
                code="CSRF_FAILED",
            )
        if admin.csrf is None or not _same(presented, admin.csrf):
            raise Forbidden(
                "the CSRF token does not match this session: reload the page and try again",
                code="CSRF_FAILED",
            )

    # -- responses --------------------------------------------------------------------------
    def render(
        self,
        request: web.Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        admin: Admin | None = None,
        status: int = 200,
    ) -> web.Response:
        """A page from `templates/<template>` with the base context: `admin`, `csrf_token`,
        `nav`, `current` (the request path) and `request_id`."""
        values: dict[str, Any] = {
            "admin": admin,
            "csrf_token": admin.csrf if admin is not None else None,
            "nav": self.navigation(),
            "current": request.path,
            "request_id": request.get(REQUEST_ID, ""),
        }
        if context:
            values.update(context)
        html = self.env.get_template(template).render(values)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def error(self, request: web.Request, error: AlyxError) -> web.Response:
        """An error as a page, or as the JSON envelope for JSON and bearer callers."""
        status = error.status if 400 <= error.status < 600 else 500
        message = error.message if status != 500 else "internal error"
        headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RateLimited) else {}
        request_id = request.get(REQUEST_ID, "")
        if wants_json(request):
            response = json_response(error_body(message, error.code, request_id, error.details), status)
        else:
            response = self.render(
                request,
                "error.html",
                {"status": status, "message": message, "code": error.code},
                status=status,
            )
        response.headers.update(headers)
        return response

    def secure(self, response: web.StreamResponse, *, cache: bool = False) -> web.StreamResponse:
        """Add the safety headers (and, unless `cache`, forbid caching)."""
        if not response.prepared:
            response.headers.update(SAFETY_HEADERS)
            if not cache and "Cache-Control" not in response.headers:
                response.headers["Cache-Control"] = "no-store"
        return response

    async def static(self, request: web.Request) -> web.StreamResponse:
        found = self.static_files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type, digest = found
        headers = {"ETag": f'"{digest}"'}
        headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if request.query.get("v") == digest else "no-cache"
        )
        if request.headers.get("If-None-Match") == headers["ETag"]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=content_type, headers=headers)


def _csrf_field(context: jinja2.runtime.Context) -> markupsafe.Markup:
    """`{{ csrf_field() }}`: the hidden CSRF input every state-changing form carries."""
    token = context.get("csrf_token") or ""
    return markupsafe.Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)


_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _same(a: str, b: str) -> bool:
    import hmac

    return a.isascii() and hmac.compare_digest(a, b)


def wants_json(request: web.Request) -> bool:
    """Whether the caller reads JSON: it said so, or it is a script with a bearer token."""
    accept = request.headers.get("Accept", "")
    return (
        ("application/json" in accept and "text/html" not in accept)
        or "Authorization" in request.headers
        or request.path.endswith(".json")
    )


def _load_static(folder: Path) -> dict[str, tuple[bytes, str, str]]:
    """Every file of `static/`: (bytes, content type, short content hash), read once."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            data = path.read_bytes()
            kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            files[path.name] = (data, kind, hashlib.sha256(data).hexdigest()[:16])
    return files


_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

SITE = web.AppKey("alyx.admin_ui", Site)
"""The application's admin UI (set by `add_admin_ui`, absent when admin_ui.enabled is off)."""
