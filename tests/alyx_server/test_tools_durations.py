"""Durations: `15m`, `7d`, `1h30m`, `100ms` and bare seconds, and their exact round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alyx_server.tools.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30), ("15m", 900), ("7d", 604800), ("100ms", 0.1), ("1h30m", 5400),
        ("2w", 1209600), ("1.5h", 5400), ("1h 30m", 5400), ("30", 30), ("0.25", 0.25),
        ("0s", 0), (" 5m ", 300), ("1m500ms", 60.5),
    ],
)  # fmt: skip
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15x", "", "m", "-1s", "1.s", "15M", "1h-30m", "1e3s", "s30"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == f"bad duration {text!r} (use e.g. 30s, 15m, 7d)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5400, "1h30m"), (0.1, "100ms"), (86400 * 8, "8d"), (1.5, "1s500ms"),
     (1e-05, "0.00001s")],
)  # fmt: skip
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_format_refuses_what_is_not_a_duration(seconds: float) -> None:
    with pytest.raises(ValueError, match="cannot write"):
        format_duration(seconds)


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_format_then_parse_gives_back_the_same_float(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**12))
def test_whole_milliseconds_use_units(millis: int) -> None:
    text = format_duration(millis / 1000)
    assert "." not in text
    assert parse_duration(text) == millis / 1000
