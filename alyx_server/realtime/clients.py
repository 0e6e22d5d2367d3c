"""`Client`: one realtime connection, its subscriptions and its bounded send queue.

`send` never waits. When nothing is queued and the connection's socket takes the frame at
once, `send` writes it there and then (the common case: no task switch per message);
otherwise the message joins the client's queue, which the client's own writer task
drains as the socket allows, so a slow consumer only ever slows itself. When its queue
holds `send_queue` messages and another one comes, the client is closed with code 1013
(try again later) and its queue dropped; nobody else waits for it.

The transport is whatever carries frames (the WebSocket handler passes an adapter): the
domain never sees aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from alyx_server.realtime.protocol import encode
from alyx_server.realtime.subscriptions import Access, Subscription

__all__ = ["CLOSE_OVERLOADED", "Client", "Transport"]

log = logging.getLogger("alyx.realtime")

CLOSE_OVERLOADED = 1013
"""WebSocket close code for a client that cannot keep up ("try again later")."""


class Transport(Protocol):
    """Where a client's frames go."""

    async def send(self, data: bytes) -> None: ...

    def write_now(self, data: bytes) -> bool:
        """Write the frame if the socket takes it without waiting; False: queue it instead."""
        ...

    async def close(self, code: int, message: str) -> None: ...


class Client:
    """One connection; see the module docstring."""

    __slots__ = (
        "_closed", "_closer", "_counted", "_next_sub", "_queue", "_sending", "_wake", "_writer", "access",
        "closing", "expired", "expires_at", "id", "limit", "subs", "transport",
    )  # fmt: skip

    def __init__(
        self,
        client_id: str,
        transport: Transport,
        access: Access,
        *,
        expires_at: float | None,
        limit: int,
        counted: Callable[[str], None],
        closed: Callable[[Client], None],
    ) -> None:
        self.id = client_id
        self.transport = transport
        self.access = access
        self.expires_at = expires_at
        self.expired = False
        self.closing = False
        self.limit = limit
        self.subs: dict[str, Subscription] = {}
        self._next_sub = 0
        self._queue: deque[tuple[str, bytes]] = deque()
        self._sending = False
        self._wake = asyncio.Event()
        self._counted = counted
        self._closed = closed
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Client({self.id})"

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"alyx-realtime-{self.id}")

    def next_subscription_id(self) -> str:
        self._next_sub += 1
        return f"{self.id}.{self._next_sub}"

    def check_expiry(self, now: float) -> bool:
        """Whether the token has expired; the first time, say so with TOKEN_EXPIRED."""
        if self.expired:
            return True
        if self.expires_at is None or now < self.expires_at:
            return False
        self.expired = True
        message = "the access token has expired: deliveries are paused; send auth with a fresh token"
        self.message("error", {"code": "TOKEN_EXPIRED", "message": message})
        return True

    # -- sending -------------------------------------------------------------------------
    def send(self, kind: str, data: bytes) -> None:
        """Queue one encoded message; overflow closes the client with 1013."""
        if self.closing:
            return
        if not self._queue and not self._sending and self.transport.write_now(data):
            self._counted(kind)
            return
        if len(self._queue) >= self.limit:
            log.warning("realtime client %s cannot keep up (%d queued): closing it", self.id, self.limit)
            self.close(CLOSE_OVERLOADED, "send queue full: the client does not keep up")
            return
        self._queue.append((kind, data))
        self._wake.set()

    def message(self, kind: str, payload: dict[str, Any], message_id: Any = None) -> None:
        self.send(kind, encode(kind, payload, message_id))

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _write(self) -> None:
        queue, wake, transport = self._queue, self._wake, self.transport
        try:
            while True:
                while queue:
                    kind, data = queue.popleft()
                    self._sending = True
                    try:
                        await transport.send(data)
                    finally:
                        self._sending = False
                    self._counted(kind)
                wake.clear()
                await wake.wait()
        except (ConnectionError, RuntimeError) as e:
            # The peer went away mid-write; the handler's receive loop ends the connection.
            log.debug("realtime client %s: write failed: %s", self.id, e)

    def close(self, code: int, message: str) -> None:
        """Stop sending and close the transport with `code` (in the background)."""
        if self.closing:
            return
        self.closing = True
        self._queue.clear()
        writer = self._writer
        if writer is not None:
            writer.cancel()
        self._closed(self)
        self._closer = asyncio.get_running_loop().create_task(self.transport.close(code, message))

    async def stop(self) -> None:
        """Free the writer task (the connection is over)."""
        self.closing = True
        self._queue.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
