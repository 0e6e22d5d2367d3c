"""Turn a value as the user wrote it (YAML scalar text, a list, or a Python value) into the
typed value of its key, checking the key's constraints.

A `ValueProblem` says what is wrong with the value only; the caller knows where the value
came from and wraps it into a ConfigError naming the file and line or the variable.
"""

from __future__ import annotations

import math
import os.path
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from alyx_server.config.registry import Key, KeyType
from alyx_server.tools.durations import format_duration, parse_duration
from alyx_server.tools.rates import parse_rate
from alyx_server.tools.sizes import format_size, parse_size
from alyx_server.tools.suggest import did_you_mean

__all__ = [
    "RawValue",
    "Scalar",
    "ValueProblem",
    "convert",
    "describe",
    "from_python",
    "is_null",
    "show",
]

_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_RESOLVER = yaml.resolver.Resolver()


class ValueProblem(Exception):
    """What is wrong with a value, without saying where it is."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Scalar:
    """One scalar as written: its text, and whether it was unquoted (so may be null/number)."""

    text: str
    plain: bool


RawValue = Scalar | tuple[Scalar, ...]
"""A scalar, or a list of scalars (a YAML sequence)."""


def is_null(raw: RawValue) -> bool:
    """An unquoted empty, `~` or `null` value: the key keeps its default."""
    return isinstance(raw, Scalar) and raw.plain and _tag(raw.text) == _NULL_TAG


def from_python(value: object) -> RawValue:
    """Write a Python value (a default, or an override from the command line) as raw input."""
    if isinstance(value, list | tuple):
        return tuple(Scalar(str(_as_text(item)), plain=False) for item in value)
    if value is None or isinstance(value, bool | int | float):
        return Scalar(_as_text(value), plain=True)
    return Scalar(_as_text(value), plain=False)


def describe(key: Key) -> str:
    """What a key expects, for messages: 'an integer', 'a duration like 30s or 15m'..."""
    if key.type is KeyType.ENUM:
        return "one of " + ", ".join(key.choices)
    return _DESCRIPTIONS[key.type]


def convert(key: Key, raw: RawValue, project_dir: Path) -> object:
    """Return the typed value of `raw` for `key`, or raise ValueProblem."""
    if key.type is KeyType.STR_LIST:
        return _convert_list(key, raw)
    if not isinstance(raw, Scalar):
        raise ValueProblem(f"expected {describe(key)}, got a list")
    value = _CONVERTERS[key.type](key, raw)
    _check_bounds(key, value)
    if key.type is KeyType.PATH:
        return Path(os.path.normpath(project_dir / Path(raw.text).expanduser()))
    return value


def show(key: Key, value: float) -> str:
    """A number of a key's type as a user would write it: `8d`, `16MiB`, `4`."""
    return _SHOW.get(key.type, str)(value)


def _as_text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _tag(text: str) -> str:
    resolve: Callable[..., str] = _RESOLVER.resolve
    return resolve(yaml.ScalarNode, text, (True, False))


def _native(raw: Scalar) -> object:
    """The value YAML would give the text unquoted; quoting only matters for null."""
    tag = _tag(raw.text)
    if tag == _STR_TAG or (tag == _NULL_TAG and not raw.plain):
        return raw.text
    return yaml.safe_load(raw.text)


def _to_bool(key: Key, raw: Scalar) -> object:
    value = _native(raw)
    if not isinstance(value, bool):
        raise ValueProblem(f"expected true or false, got {raw.text!r}")
    return value


def _to_int(key: Key, raw: Scalar) -> object:
    value = _native(raw)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueProblem(f"expected an integer, got {raw.text!r}")
    return value


def _to_float(key: Key, raw: Scalar) -> object:
    value = _native(raw)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueProblem(f"expected a number, got {raw.text!r}")
    return float(value)


def _to_text(key: Key, raw: Scalar) -> object:
    if key.min_length is not None and len(raw.text) < key.min_length:
        raise ValueProblem(
            f"must be at least {key.min_length} characters, got {len(raw.text)}",
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            if key.type is KeyType.SECRET
            else None,
        )
    _run_check(key, raw.text)
    return raw.text


def _to_enum(key: Key, raw: Scalar) -> str:
    value = raw.text.strip().lower()
    if value not in key.choices:
        raise ValueProblem(
            f"must be one of {', '.join(key.choices)}; got {raw.text!r}",
            did_you_mean(value, key.choices),
        )
    return value


def _parsed(parse: Callable[[str], object]) -> Callable[[Key, Scalar], object]:
    def convert_text(key: Key, raw: Scalar) -> object:
        try:
            return parse(raw.text)
        except ValueError as e:
            raise ValueProblem(str(e)) from e

    return convert_text


def _to_path(key: Key, raw: Scalar) -> object:
    if not raw.text.strip():
        raise ValueProblem("must not be empty")
    return raw.text


def _convert_list(key: Key, raw: RawValue) -> tuple[str, ...]:
    if isinstance(raw, Scalar):
        # A single string is read as a comma-separated list: handy in environment variables.
        raw = tuple(Scalar(part.strip(), False) for part in raw.text.split(",") if part.strip())
    items: list[str] = []
    for item in raw:
        text = _to_enum(key, item) if key.choices else item.text
        if text in items:
            raise ValueProblem(f"lists {text!r} twice")
        _run_check(key, text)
        items.append(text)
    return tuple(items)


def _run_check(key: Key, text: str) -> None:
    problem = key.check(text) if key.check else None
    if problem:
        raise ValueProblem(problem)


def _check_bounds(key: Key, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    low, high = key.minimum, key.maximum
    if (low is None or value >= low) and (high is None or value <= high):
        return
    show = _SHOW.get(key.type, str)
    if low is not None and high is not None:
        raise ValueProblem(f"must be between {show(low)} and {show(high)}, got {show(value)}")
    if low is not None:
        raise ValueProblem(f"must be at least {show(low)}, got {show(value)}")
    raise ValueProblem(f"must be at most {show(high or 0)}, got {show(value)}")


def _show_duration(seconds: float) -> str:
    return format_duration(seconds) if seconds >= 0 else f"{seconds}s"


def _show_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _show_size(size: float) -> str:
    return format_size(int(size)) if size >= 0 and float(size).is_integer() else str(size)


_SHOW: dict[KeyType, Callable[[float], str]] = {
    KeyType.DURATION: _show_duration,
    KeyType.SIZE: _show_size,
    KeyType.INT: _show_number,
    KeyType.FLOAT: _show_number,
}

_CONVERTERS: dict[KeyType, Callable[[Key, Scalar], object]] = {
    KeyType.STR: _to_text,
    KeyType.SECRET: _to_text,
    KeyType.INT: _to_int,
    KeyType.BOOL: _to_bool,
    KeyType.FLOAT: _to_float,
    KeyType.DURATION: _parsed(parse_duration),
    KeyType.SIZE: _parsed(parse_size),
    KeyType.RATE: _parsed(parse_rate),
    KeyType.ENUM: _to_enum,
    KeyType.PATH: _to_path,
}

_DESCRIPTIONS: dict[KeyType, str] = {
    KeyType.STR: "a string",
    KeyType.SECRET: "a string",
    KeyType.INT: "an integer",
    KeyType.BOOL: "true or false",
    KeyType.FLOAT: "a number",
    KeyType.STR_LIST: "a list of strings",
    KeyType.DURATION: "a duration like 30s or 15m",
    KeyType.SIZE: "a size like 64KiB or 10MiB",
    KeyType.RATE: "a rate like 5/minute, or off",
    KeyType.PATH: "a path",
}
