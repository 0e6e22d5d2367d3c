"""A warm pool of workers for one function.

    min_warm        workers kept started and idle (refilled after one is lost)
    max_instances   workers at once; more invocations wait in a queue
    max_queue       invocations waiting; one more is refused (503 FUNCTIONS_BUSY)
    idle_timeout    an idle worker above min_warm is stopped after this long

A call that finds every worker busy waits for one; if it still waits GROW_AFTER later
(or the calls' mean duration, at most GROW_AFTER_MAX) and there is room, one more worker
starts in the background, and the call takes whichever comes first: that worker, or one a
running call releases. A busy worker that frees up soon thus spares a start (a new Node or
Python process, about 60 ms of CPU), and the pool still grows to the load it carries. A
pool with no worker at all starts one at once. A pool a reload replaces (`growing` False)
does not grow: the start would be thrown away with it.
Waiters are served in order: a released worker, or the slot of a lost one, is handed
directly to the oldest waiter, so a newcomer never overtakes the queue. A worker that
timed out, crashed or left processes running is killed and never reused.

`drain()` retires a pool that new code replaced: the calls it already took (running or
queued) finish on its workers, nothing refills it, then it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from alyx_server.errors import AlyxError
from alyx_server.functions.worker import Worker

__all__ = ["FunctionPool", "PoolLimits"]

log = logging.getLogger("alyx.functions")

WorkerFactory = Callable[[], Awaitable[Worker]]

GROW_AFTER = 0.025
"""Seconds a call waits for a busy worker before the pool starts one more for it (or the
pool's mean call duration, when longer: a busy machine slows every call alike) ..."""
GROW_AFTER_MAX = 0.1
"""... but never longer than this: a function whose calls take seconds still grows soon."""


@dataclass(frozen=True, slots=True)
class PoolLimits:
    min_warm: int = 1
    max_instances: int = 4
    idle_timeout: float = 60.0
    max_queue: int = 100


class FunctionPool:
    """Workers of one function; see the module docstring."""

    def __init__(self, name: str, factory: WorkerFactory, limits: PoolLimits) -> None:
        self.name = name
        self.limits = limits
        self._factory = factory
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._starting = 0
        self._warming = 0  # background starts (refills and growth): each will serve one waiter
        self._waiters: deque[asyncio.Future[Worker | None]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._draining = False
        self._settled = asyncio.Event()
        self.grow_after = GROW_AFTER
        self.growing = True  # False while a reload replaces the pool: a start would be wasted
        self._mean_call = 0.0  # seconds, a moving average of the calls' durations
        self.started = 0
        self.replaced = 0

    @property
    def total(self) -> int:
        return len(self._idle) + len(self._busy) + self._starting

    @property
    def workers(self) -> tuple[Worker, ...]:
        """The started workers, idle and busy."""
        return (*self._idle, *self._busy)

    @property
    def state(self) -> dict[str, int]:
        return {
            "idle": len(self._idle),
            "busy": len(self._busy),
            "starting": self._starting,
            "queued": len(self._waiters),
        }

    async def invoke(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one request on a worker (WorkerTimeout, WorkerCrashed, FunctionLoadFailed, 503)."""
        worker = await self._acquire()
        started = time.perf_counter()
        try:
            answer = await worker.invoke(request, timeout)
        except BaseException:
            # A timeout, a crash, or a caller gone mid-request: the worker is not reused.
            self._lose(worker)
            raise
        self._mean_call += (time.perf_counter() - started - self._mean_call) * 0.2
        if worker.leaked():
            log.warning("function %s left processes running; its worker is replaced", self.name)
            self._lose(worker)
        else:
            self._release(worker)
        return answer

    async def _acquire(self) -> Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                self._busy.add(worker)
                return worker
            self._forget(worker)
        # Waiters beyond the workers starting in the background are not covered by one:
        # this call grows the pool (when there is room), or queues behind them.
        grow = (
            len(self._waiters) >= self._warming
            and self.total < self.limits.max_instances
            and (self.growing or not self.total)
        )
        if grow and not self._busy:
            self._start_warm()
        elif not grow and len(self._waiters) >= self.limits.max_queue:
            raise AlyxError(
                f"function {self.name} is busy: {self.limits.max_instances} instances running and "
                f"{len(self._waiters)} invocations waiting; try again later",
                code="FUNCTIONS_BUSY",
                status=503,
            )
        future: asyncio.Future[Worker | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if grow and self._busy:
            # A busy worker usually frees up within a call's time: start one more only
            # for a call still waiting GROW_AFTER, or the calls' mean duration, later.
            delay = max(self.grow_after, min(self._mean_call, GROW_AFTER_MAX))
            asyncio.get_running_loop().call_later(delay, self._grow_for, future)
        try:
            handed = await future
        except asyncio.CancelledError:
            self._give_back(future)
            raise
        if handed is None:
            # The slot of a lost worker, reserved for this waiter.
            self._starting -= 1
            return await self._start_busy()
        return handed

    def _give_back(self, future: asyncio.Future[Worker | None]) -> None:
        """A waiter went away: return what it was handed, or leave the queue."""
        if future in self._waiters:
            self._waiters.remove(future)
            self._settled.set()
        elif future.done() and not future.cancelled():
            handed = future.result()
            if handed is None:
                self._starting -= 1
                self._offer_slot()
            else:
                self._busy.discard(handed)
                self._release(handed)

    async def _start_busy(self) -> Worker:
        self._starting += 1
        try:
            worker = await self._factory()
        except BaseException:
            self._starting -= 1
            # Hand the slot on, but do not refill: the next start would likely fail too.
            self._offer_slot(refill=False)
            self._settled.set()
            raise
        self._starting -= 1
        self.started += 1
        if self._closed:
            await worker.kill()
            raise AlyxError(f"function {self.name} is shutting down", code="FUNCTIONS_BUSY", status=503)
        self._busy.add(worker)
        return worker

    def _next_waiter(self) -> asyncio.Future[Worker | None] | None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                return future
        return None

    def _release(self, worker: Worker) -> None:
        self._busy.discard(worker)
        waiter = self._next_waiter()
        if waiter is not None:
            self._busy.add(worker)
            waiter.set_result(worker)
            return
        worker.idle_since = time.monotonic()
        self._idle.append(worker)
        self._settled.set()

    def _offer_slot(self, *, refill: bool = True) -> None:
        """A slot is free: the oldest waiter starts a worker in it, or the pool refills."""
        waiter = self._next_waiter()
        if waiter is not None:
            self._starting += 1
            waiter.set_result(None)
        elif refill:
            self._refill()

    def _forget(self, worker: Worker) -> None:
        self._busy.discard(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        self._settled.set()

    def _lose(self, worker: Worker) -> None:
        """Kill a worker that must not be reused; its slot goes to a waiter or a refill."""
        self._forget(worker)
        self.replaced += 1
        self._spawn(worker.kill())
        self._offer_slot()

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refill(self) -> None:
        if self._closed or self._draining:
            return
        missing = self.limits.min_warm - self.total
        for _ in range(max(0, missing)):
            self._start_warm()

    def _grow_for(self, future: asyncio.Future[Worker | None]) -> None:
        if future.done() or self._closed or self._draining or not self.growing:
            return
        if len(self._waiters) > self._warming and self.total < self.limits.max_instances:
            self._start_warm()

    def _start_warm(self) -> None:
        """Start a worker in the background (counted at once, so the next call sees it)."""
        self._starting += 1
        self._warming += 1
        self._spawn(self._warm_one())

    async def _warm_one(self) -> None:
        try:
            worker = await self._factory()
        except Exception as e:
            self._starting -= 1
            self._warming -= 1
            self._settled.set()
            # A waiter this start was to serve gets its error (a load error says why the
            # function cannot run); one still covered by another start keeps waiting.
            if len(self._waiters) > self._warming:
                waiter = self._next_waiter()
                if waiter is not None:
                    waiter.set_exception(e)
                    return
            log.warning("function %s: a warm worker did not start: %s", self.name, e)
            return
        self._starting -= 1
        self._warming -= 1
        self.started += 1
        if self._closed:
            await worker.kill()
            return
        self._release(worker)

    async def warm(self, count: int | None = None, *, one_by_one: bool = False) -> None:
        """Start workers now up to `count` (default min_warm; at most max_instances); the
        first load error is raised. `one_by_one` starts them in turn, not all at once: a
        server under load keeps its CPU while a reload warms a new pool."""
        wanted = self.limits.min_warm if count is None else max(count, self.limits.min_warm)
        missing = max(0, min(wanted, self.limits.max_instances) - self.total)
        if one_by_one:
            for _ in range(missing):
                self._release(await self._start_busy())
            return
        results = await asyncio.gather(*(self._start_busy() for _ in range(missing)), return_exceptions=True)
        for result in results:
            if isinstance(result, Worker):
                self._release(result)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def reap(self, now: float | None = None) -> int:
        """Stop workers idle longer than idle_timeout, keeping min_warm; how many stopped."""
        now = time.monotonic() if now is None else now
        stopped = 0
        for worker in sorted(self._idle, key=lambda w: w.idle_since):
            if self.total <= self.limits.min_warm:
                break
            if now - worker.idle_since >= self.limits.idle_timeout:
                self._idle.remove(worker)
                stopped += 1
                await worker.stop()
        return stopped

    @property
    def closing(self) -> bool:
        """Whether `close()` has begun (the workers are being stopped)."""
        return self._closed

    @property
    def in_flight(self) -> int:
        """Invocations this pool has taken and not answered yet (running or queued)."""
        return len(self._busy) + len(self._waiters) + self._starting

    async def drain(self, timeout: float) -> None:
        """Let the invocations already taken finish (at most `timeout` seconds: a call
        still running then is past its own timeout), then close. Nothing refills meanwhile."""
        self._draining = True

        async def settle() -> None:
            while self.in_flight:
                self._settled.clear()
                await self._settled.wait()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settle(), timeout)
        await self.close()

    async def close(self) -> None:
        """Stop every worker; waiters get 503."""
        self._closed = True
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(
                    AlyxError(f"function {self.name} is shutting down", code="FUNCTIONS_BUSY", status=503)
                )
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
