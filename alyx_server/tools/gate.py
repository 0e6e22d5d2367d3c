"""The schema gate: a reader-writer gate on the event loop between the requests that touch
documents and a deploy's commit-and-swap.

A deploy commits migrations to the database, then swaps the served schema, rules and
realtime queries. Between the two, a request working from the old schema (a SELECT of a
column that is gone, an INSERT naming it) would fail with an internal error. So every
request that reads or writes documents holds the gate's shared side for its duration
(`enter`/`leave`, an int counter: no object per request), and the deploy holds the
exclusive side (`exclusive`) from before its commit until the new schema serves. While a
deploy waits for the requests in flight, new ones wait too (they are not refused); once
it holds the gate, they wait until it releases, then run on the new schema. If the ones
in flight do not finish within the timeout, the deploy gives up, `GateTimeout`, before it
changed anything.

Everything here runs on one event loop; database work on reader threads is awaited from
the loop, so the count covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["Gate", "GateTimeout"]


class GateTimeout(Exception):
    """The requests in flight did not finish within the timeout; the gate is open again."""


class Gate:
    """See the module docstring."""

    __slots__ = ("_idle", "_open", "_writer", "closed", "readers", "waiting")

    def __init__(self) -> None:
        self.readers = 0
        self.waiting = 0  # requests waiting for a closed gate to open
        self.closed = False
        self._open: asyncio.Event | None = None  # set when a closed gate opens again
        self._idle: asyncio.Event | None = None  # set when the last reader leaves a closing gate
        self._writer: asyncio.Lock | None = None

    async def enter(self) -> None:
        """Take the shared side; waits while a deploy holds or is taking the gate."""
        while self.closed:
            assert self._open is not None
            self.waiting += 1
            try:
                await self._open.wait()
            finally:
                self.waiting -= 1
        self.readers += 1

    def leave(self) -> None:
        self.readers -= 1
        if self.readers == 0 and self._idle is not None:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        await self.enter()
        try:
            yield
        finally:
            self.leave()

    @contextlib.asynccontextmanager
    async def exclusive(self, timeout: float) -> AsyncIterator[None]:
        """Close the gate, wait (at most `timeout` seconds) for the readers in flight to
        leave, hold it for the body, then open it. `GateTimeout` if they do not leave."""
        if self._writer is None:
            self._writer = asyncio.Lock()
        async with self._writer:
            self.closed = True
            self._open = asyncio.Event()
            try:
                if self.readers:
                    self._idle = asyncio.Event()
                    try:
                        await asyncio.wait_for(self._idle.wait(), timeout)
                    except TimeoutError:
                        raise GateTimeout(
                            f"{self.readers} request(s) still running after {timeout:g} s"
                        ) from None
                    finally:
                        self._idle = None
                yield
            finally:
                self.closed = False
                self._open.set()
