"""`Client`: one realtime connection, its subscriptions and its bounded send queue.

`send` never waits. When nothing is queued and the connection's socket takes the frame at
once, `send` writes it there and then (the common case: no task switch per message);
otherwise the message joins the client's queue, which the client's own writer task
drains as the socket allows, so a slow consumer only ever slows itself. The queue is
bounded twice: by messages (`send_queue`) and by bytes (`max_queued_bytes`, so that large
documents cannot pile up hundreds of megabytes behind a client that does not read). When
a message would cross either bound, the client is closed with code 1013 (try again
later) and its queue dropped at once; nobody else waits for it. One message larger than
the byte bound alone is still queued when nothing else waits (a big snapshot is not a
slow client).

A message may come in two parts, `data` and a `tail` that many clients share (the body of
a delta fanned out to every subscriber): the queue keeps the tail by reference, so ten
slow clients hold one copy of a large document, not ten. The parts are joined only as
the frame goes out.

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

__all__ = ["CLOSE_OVERLOADED", "QUEUE_BYTES_FULL", "QUEUE_FULL", "Client", "Transport"]

log = logging.getLogger("alyx.realtime")

CLOSE_OVERLOADED = 1013
"""WebSocket close code for a client that cannot keep up ("try again later")."""
QUEUE_FULL = "send queue full: the client does not keep up"
QUEUE_BYTES_FULL = "send queue over realtime.max_queued_bytes: the client does not keep up"


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
        "_closed", "_closer", "_counted", "_next_sub", "_queue", "_queued_bytes", "_sending", "_wake",
        "_writer", "access", "closing", "expired", "expires_at", "id", "limit", "max_bytes", "subs",
        "transport",
    )  # fmt: skip

    def __init__(
        self,
        client_id: str,
        transport: Transport,
        access: Access,
        *,
        expires_at: float | None,
        limit: int,
        max_bytes: int,
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
        self.max_bytes = max_bytes
        self.subs: dict[str, Subscription] = {}
        self._next_sub = 0
        self._queue: deque[tuple[str, bytes, bytes]] = deque()
        self._queued_bytes = 0
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
    def send(self, kind: str, data: bytes, tail: bytes = b"") -> None:
        """Queue one encoded message, `data` then `tail` (a tail shared with other clients
        is queued by reference); overflow closes the client with 1013."""
        if self.closing:
            return
        queue = self._queue
        if not queue and not self._sending and self.transport.write_now(data + tail if tail else data):
            self._counted(kind)
            return
        size = len(data) + len(tail)
        if len(queue) >= self.limit:
            log.warning("realtime client %s cannot keep up (%d queued): closing it", self.id, self.limit)
            self.close(CLOSE_OVERLOADED, QUEUE_FULL)
            return
        if queue and self._queued_bytes + size > self.max_bytes:
            log.warning(
                "realtime client %s cannot keep up (%d bytes queued, %d more): closing it",
                self.id, self._queued_bytes, size,
            )  # fmt: skip
            self.close(CLOSE_OVERLOADED, QUEUE_BYTES_FULL)
            return
        queue.append((kind, data, tail))
        self._queued_bytes += size
        self._wake.set()

    def message(self, kind: str, payload: dict[str, Any], message_id: Any = None) -> None:
        self.send(kind, encode(kind, payload, message_id))

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    async def _write(self) -> None:
        queue, wake = self._queue, self._wake
        try:
            while True:
                while queue:
                    await self._send_next()
                wake.clear()
                await wake.wait()
        except (ConnectionError, RuntimeError) as e:
            # The peer went away mid-write; the handler's receive loop ends the connection.
            log.debug("realtime client %s: write failed: %s", self.id, e)

    async def _send_next(self) -> None:
        # A frame of its own, so that no frame stays referenced while the writer waits.
        kind, data, tail = self._queue.popleft()
        self._queued_bytes -= len(data) + len(tail)
        self._sending = True
        try:
            await self.transport.send(data + tail if tail else data)
        finally:
            self._sending = False
        self._counted(kind)

    def close(self, code: int, message: str) -> None:
        """Stop sending and close the transport with `code` (in the background)."""
        if self.closing:
            return
        self.closing = True
        self._drop_queue()
        writer = self._writer
        if writer is not None:
            writer.cancel()
        self._closed(self)
        self._closer = asyncio.get_running_loop().create_task(self.transport.close(code, message))

    async def stop(self) -> None:
        """Free the writer task (the connection is over)."""
        self.closing = True
        self._drop_queue()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _drop_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
