"""Durations written the way people say them: `100ms`, `30s`, `15m`, `1h30m`, `7d`.

`parse_duration` turns such text into float seconds; `format_duration` writes seconds
back in the shortest exact form, so that `parse_duration(format_duration(x)) == x`.
A bare number (`30`, `0.5`) means seconds, which suits environment variables. Digits and
spaces are ASCII ones (`re.ASCII`), as the OpenAPI document states a delay.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = ["DURATION_UNITS", "format_duration", "parse_duration"]

DURATION_UNITS: dict[str, int] = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
"""Seconds per unit; `ms` (milliseconds) is accepted too."""

_UNIT = r"(?:ms|w|d|h|m|s)"
_NUMBER = r"\d+(?:\.\d+)?"
_WHOLE = re.compile(rf"(?:\s*{_NUMBER}\s*{_UNIT})+\s*", re.ASCII)
_PART = re.compile(rf"({_NUMBER})\s*({_UNIT})", re.ASCII)
_BARE = re.compile(rf"\s*{_NUMBER}\s*", re.ASCII)
_MS = Decimal("0.001")
_EXAMPLES = "use e.g. 30s, 15m, 7d"


def parse_duration(text: str) -> float:
    """Return the number of seconds `text` stands for; ValueError names the bad text."""
    if _BARE.fullmatch(text):
        return float(Decimal(text.strip()))
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"bad duration {text!r} ({_EXAMPLES})")
    total = Decimal(0)
    for number, unit in _PART.findall(text):
        scale = _MS if unit == "ms" else Decimal(DURATION_UNITS[unit])
        total += Decimal(number) * scale
    return float(total)


def format_duration(seconds: float) -> str:
    """Write `seconds` as e.g. `1h30m` or `250ms`; exact, so it parses back to the same float."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot write {seconds!r} as a duration")
    millis = round(Decimal(repr(seconds)) * 1000)
    if float(Decimal(millis) * _MS) != seconds:
        return f"{Decimal(repr(seconds)):f}s"
    if millis == 0:
        return "0s"
    whole, rest_ms = divmod(millis, 1000)
    parts: list[str] = []
    for unit, size in DURATION_UNITS.items():
        if unit == "w":
            continue  # weeks read oddly next to days (`1w2d`); days are clear enough
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if rest_ms:
        parts.append(f"{rest_ms}ms")
    return "".join(parts)
