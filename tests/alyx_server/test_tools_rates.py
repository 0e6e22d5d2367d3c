"""Rates: `5/minute`, `3/hour`, `100/min`, `10/30s`, and `off`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alyx_server.tools.rates import Rate, format_rate, parse_rate


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("5/minute", Rate(5, 60)), ("3/hour", Rate(3, 3600)), ("10/second", Rate(10, 1)),
        ("100/min", Rate(100, 60)), ("2/day", Rate(2, 86400)), ("10/30s", Rate(10, 30)),
        ("4 / minutes", Rate(4, 60)), ("1/h", Rate(1, 3600)), ("off", None), ("OFF", None),
    ],
)  # fmt: skip
def test_parse(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "bad rate '5' (use e.g. 5/minute, 100/hour, or off)"),
        ("five/minute", "bad rate 'five/minute' (use e.g. 5/minute, 100/hour, or off)"),
        ("5/fortnight",
         "bad rate '5/fortnight' (unknown period; use e.g. 5/minute, 100/hour, or off)"),
        ("5/0s", "bad rate '5/0s' (unknown period; use e.g. 5/minute, 100/hour, or off)"),
        ("0/minute", "bad rate '0/minute' (0 refuses everything; write off to disable)"),
        ("", "bad rate '' (use e.g. 5/minute, 100/hour, or off)"),
    ],
)
def test_bad_rates(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_rate(text)
    assert str(caught.value) == message


def test_format() -> None:
    assert str(Rate(5, 60)) == "5/minute"
    assert format_rate(Rate(10, 30)) == "10/30s"
    assert format_rate(None) == "off"


@given(st.integers(1, 10**6), st.integers(1, 10**7))
def test_format_then_parse_gives_back_the_same_rate(count: int, period: int) -> None:
    rate = Rate(count, float(period))
    assert parse_rate(format_rate(rate)) == rate
