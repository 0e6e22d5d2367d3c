"""Timestamps as Alyx stores them: ISO-8601 UTC with milliseconds, `2026-01-31T12:00:00.000Z`.

That text sorts in time order, so SQLite compares stored timestamps as plain strings. A
`Clock` is injected wherever the current time matters (defaults, pruning, expiry) so
that tests move time forward instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "ManualClock",
    "SystemClock",
    "TimestampOutOfRange",
    "format_timestamp",
    "normalize_timestamp",
    "now_timestamp",
    "parse_timestamp",
]


class TimestampOutOfRange(ValueError):
    """Valid ISO-8601 text whose time, in UTC, falls outside years 1 to 9999."""


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that only moves when told to: for tests of expiry, TTLs and pruning."""

    def __init__(self, start: datetime | str) -> None:
        self._now = parse_timestamp(start) if isinstance(start, str) else _as_utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime | str) -> None:
        self._now = parse_timestamp(when) if isinstance(when, str) else _as_utc(when)

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def _as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken to be UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """`value` in the storage format, truncated to milliseconds."""
    v = _as_utc(value)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        f".{v.microsecond // 1000:03d}Z"
    )


def parse_timestamp(text: str) -> datetime:
    """Parse ISO-8601 text into an aware UTC datetime; text without an offset is UTC.

    Raises ValueError for anything that is not an ISO-8601 date or date-time.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    parsed = datetime.fromisoformat(text.strip())
    try:
        return _as_utc(parsed)
    except OverflowError:
        # 0001-01-01T00:00:00+06:00 is a valid ISO-8601 text whose UTC time is before year 1.
        raise TimestampOutOfRange(
            f"timestamp {text!r} is out of range: in UTC it must lie between 0001-01-01 and 9999-12-31"
        ) from None


def normalize_timestamp(text: str) -> str:
    """Any accepted ISO-8601 text rewritten in the storage format (ValueError if invalid)."""
    return format_timestamp(parse_timestamp(text))


def now_timestamp(clock: Clock = SYSTEM_CLOCK) -> str:
    """The clock's current time in the storage format."""
    return format_timestamp(clock.now())
