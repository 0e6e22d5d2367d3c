"""Rate limits written as `count/period`: `5/minute`, `3/hour`, `100/min`, `10/30s`, or `off`.

The period is a unit name (second, minute, hour, day, or their short forms) or any
duration understood by `alyx_server.tools.durations`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alyx_server.tools.durations import format_duration, parse_duration

__all__ = ["Rate", "format_rate", "parse_rate"]

_PERIODS: dict[str, int] = {
    "second": 1,
    "sec": 1,
    "s": 1,
    "minute": 60,
    "min": 60,
    "m": 60,
    "hour": 3_600,
    "hr": 3_600,
    "h": 3_600,
    "day": 86_400,
    "d": 86_400,
}
_NAMES = {1: "second", 60: "minute", 3_600: "hour", 86_400: "day"}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")
_EXAMPLES = "use e.g. 5/minute, 100/hour, or off"


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` events per `period_seconds`."""

    count: int
    period_seconds: float

    def __str__(self) -> str:
        return format_rate(self)


def parse_rate(text: str) -> Rate | None:
    """Return the Rate `text` stands for, or None for `off`; ValueError names the bad text."""
    if text.strip().lower() == "off":
        return None
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"bad rate {text!r} ({_EXAMPLES})")
    count, period = int(match.group(1)), _period_seconds(match.group(2).lower())
    if period is None:
        raise ValueError(f"bad rate {text!r} (unknown period; {_EXAMPLES})")
    if count == 0:
        raise ValueError(f"bad rate {text!r} (0 refuses everything; write off to disable)")
    return Rate(count, period)


def format_rate(rate: Rate | None) -> str:
    """Write a rate back in the form `parse_rate` reads (`off` for None)."""
    if rate is None:
        return "off"
    period = float(rate.period_seconds)
    name = _NAMES.get(int(period)) if period.is_integer() else None
    return f"{rate.count}/{name or format_duration(period)}"


def _period_seconds(period: str) -> float | None:
    for candidate in (period, period.removesuffix("s")):
        if candidate in _PERIODS:
            return float(_PERIODS[candidate])
    try:
        seconds = parse_duration(period)
    except ValueError:
        return None
    return seconds if seconds > 0 else None
