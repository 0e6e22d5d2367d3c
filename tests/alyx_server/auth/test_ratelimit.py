"""Sliding-window rate limits with an injected clock."""

from __future__ import annotations

import pytest

from alyx_server.auth.ratelimit import RateLimiter
from alyx_server.errors import RateLimited
from alyx_server.tools.rates import Rate
from alyx_server.tools.timestamps import ManualClock


def test_limit_counts_per_key_and_tells_when_to_retry() -> None:
    clock = ManualClock("2026-01-01T00:00:00Z")
    limiter = RateLimiter(Rate(3, 60), clock, "login attempts")
    for _ in range(3):
        limiter.hit("ip:a")
        clock.advance(10)
    with pytest.raises(RateLimited) as refused:
        limiter.hit("ip:a")
    assert refused.value.retry_after == 30  # the first attempt leaves the window at t=60
    assert str(refused.value) == "too many login attempts (limit 3/minute); try again in 30 s"
    limiter.hit("ip:b")  # other keys are free
    clock.advance(30)
    limiter.hit("ip:a")


def test_a_refused_attempt_counts_nowhere() -> None:
    clock = ManualClock("2026-01-01T00:00:00Z")
    limiter = RateLimiter(Rate(1, 60), clock, "x")
    limiter.hit("email:e")
    with pytest.raises(RateLimited):
        limiter.hit("ip:fresh", "email:e")
    limiter.hit("ip:fresh")  # the refused attempt did not use up this key


def test_off_never_refuses() -> None:
    limiter = RateLimiter(None, ManualClock("2026-01-01T00:00:00Z"), "x")
    for _ in range(1000):
        limiter.hit("k")


def test_forgotten_keys_are_swept() -> None:
    clock = ManualClock("2026-01-01T00:00:00Z")
    limiter = RateLimiter(Rate(2, 1), clock, "x")
    for i in range(5000):
        limiter.hit(f"k{i}")
        clock.advance(0.01)
    assert len(limiter._logs) < 5000
