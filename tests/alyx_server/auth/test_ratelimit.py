"""Sliding-window rate limits kept in a real database file, with an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alyx_server.auth.ratelimit import SWEEP_EVERY, RateLimiter
from alyx_server.db import Database, open_connection
from alyx_server.errors import RateLimited
from alyx_server.migrations import apply_system_migrations
from alyx_server.schema.model import Schema
from alyx_server.tools.rates import Rate
from alyx_server.tools.timestamps import ManualClock


@pytest.fixture
async def databases(tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    """Two Database objects on one file: what two server processes share."""
    path = tmp_path / "alyx.db"
    conn = open_connection(path)
    apply_system_migrations(conn)
    conn.close()
    opened = [await Database.open(path, Schema(()), poll_interval=None) for _ in range(2)]
    yield opened[0], opened[1]
    for db in opened:
        await db.close()


def limiter(db: Database, rate: Rate | None, clock: ManualClock, what: str = "x") -> RateLimiter:
    return RateLimiter(rate, clock, what, name="login", database=lambda: db)


def rows(db: Database) -> list[tuple[str, str]]:
    return db.read_now(lambda c: c.execute("SELECT DISTINCT name, key FROM _alyx_rate_limits").fetchall())


async def test_limit_counts_per_key_and_tells_when_to_retry(databases: tuple[Database, Database]) -> None:
    clock = ManualClock("2026-01-01T00:00:00Z")
    limit = limiter(databases[0], Rate(3, 60), clock, "login attempts")
    for _ in range(3):
        await limit.hit("ip:a")
        clock.advance(10)
    with pytest.raises(RateLimited) as refused:
        await limit.hit("ip:a")
    assert refused.value.retry_after == 30  # the first attempt leaves the window at t=60
    assert str(refused.value) == "too many login attempts (limit 3/minute); try again in 30 s"
    await limit.hit("ip:b")  # other keys are free
    clock.advance(29.5)
    with pytest.raises(RateLimited) as refused:
        await limit.hit("ip:a")
    assert refused.value.retry_after == 1  # half a second left, rounded up
    clock.advance(0.5)
    await limit.hit("ip:a")


async def test_a_refused_attempt_counts_nowhere(databases: tuple[Database, Database]) -> None:
    clock = ManualClock("2026-01-01T00:00:00Z")
    limit = limiter(databases[0], Rate(1, 60), clock)
    await limit.hit("email:e")
    clock.advance(20)
    for _ in range(3):
        with pytest.raises(RateLimited) as refused:
            await limit.hit("ip:fresh", "email:e")
        assert refused.value.retry_after == 40  # retrying does not lengthen the wait
    await limit.hit("ip:fresh")  # the refused attempts did not use up this key
    clock.advance(40)
    await limit.hit("email:e")


async def test_processes_share_the_count(databases: tuple[Database, Database]) -> None:
    """Attempts through two databases on one file (two processes) add up, per limit."""
    clock = ManualClock("2026-01-01T00:00:00Z")
    first, second = (limiter(db, Rate(3, 60), clock) for db in databases)
    await first.hit("ip:a")
    clock.advance(5)
    await second.hit("ip:a")
    await first.hit("ip:a")
    for limit in (first, second):
        with pytest.raises(RateLimited) as refused:
            await limit.hit("ip:a")
        assert refused.value.retry_after == 55
    other = RateLimiter(Rate(3, 60), clock, "x", name="register", database=lambda: databases[1])
    await other.hit("ip:a")  # another limit keeps its own count for the same key


async def test_a_lowered_limit_applies_to_the_attempts_already_counted(
    databases: tuple[Database, Database],
) -> None:
    clock = ManualClock("2026-01-01T00:00:00Z")
    limit = limiter(databases[0], Rate(5, 60), clock)
    for _ in range(4):
        await limit.hit("ip:a")
        clock.advance(10)
    limit.rate = Rate(2, 60)  # auth.rate_limit.* changes live
    with pytest.raises(RateLimited) as refused:
        await limit.hit("ip:a")
    assert refused.value.retry_after == 40  # at t=40, under 2 once the one at t=20 leaves (t=80)


async def test_off_never_refuses_nor_writes(databases: tuple[Database, Database]) -> None:
    db = databases[0]
    limit = limiter(db, None, ManualClock("2026-01-01T00:00:00Z"))
    for _ in range(100):
        await limit.hit("k")
    assert rows(db) == []


async def test_forgotten_keys_are_swept(databases: tuple[Database, Database]) -> None:
    clock = ManualClock("2026-01-01T00:00:00Z")
    db = databases[0]
    limit = limiter(db, Rate(2, 1), clock)
    for i in range(SWEEP_EVERY + 10):
        await limit.hit(f"k{i}")
        clock.advance(0.01)
    assert 10 <= len(rows(db)) < 200  # only the keys of the last second or so remain
