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

`close`/`open` are the two halves of `exclusive`, for a deploy that closes several gates
at once and opens each as soon as its process serves the new schema. When the gate opens,
the requests that waited at it resume; `settle` waits (bounded) until those have
finished, so a deploy can let them through before it starts other work (new function
pools) on the same cores. A request that waited is counted until it leaves with
`leave(True)` (`enter` answers whether it waited).

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

    __slots__ = ("_idle", "_open", "_settled", "_writer", "closed", "held", "readers", "waiting")

    def __init__(self) -> None:
        self.readers = 0
        self.waiting = 0  # requests waiting for a closed gate to open
        self.held = 0  # readers that waited at the closed gate and have not left yet
        self._settled: asyncio.Event | None = None  # set when the last of `held` leaves
        self.closed = False
        self._open: asyncio.Event | None = None  # set when a closed gate opens again
        self._idle: asyncio.Event | None = None  # set when the last reader leaves a closing gate
        self._writer: asyncio.Lock | None = None

    async def enter(self) -> bool:
        """Take the shared side; waits while a deploy holds or is taking the gate. True when
        it waited (counted in `held` from then on): the caller then leaves with `leave(True)`."""
        if not self.closed:
            self.readers += 1
            return False
        self.held += 1
        try:
            while self.closed:
                assert self._open is not None
                self.waiting += 1
                try:
                    await self._open.wait()
                finally:
                    self.waiting -= 1
        except BaseException:
            self.held -= 1
            if self.held == 0 and self._settled is not None:
                self._settled.set()
            raise
        self.readers += 1
        return True

    def leave(self, held: bool = False) -> None:
        self.readers -= 1
        if held:
            self.held -= 1
            if self.held == 0 and self._settled is not None:
                self._settled.set()
        if self.readers == 0 and self._idle is not None:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        held = await self.enter()
        try:
            yield
        finally:
            self.leave(held)

    async def close(self, timeout: float) -> None:
        """Close the gate and wait (at most `timeout` seconds) for the readers in flight to
        leave; `GateTimeout`, with the gate open again, if they do not. `open` ends it."""
        if self._writer is None:
            self._writer = asyncio.Lock()
        await self._writer.acquire()
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
        except BaseException:
            self.open()
            raise

    def open(self) -> None:
        """Open a gate `close` closed: the requests waiting at it run."""
        assert self._writer is not None and self._open is not None
        self.closed = False
        self._open.set()
        self._writer.release()

    @contextlib.asynccontextmanager
    async def exclusive(self, timeout: float) -> AsyncIterator[None]:
        """Close the gate, wait (at most `timeout` seconds) for the readers in flight to
        leave, hold it for the body, then open it. `GateTimeout` if they do not leave."""
        await self.close(timeout)
        try:
            yield
        finally:
            self.open()

    async def settle(self, timeout: float) -> None:
        """Wait until the requests that waited at the gate have finished, at most `timeout`
        seconds (they may be slow; the caller goes on then)."""
        if self.held <= 0 or self.closed:
            return
        self._settled = asyncio.Event()
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            return
        finally:
            self._settled = None
