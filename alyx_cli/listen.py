"""Bind the server's port before anything else starts, and word a failure for the user.

`alyx serve` and `alyx dev` bind `server.host`/`server.port` before the application opens
the database, so a port in use changes nothing (no migration, no new database file). The
error names where the port came from (the -p flag, ALYX_SERVER_PORT, server.port in
alyx.yaml or the default) and how to choose another one.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping

from alyx_cli.output import CommandError, describe_os_error
from alyx_server.config import Settings
from alyx_server.config.sources import read_environment, read_file

__all__ = ["listen", "port_source"]

_PORT_KEY = "server.port"
_PORT_VARIABLE = "ALYX_SERVER_PORT"


def port_source(settings: Settings, flag: int | None, environ: Mapping[str, str] | None = None) -> str:
    """Where `server.port` came from, as the user would change it."""
    if flag is not None:
        return "from -p/--port"
    environ = os.environ if environ is None else environ
    # The same sources load_settings read a moment ago (so they parse), latest winning.
    if any(g.key.path == _PORT_KEY and g.raw is not None for g in read_environment(environ)):
        return f"from {_PORT_VARIABLE}"
    display = settings.config_file.name
    for given in reversed(read_file(settings.config_file, display, environ)):
        if given.key.path == _PORT_KEY and given.raw is not None:
            line = f":{given.location.line}" if given.location.line else ""
            return f"from {_PORT_KEY} in {given.location.file}{line}"
    return f"the default {_PORT_KEY}"


def listen(settings: Settings, command: str, flag: int | None) -> list[socket.socket]:
    """The bound listening sockets for `settings.server`, or one CommandError naming the
    port's source and how to pick another (`command` is `serve` or `dev`)."""
    from alyx_server.listeners import bind_listeners

    host, port = settings.server.host, settings.server.port
    try:
        return bind_listeners(host, port)
    except OSError as e:
        source = port_source(settings, flag)
        other = 8091 if port == 8090 else 8090
        how = (
            f"choose another port with `alyx {command} -p {other}`, "
            f"{_PORT_VARIABLE}={other} or {_PORT_KEY} in {settings.config_file.name}"
        )
        if e.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {port} ({source}) is already in use on {host}: stop the program "
                f"listening there, or {how}"
            ) from e
        if isinstance(e, socket.gaierror):
            raise CommandError(
                f"cannot listen on server.host {host!r}: {e.strerror or e}; "
                "use an address of this machine such as 127.0.0.1 or 0.0.0.0 (--host)"
            ) from e
        raise CommandError(
            f"cannot listen on {host} port {port} ({source}): {describe_os_error(e)}; {how}"
        ) from e
