"""In-memory rate limits: at most `count` attempts per key in any window of `period` seconds.

A sliding log per key (the times of the recent attempts, at most `count` of them) gives
an exact answer to "how many in the last period" and an exact `Retry-After`: the moment
the oldest counted attempt leaves the window. Keys are client addresses or normalised
emails, prefixed by the caller. Time comes from an injected clock, so tests move it
instead of sleeping. The limits live in one process: a deployment behind several Alyx
processes multiplies them by the number of processes.
"""

from __future__ import annotations

import math
from collections import deque

from alyx_server.errors import RateLimited
from alyx_server.tools.rates import Rate, format_rate
from alyx_server.tools.timestamps import Clock

__all__ = ["RateLimiter"]

SWEEP_EVERY = 4096
"""Attempts between sweeps that forget keys whose whole log has left the window."""


class RateLimiter:
    """One limit (`rate`, None = off) over any number of keys; `what` names it in messages."""

    def __init__(self, rate: Rate | None, clock: Clock, what: str) -> None:
        self.rate = rate
        self._clock = clock
        self._what = what
        self._logs: dict[str, deque[float]] = {}
        self._since_sweep = 0

    def hit(self, *keys: str) -> None:
        """Count one attempt against each key, or raise 429 RATE_LIMITED with the wait.

        When any key is over its limit nothing is counted, so refused attempts do not
        extend the wait.
        """
        rate = self.rate
        if rate is None:
            return
        now = self._clock.now().timestamp()
        start = now - rate.period_seconds
        wait = 0.0
        logs = []
        for key in keys:
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = deque(maxlen=rate.count)
            while log and log[0] <= start:
                log.popleft()
            if len(log) >= rate.count:
                wait = max(wait, log[0] - start)
            logs.append(log)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise RateLimited(
                f"too many {self._what} (limit {format_rate(rate)}); try again in {seconds} s",
                retry_after=seconds,
            )
        for log in logs:
            log.append(now)
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._sweep(start)

    def _sweep(self, start: float) -> None:
        self._since_sweep = 0
        for key in [k for k, log in self._logs.items() if not log or log[-1] <= start]:
            del self._logs[key]
