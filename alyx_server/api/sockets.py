"""The Origin rule for WebSockets that a browser's cookie can authenticate.

A browser attaches cookies to a WebSocket handshake whatever page opens it and applies no
CORS check to it, so a socket authenticated by a cookie could be opened by any web site
the user visits (cross-site WebSocket hijacking). Every such socket must call
`check_socket_origin` before its upgrade. The handshake is accepted when:

    no Origin header         not a browser (browsers always send one on a WebSocket)
    the server's own origin  the Origin's host[:port] is the request's Host
    an allowed origin        listed in `server.cors.allowed_origins`; `*` does not count,
                             since it would let every site in

Sockets authenticated only by a token (`/api/realtime`, `/api/admin/events`: a header,
`?token=` or an `auth` message) need no such check: a foreign page cannot read the token.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from alyx_server.api.pipeline import HTTP_POLICY
from alyx_server.errors import Forbidden

__all__ = ["check_socket_origin"]


def check_socket_origin(request: web.Request) -> None:
    """Refuse (403 FORBIDDEN) a handshake from a foreign browser origin; see the module docstring."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    own = request.host.lower()
    if _netloc(origin) == own:
        return
    policy = request.app.get(HTTP_POLICY)
    allowed = [o for o in (policy.origins if policy is not None else ()) if o != "*"]
    if origin in allowed:
        return
    listed = ", ".join(allowed) if allowed else "none"
    raise Forbidden(
        f"WebSocket from origin {origin!r} refused: a socket authenticated by a cookie accepts only "
        f"its own origin (host {own}) or one listed in server.cors.allowed_origins (* does not count; "
        f"listed: {listed}); add the origin there if it is yours"
    )


def _netloc(origin: str) -> str | None:
    """The host[:port] of an Origin value (None for `null` or anything that is not a URL)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        return None
    return parts.netloc.lower()
