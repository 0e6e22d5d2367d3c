"""Timestamps as Alyx stores them: ISO-8601 UTC with milliseconds, `2026-01-31T12:00:00.000Z`.

That text sorts in time order, so SQLite compares stored timestamps as plain strings. A
`Clock` is injected wherever the current time matters (defaults, pruning, expiry) so
that tests move time forward instead of sleeping.

Two grammars are read. A document's timestamp field takes an RFC 3339 date-time
(`RFC3339_PATTERN`, the JSON Schema `date-time` the OpenAPI document declares): `T` or
`t`, a zone (`Z`, `z` or `±hh:mm`) required, seconds 00-59. Text without a zone is refused
there, as a client cannot mean UTC by leaving the zone out. Filter values and schema
defaults, written by the developer, take any ISO-8601 date or date-time (no zone is UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = [
    "RFC3339_PATTERN",
    "SYSTEM_CLOCK",
    "Clock",
    "ManualClock",
    "SystemClock",
    "TimestampOutOfRange",
    "format_timestamp",
    "normalize_timestamp",
    "now_timestamp",
    "parse_rfc3339",
    "parse_timestamp",
]

RFC3339_PATTERN = (
    r"^(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""An RFC 3339 date-time as a JSON Schema (ECMA) pattern; days past a month's end are
refused by the date check that follows it."""
_RFC3339 = re.compile(RFC3339_PATTERN)


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


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time into an aware UTC datetime (the grammar of document fields).

    Raises ValueError for anything else: no zone, a space for `T`, a date alone, February
    30th; TimestampOutOfRange when the time, in UTC, falls outside years 1 to 9999.
    """
    if not isinstance(text, str) or _RFC3339.fullmatch(text) is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    return parse_timestamp(text.upper())


def normalize_timestamp(text: str) -> str:
    """Any accepted ISO-8601 text rewritten in the storage format (ValueError if invalid)."""
    return format_timestamp(parse_timestamp(text))


def now_timestamp(clock: Clock = SYSTEM_CLOCK) -> str:
    """The clock's current time in the storage format."""
    return format_timestamp(clock.now())
