"""Timestamps: the storage format, parsing of ISO-8601 variants, the injectable clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from alyx_server.tools.ids import is_uuid, new_id
from alyx_server.tools.timestamps import (
    SYSTEM_CLOCK,
    ManualClock,
    format_timestamp,
    normalize_timestamp,
    now_timestamp,
    parse_timestamp,
)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2026-01-31T12:00:00.000Z", "2026-01-31T12:00:00.000Z"),
        ("2026-01-31T12:00:00Z", "2026-01-31T12:00:00.000Z"),
        ("2026-01-31T12:00:00.123456Z", "2026-01-31T12:00:00.123Z"),
        ("2026-01-31T13:30:00+01:30", "2026-01-31T12:00:00.000Z"),
        ("2026-01-31 12:00:00", "2026-01-31T12:00:00.000Z"),
        ("2026-01-31", "2026-01-31T00:00:00.000Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
    ],
)
def test_normalize(text: str, stored: str) -> None:
    assert normalize_timestamp(text) == stored


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "12:00"])
def test_invalid_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+06:06", "9999-12-31T23:59:59-01:00"])
def test_a_time_outside_the_utc_range_is_refused_with_the_range(text: str) -> None:
    with pytest.raises(ValueError, match="out of range: in UTC it must lie between 0001-01-01 and 9999-12"):
        normalize_timestamp(text)


def test_format_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert (
        format_timestamp(datetime(2026, 1, 31, 14, 0, tzinfo=plus_two))
        == "2026-01-31T12:00:00.000Z"
    )
    assert format_timestamp(datetime(2026, 1, 31, 12, 0)) == "2026-01-31T12:00:00.000Z"


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock("2026-01-31T12:00:00Z")
    assert now_timestamp(clock) == "2026-01-31T12:00:00.000Z"
    clock.advance(90.5)
    assert now_timestamp(clock) == "2026-01-31T12:01:30.500Z"
    clock.set(datetime(2027, 1, 1, tzinfo=UTC))
    assert now_timestamp(clock) == "2027-01-01T00:00:00.000Z"


def test_system_clock_is_aware_utc() -> None:
    assert SYSTEM_CLOCK.now().tzinfo is UTC
    assert now_timestamp().endswith("Z")


def test_ids_are_distinct_uuid4() -> None:
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_uuid(i) and i[14] == "4" for i in ids)
    assert not is_uuid("not-a-uuid")
