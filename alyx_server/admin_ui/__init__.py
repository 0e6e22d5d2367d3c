"""The browser admin UI at `admin_ui.path` (default `/_admin`; docs/admin.md).

Pages are rendered on the server with Jinja2 (autoescaped), styled by one stylesheet and
enhanced by small JavaScript modules; no build step, nothing from another origin. The
templates and static files live in this package and ship in the wheel.

    site.py      `Site`: routes wrapped with the sign-in and CSRF checks, rendering,
                 errors as pages, the safety headers, static files, the navigation
    signin.py    the sign-in form, the session cookie, sign-out, one-time links, the
                 events WebSocket's cookie and Origin check
    overview.py  the overview page (health, traffic, realtime, functions, database, deploys)
    templates/   base.html (the layout) and one template per page
    static/      admin.css, admin.js (shared helpers) and one module per live page

Adding a page (say, `users`):

1. `admin_ui/users.py` with handlers `async def page(request, admin) -> web.StreamResponse`
   and an `add_routes(app, site)` that calls `site.nav("users", "Users", "users")` (the
   slot must be one of `site.NAV_SLOTS`; a page takes its place in the navigation only
   when it exists) and registers each route with `site.get` / `site.post` /
   `site.route(app, method, path, handler, permission=...)`. Paths are relative to the
   base (`"users/{id}"`); `permission` is what an admin token needs (admin users have
   every permission).
2. Add the module to `PAGES` below.
3. `templates/users.html` extends `base.html` and fills `{% block content %}` (and
   `{% block title %}`; `{% block scripts %}` for its module, written
   `<script type="module" src="{{ static('users.js') }}"></script>`).
   Render with `site.render(request, "users.html", {...}, admin=admin)`.
4. Every state-changing form carries `{{ csrf_field() }}` (a macro of base.html; it
   renders `<input type="hidden" name="csrf_token" ...>`); JavaScript sends changes with
   `send(url, {method, json | form})` from admin.js, which adds the `X-CSRF-Token`
   header from `<meta name="csrf-token">`. The wrapper refuses a cookie request without
   it (403 CSRF_FAILED) before the handler runs.
5. Raise `AlyxError`s (`NotFound`, `ValidationError`...) for failures: the wrapper renders
   them as the error page, or as JSON for scripts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from alyx_server.admin_ui import data, deploys, functions, logs, overview, schema, signin, tokens, users
from alyx_server.admin_ui.signin import DevSignIn, dev_sign_in
from alyx_server.admin_ui.site import NAV_SLOTS, SITE, Admin, Site
from alyx_server.api.admin import BROWSER_AUTH
from alyx_server.api.runtime import RUNTIME
from alyx_server.auth import AuthContext

__all__ = [
    "NAV_SLOTS",
    "PAGES",
    "SITE",
    "Admin",
    "DevSignIn",
    "Site",
    "add_admin_ui",
    "console_line",
]

PAGES: tuple[Callable[[web.Application, Site], None], ...] = (
    signin.add_routes,
    overview.add_routes,
    data.add_routes,
    functions.add_routes,
    logs.add_routes,
    schema.add_routes,
    users.add_routes,
    tokens.add_routes,
    deploys.add_routes,
)
"""Each page module's `add_routes(app, site)`, in any order (the navigation follows NAV_SLOTS)."""


def add_admin_ui(app: web.Application) -> None:
    """Serve the admin UI on `app` when admin_ui.enabled (app.py calls this)."""
    settings = app[RUNTIME].settings.admin_ui
    if not settings.enabled:
        return
    site = Site(settings.path, cookie_auth=signin.cookie_admin)
    app[SITE] = site
    app[BROWSER_AUTH] = _socket_auth
    for add_routes in PAGES:
        add_routes(app, site)
    site.public(app, "GET", "static/{name}", site.static)

    async def to_index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(site.url(""))

    app.router.add_get(settings.path, to_index)
    site.public(app, "*", "{tail:.*}", _not_found)
    if app[RUNTIME].settings.mode == "dev":
        app.cleanup_ctx.append(_dev_link_context)


def console_line(app: web.Application, url: str) -> str | None:
    """What `alyx dev` prints below its banner: the admin UI's address and one-time
    sign-in link (or how to make an admin account); None when there is nothing to say."""
    site = app.get(SITE)
    if site is None or site.dev_sign_in is None:
        return None
    line: str = site.dev_sign_in.line(url.rstrip("/"))
    return line


async def _socket_auth(request: web.Request) -> AuthContext | None:
    admin = await signin.socket_admin(request)
    return None if admin is None else admin.auth


async def _not_found(request: web.Request) -> web.StreamResponse:
    from alyx_server.errors import NotFound

    raise NotFound(f"no admin UI page at {request.path}")


@contextlib.asynccontextmanager
async def _dev_link_context(app: web.Application) -> AsyncIterator[None]:
    # After the database context: the link is a row in it.
    app[SITE].dev_sign_in = await dev_sign_in(app)
    yield
