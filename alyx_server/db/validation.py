"""Field validations beyond the type: lengths, ranges, pattern, enum and formats.

Each check is compiled once per field into a closure called with (JSON value, stored
value) after the type conversion succeeded; a failure raises `InvalidValue` carrying
the REST field code (`min_length`, `max_value`, `format_email`, ...) and a message that
names the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alyx_server.schema.formats import FORMAT_CHECKS
from alyx_server.schema.model import Field, FieldType
from alyx_server.schema.patterns import compile_pattern

__all__ = ["Check", "InvalidValue", "field_checks"]

Check = Callable[[Any, Any], None]
# The checks themselves are the schema loader's, so a default and a stored value agree.
_FORMAT_ERRORS = {
    "email": ("format_email", "must be an email address"),
    "url": ("format_url", "must be an http(s) URL"),
    "uuid": ("format_uuid", "must be a UUID"),
}


class InvalidValue(Exception):
    """One value that does not fit its field; becomes a FieldIssue."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


_UNITS = {FieldType.BLOB: "byte", FieldType.JSON: "item"}


def field_checks(f: Field) -> list[Check]:
    """Validators called with (JSON value, stored value) once the type is known good."""
    v, name = f.validation, f.name
    out: list[Check] = []
    unit = _UNITS.get(f.type, "character")

    def length(json_value: Any, stored: Any) -> int | None:
        target = stored if f.type is FieldType.BLOB else json_value
        return len(target) if isinstance(target, str | bytes | list | dict) else None

    if v.min_length is not None:
        lo = v.min_length

        def min_length(j: Any, s: Any) -> None:
            n = length(j, s)
            if n is not None and n < lo:
                raise InvalidValue("min_length", f"{name} must be at least {_plural(lo, unit)} long")

        out.append(min_length)
    if v.max_length is not None:
        hi = v.max_length

        def max_length(j: Any, s: Any) -> None:
            n = length(j, s)
            if n is not None and n > hi:
                raise InvalidValue("max_length", f"{name} must be at most {_plural(hi, unit)} long")

        out.append(max_length)
    out.extend(_range_checks(f))
    out.extend(_text_checks(f))
    return out


def _range_checks(f: Field) -> list[Check]:
    v, name = f.validation, f.name
    out: list[Check] = []
    if v.min is not None:
        lo = v.min

        def min_value(_j: Any, s: Any) -> None:
            if isinstance(s, int | float) and s < lo:
                raise InvalidValue("min_value", f"{name} must be at least {lo}")

        out.append(min_value)
    if v.max is not None:
        hi = v.max

        def max_value(_j: Any, s: Any) -> None:
            if isinstance(s, int | float) and s > hi:
                raise InvalidValue("max_value", f"{name} must be at most {hi}")

        out.append(max_value)
    if v.enum is not None:
        allowed = v.enum
        listed = ", ".join(str(a) for a in allowed)

        def enum(j: Any, _s: Any) -> None:
            if j not in allowed:
                raise InvalidValue("enum", f"{name} must be one of: {listed}")

        out.append(enum)
    return out


def _text_checks(f: Field) -> list[Check]:
    v, name = f.validation, f.name
    out: list[Check] = []
    if v.pattern is not None:
        regex, source = compile_pattern(v.pattern), v.pattern

        def pattern(_j: Any, s: Any) -> None:
            if isinstance(s, str) and not regex.matches(s):
                raise InvalidValue("pattern", f"{name} must match the pattern {source}")

        out.append(pattern)
    if v.format is not None:
        is_valid = FORMAT_CHECKS[v.format]
        code, message = _FORMAT_ERRORS[v.format]

        def format_check(_j: Any, s: Any) -> None:
            if isinstance(s, str) and not is_valid(s):
                raise InvalidValue(code, f"{name} {message}")

        out.append(format_check)
    return out
