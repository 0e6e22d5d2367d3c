"""Byte sizes written the way people say them: `64KiB`, `10MiB`, `1GB`, or a plain number.

Binary units (KiB, MiB, GiB, TiB) count in 1024s, decimal ones (KB, MB, GB, TB) in 1000s;
unit letters are case-insensitive. `format_size` writes a byte count back exactly.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["SIZE_UNITS", "format_size", "parse_size"]

SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
_BINARY = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def parse_size(text: str) -> int:
    """Return the number of bytes `text` stands for; ValueError names the bad text."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in SIZE_UNITS):
        raise ValueError(f"bad size {text!r} (use e.g. 64KiB, 10MiB, 1GB)")
    amount = Decimal(match.group(1)) * SIZE_UNITS[unit or "b"]
    if amount != amount.to_integral_value():
        raise ValueError(f"bad size {text!r} (not a whole number of bytes)")
    return int(amount)


def format_size(size: int) -> str:
    """Write a byte count as e.g. `10MiB`, falling back to plain bytes when no unit divides it."""
    if size < 0:
        raise ValueError(f"cannot write {size!r} as a size")
    for unit, scale in _BINARY:
        if size and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)
