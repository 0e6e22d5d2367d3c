"""One worker of `alyx serve --workers N`: the application on the inherited listening sockets.

What `alyx serve` does alone (create_app, then app.serve until SIGTERM), plus the control
channel: `ready` once the sockets listen and the start-up migrations are done, `failed
<message>` when start-up fails, and a stop of its own when the supervisor is gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable

from alyx_server.api.runtime import RUNTIME, Runtime
from alyx_server.app import create_app, serve
from alyx_server.config import Settings
from alyx_server.logs import configure_logging
from alyx_server.workers.supervisor import ACCEPT_BATCH, WorkerChannel

__all__ = ["SharedListener", "serve_worker"]

_READY_POLL = 0.02  # seconds between looks at the start-up phase (start-up only)


class SharedListener(socket.socket):
    """A listening socket shared with the other workers, whose `listen()` changes nothing.

    asyncio calls `listen(backlog)` on a socket it is given to serve, with the number of
    connections to accept per wake-up; on a shared socket that would also shrink the
    kernel's accept queue for every worker. The supervisor set the queue's length once.
    """

    def listen(self, backlog: int = 0, /) -> None:
        return None


def shared(sock: socket.socket) -> SharedListener:
    """This process's copy of an inherited listening socket, as a SharedListener."""
    return SharedListener(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))


def serve_worker(
    settings: Settings,
    sockets: list[socket.socket],
    channel: WorkerChannel,
    *,
    on_started: Callable[[], None] | None = None,
) -> int:
    """Serve `settings`' application on `sockets` until SIGTERM; the exit status.

    Start-up errors propagate (the supervisor reports them); `on_started` runs once the
    worker is ready.
    """
    configure_logging(settings.logging)
    app = create_app(settings)
    rt = app[RUNTIME]
    listeners: list[socket.socket] = [shared(sock) for sock in sockets]
    for sock in sockets:
        sock.close()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        handover = asyncio.Event()
        channel.watch(handover.set, lambda: os.kill(os.getpid(), signal.SIGTERM))
        tasks: set[asyncio.Task[None]] = set()

        def listening(_url: str) -> None:
            task = loop.create_task(_announce(rt, channel, on_started), name="alyx-worker-ready")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        host, port = settings.server.host, settings.server.port
        return await serve(
            app, host, port, on_started=listening, sockets=listeners, accept_batch=ACCEPT_BATCH,
            handover=handover, listen_when_ready=not channel.leads,
        )  # fmt: skip

    try:
        with asyncio.Runner() as runner:
            return runner.run(main())
    finally:
        for sock in listeners:
            sock.close()


async def _announce(rt: Runtime, channel: WorkerChannel, on_started: Callable[[], None] | None) -> None:
    """Say `ready` once the start-up migrations are done, or `failed` if they fail."""
    while rt.phase != "ready":
        if rt.fatal.is_set():
            channel.failed(rt.failure or "start-up failed")
            return
        await asyncio.sleep(_READY_POLL)
    channel.ready()
    if on_started is not None:
        on_started()
