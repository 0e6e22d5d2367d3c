"""What `alyx serve` needs before the application: its listening sockets and start line.

Kept apart from app.py so that the supervisor of `alyx serve --workers N`, which binds the
port and prints the line but never runs the application, does not import it (the workers
do; docs/workers.md, "Memory"). app.py re-exports these names.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from alyx_server import __version__

if TYPE_CHECKING:
    from alyx_server.config import Settings

__all__ = ["BACKLOG", "banner", "bind_listeners"]

BACKLOG = 1024


def banner(settings: Settings, url: str, workers: int = 1) -> str:
    """The one line printed at start."""
    how = f"{settings.mode}, {workers} workers" if workers > 1 else settings.mode
    return f"Alyx {__version__} serving {settings.project_dir} at {url} ({how})"


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on `port` for every address `host` resolves to, bound now.

    What asyncio's `create_server(host, port)` binds, done before the application starts,
    so that a port in use (OSError EADDRINUSE) is found before anything is changed. The
    sockets are handed to `serve(..., sockets=...)`, which closes them on shutdown.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    bound: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound
