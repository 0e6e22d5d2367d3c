"""Sizes: `64KiB`, `10MiB`, `1GB`, plain bytes, and their exact round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alyx_server.tools.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MiB", 10 * 1024**2), ("64KiB", 65536), ("256MiB", 256 * 1024**2), ("1GB", 10**9),
        ("1gib", 1024**3), ("1024", 1024), ("0", 0), ("1.5KiB", 1536), ("2 MB", 2_000_000),
        ("7B", 7), ("1TiB", 1024**4),
    ],
)  # fmt: skip
def test_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["10XB", "", "MiB", "-1", "1.5.1MB", "10 M"])
def test_bad_sizes_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(text)
    assert str(caught.value) == f"bad size {text!r} (use e.g. 64KiB, 10MiB, 1GB)"


def test_a_fraction_of_a_byte_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^bad size '1.5' \(not a whole number of bytes\)$"):
        parse_size("1.5")


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0"), (1000, "1000"), (65536, "64KiB"), (10 * 1024**2, "10MiB")]
)
def test_format(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=2**60))
def test_format_then_parse_gives_back_the_same_size(size: int) -> None:
    assert parse_size(format_size(size)) == size
