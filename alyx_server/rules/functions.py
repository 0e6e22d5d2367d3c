"""CEL's standard functions and macros over the values of `values.py`.

`lookup(name, is_method, argc)` gives the implementation the closure compiler binds;
the string functions are case-sensitive; `matches` is an unanchored RE2 search
(`regex.py`), and comprehensions charge the evaluation budget (`budget.py`) one step per
element. Conversions follow the specification's ranges (int("9223372036854775808") is an
error, double to int truncates toward zero).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alyx_server.rules import extensions
from alyx_server.rules.budget import BUDGET, spend
from alyx_server.rules.regex import matches
from alyx_server.rules.values import (
    UINT64_MAX,
    CelEvalError,
    CelType,
    Optional,
    UInt,
    check_int,
    key_of,
    map_keys,
    no_overload,
    type_of,
)

__all__ = ["FALLBACK_FUNCTIONS", "budgeted_lookup", "comprehension", "lookup", "to_string"]

Impl = Callable[..., Any]
FALLBACK_FUNCTIONS: frozenset[str] = frozenset()


def _size(v: Any) -> int:
    t = type(v)
    if t is str or t is bytes or t is list or t is tuple or t is dict or isinstance(v, Mapping):
        return len(v)
    raise no_overload("size", v)


def _strings(name: str, fn: Callable[[str, str], bool]) -> Impl:
    def impl(s: Any, x: Any) -> bool:
        if type(s) is not str or type(x) is not str:
            raise no_overload(name, s, x)
        return fn(s, x)

    return impl


# -- conversions -------------------------------------------------------------------------
def _to_int(v: Any) -> int:
    t = type(v)
    if t is int:
        return v  # type: ignore[no-any-return]
    if t is UInt:
        return check_int(int(v))
    if t is float:
        if math.isnan(v) or math.isinf(v) or not (-(2.0**63) < v < 2.0**63):
            raise CelEvalError("integer overflow")
        return int(v)
    if t is str:
        try:
            return check_int(int(v, 10))
        except ValueError as e:
            raise CelEvalError(f"cannot convert {v!r} to int") from e
    if isinstance(v, datetime):
        return int((v - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1))
    raise no_overload("int", v)


def _to_uint(v: Any) -> UInt:
    t = type(v)
    if t is UInt:
        return v  # type: ignore[no-any-return]
    if t is int:
        if v < 0:
            raise CelEvalError("unsigned integer overflow")
        return UInt(v)
    if t is float:
        if math.isnan(v) or not (0 <= v < 2.0**64):
            raise CelEvalError("unsigned integer overflow")
        return UInt(int(v))
    if t is str:
        try:
            out = int(v, 10)
        except ValueError as e:
            raise CelEvalError(f"cannot convert {v!r} to uint") from e
        if not 0 <= out <= UINT64_MAX:
            raise CelEvalError("unsigned integer overflow")
        return UInt(out)
    raise no_overload("uint", v)


def _to_double(v: Any) -> float:
    t = type(v)
    if t is float:
        return v  # type: ignore[no-any-return]
    if t is int or t is UInt:
        return float(v)
    if t is str:
        try:
            return float(v)
        except ValueError as e:
            raise CelEvalError(f"cannot convert {v!r} to double") from e
    raise no_overload("double", v)


def _format_double(v: float) -> str:
    if v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return repr(v)


def _to_string(v: Any) -> str:
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is bool:
        return "true" if v else "false"
    if t is int or t is UInt:
        return str(int(v))
    if t is float:
        return _format_double(v)
    if t is bytes:
        try:
            return v.decode("utf-8")  # type: ignore[no-any-return]
        except UnicodeDecodeError as e:
            raise CelEvalError("invalid UTF-8 in bytes") from e
    if isinstance(v, datetime):
        return _format_ts(v)
    if isinstance(v, timedelta):
        return _format_duration(v)
    raise no_overload("string", v)


to_string = _to_string


def _to_bytes(v: Any) -> bytes:
    if type(v) is bytes:
        return v
    if type(v) is str:
        return v.encode("utf-8")
    raise no_overload("bytes", v)


def _to_bool(v: Any) -> bool:
    if type(v) is bool:
        return v
    if type(v) is str:
        if v in ("true", "True", "TRUE", "t", "1"):
            return True
        if v in ("false", "False", "FALSE", "f", "0"):
            return False
        raise CelEvalError(f"cannot convert {v!r} to bool")
    raise no_overload("bool", v)


# -- timestamps and durations ------------------------------------------------------------
_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def _to_timestamp(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v
    if type(v) is int:
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=v)
        except OverflowError as e:
            raise CelEvalError("timestamp out of range") from e
    if type(v) is not str:
        raise no_overload("timestamp", v)
    m = _TS.fullmatch(v)
    if m is None:
        raise CelEvalError(f"invalid timestamp {v!r}")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        micros = int((frac or "0").ljust(6, "0")[:6])
        tz = UTC if zone == "Z" else timezone(timedelta(hours=int(zone[:3]), minutes=int(zone[0] + zone[4:])))
        out = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micros, tzinfo=tz)
        return out.astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise CelEvalError(f"invalid timestamp {v!r}") from e


def _format_ts(v: datetime) -> str:
    v = v.astimezone(UTC)
    text = v.strftime("%Y-%m-%dT%H:%M:%S")
    if v.microsecond:
        text += ("." + f"{v.microsecond:06d}").rstrip("0")
    return text + "Z"


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|m|s|ms|us|µs|ns)")
_UNITS = {"h": 3600e6, "m": 60e6, "s": 1e6, "ms": 1e3, "us": 1.0, "µs": 1.0, "ns": 1e-3}


def _to_duration(v: Any) -> timedelta:
    if isinstance(v, timedelta):
        return v
    if type(v) is not str:
        raise no_overload("duration", v)
    text = v[1:] if v[:1] in "+-" else v
    sign = -1 if v.startswith("-") else 1
    pos, micros = 0, 0.0
    if text == "0":
        return timedelta(0)
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise CelEvalError(f"invalid duration {v!r}")
        micros += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or abs(micros) > 315_576_000_000e6:
        raise CelEvalError(f"invalid duration {v!r}")
    return timedelta(microseconds=sign * round(micros))


def _format_duration(v: timedelta) -> str:
    micros = v // timedelta(microseconds=1)
    secs, frac = divmod(abs(micros), 1_000_000)
    text = str(secs) + (("." + f"{frac:06d}").rstrip("0") if frac else "")
    return ("-" if micros < 0 else "") + text + "s"


def _zone(tz: Any) -> Any:
    if type(tz) is not str:
        raise no_overload("timezone", tz)
    m = re.fullmatch(r"([+-]?)(\d\d):(\d\d)", tz)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise CelEvalError(f"unknown time zone {tz!r}") from e


def _getter(
    name: str, part: Callable[[datetime], int], dur: Callable[[timedelta], int] | None = None
) -> Impl:
    def impl(v: Any, tz: Any = None) -> int:
        if isinstance(v, datetime):
            local = v.astimezone(UTC if tz is None else _zone(tz))
            return part(local)
        if dur is not None and isinstance(v, timedelta) and tz is None:
            return dur(v)
        raise no_overload(name, v)

    return impl


def _total(unit: timedelta) -> Callable[[timedelta], int]:
    def f(d: timedelta) -> int:
        q = abs(d) // unit
        return q if d >= timedelta(0) else -q

    return f


_GETTERS: dict[str, Impl] = {
    "getFullYear": _getter("getFullYear", lambda t: t.year),
    "getMonth": _getter("getMonth", lambda t: t.month - 1),
    "getDate": _getter("getDate", lambda t: t.day),
    "getDayOfMonth": _getter("getDayOfMonth", lambda t: t.day - 1),
    "getDayOfWeek": _getter("getDayOfWeek", lambda t: (t.weekday() + 1) % 7),
    "getDayOfYear": _getter("getDayOfYear", lambda t: t.timetuple().tm_yday - 1),
    "getHours": _getter("getHours", lambda t: t.hour, _total(timedelta(hours=1))),
    "getMinutes": _getter("getMinutes", lambda t: t.minute, _total(timedelta(minutes=1))),
    "getSeconds": _getter("getSeconds", lambda t: t.second, _total(timedelta(seconds=1))),
    "getMilliseconds": _getter(
        "getMilliseconds",
        lambda t: t.microsecond // 1000,
        lambda d: (
            _total(timedelta(milliseconds=1))(d) % 1000
            if d >= timedelta(0)
            else -(_total(timedelta(milliseconds=1))(-d) % 1000)
        ),
    ),
}


def _type(v: Any) -> CelType:
    return type_of(v)


# (name, is_method) -> {argc: impl}
_TABLE: dict[tuple[str, bool], dict[int, Impl]] = {
    ("size", False): {1: _size},
    ("size", True): {0: _size},
    ("startsWith", True): {1: _strings("startsWith", str.startswith)},
    ("endsWith", True): {1: _strings("endsWith", str.endswith)},
    ("contains", True): {1: _strings("contains", str.__contains__)},
    ("matches", True): {1: matches},
    ("matches", False): {2: matches},
    ("int", False): {1: _to_int},
    ("uint", False): {1: _to_uint},
    ("double", False): {1: _to_double},
    ("string", False): {1: _to_string},
    ("bytes", False): {1: _to_bytes},
    ("bool", False): {1: _to_bool},
    ("dyn", False): {1: lambda v: v},
    ("type", False): {1: _type},
    ("timestamp", False): {1: _to_timestamp},
    ("duration", False): {1: _to_duration},
    **{(name, True): {0: impl, 1: impl} for name, impl in _GETTERS.items()},
    **extensions.TABLE,
}


def lookup(name: str, is_method: bool, argc: int) -> Impl | None:
    """The implementation of `name` for this call shape, or None when CEL has none."""
    return _TABLE.get((name, is_method), {}).get(argc)


def budgeted_lookup(name: str, is_method: bool, argc: int) -> Impl | None:
    """An extension function whose work grows with its values: it takes the evaluation's
    `EvalBudget` as its first argument (extensions.BUDGETED)."""
    return extensions.BUDGETED.get((name, is_method), {}).get(argc)


# -- macros ------------------------------------------------------------------------------
Fn = Callable[[Mapping[str, Any]], Any]


def _items(v: Any) -> list[Any]:
    if type(v) is list or type(v) is tuple:
        return list(v)
    if isinstance(v, Mapping):
        return map_keys(v)
    raise no_overload("comprehension", v)


def _pairs(v: Any) -> list[tuple[Any, Any]]:
    """(index, value) of a list, (key, value) of a map: two-variable comprehensions."""
    if type(v) is list or type(v) is tuple:
        return list(enumerate(v))
    if isinstance(v, Mapping):
        return list(zip(map_keys(v), v.values(), strict=True))
    raise no_overload("comprehension", v)


def comprehension(kind: str, var: str, rng: Fn, body: Fn, flt: Fn | None, var2: str | None = None) -> Fn:
    """all / exists / exists_one / map / filter with the specification's error rules;
    with `var2`, the two-variable forms (and transformList, transformMap); optMap,
    optFlatMap and bind (`var` bound to the range's value once).

    Each run charges the evaluation's budget (`a[BUDGET]`) one step per element first,
    so nested loops cost the product of their sizes and stop before doing that work.
    """
    if kind in ("bind", "optMap", "optFlatMap"):
        return _binding(kind, var, rng, body)
    if var2 is not None:
        return _two_variables(kind, var, var2, rng, body, flt)

    def run(a: Mapping[str, Any]) -> Any:
        container = rng(a)
        # A list is walked as it is (CEL values are never changed), a map by its keys.
        items = container if type(container) is list or type(container) is tuple else _items(container)
        spend(a[BUDGET], len(items) + 1)
        scope = dict(a)
        if kind in ("all", "exists"):
            return _quantifier(kind == "exists", var, items, scope, body)
        out: list[Any] = []
        count = 0
        for item in items:
            scope[var] = item
            if kind == "map":
                if flt is None or _truth(flt(scope)):
                    out.append(body(scope))
            elif _truth(body(scope)):
                count += 1
                out.append(item)
        if kind == "exists_one":
            return count == 1
        return out

    return run


def _binding(kind: str, var: str, rng: Fn, body: Fn) -> Fn:
    if kind == "bind":

        def bind(a: Mapping[str, Any]) -> Any:
            return body({**a, var: rng(a)})

        return bind
    flat = kind == "optFlatMap"

    def opt_map(a: Mapping[str, Any]) -> Any:
        opt = rng(a)
        if type(opt) is not Optional:
            raise no_overload(kind, opt)
        if not opt.has:
            return opt
        scope = dict(a)
        scope[var] = opt.value
        out = body(scope)
        if flat:
            if type(out) is not Optional:
                raise no_overload(kind, out)
            return out
        return Optional(True, out)

    return opt_map


def _two_variables(kind: str, var: str, var2: str, rng: Fn, body: Fn, flt: Fn | None) -> Fn:
    quantifier = kind in ("all", "exists")
    exists = kind == "exists"

    def run(a: Mapping[str, Any]) -> Any:
        container = rng(a)
        if quantifier and (type(container) is list or type(container) is tuple):
            # Charged before the loop, which then walks the list without copying it.
            spend(a[BUDGET], len(container) + 1)
            pairs: Any = enumerate(container)
        else:
            pairs = _pairs(container)
            spend(a[BUDGET], len(pairs) + 1)
        scope = dict(a)
        if quantifier:
            error: CelEvalError | None = None
            for k, v in pairs:
                scope[var], scope[var2] = k, v
                try:
                    r = body(scope)
                except CelEvalError as e:
                    error = error or e
                    continue
                if r is exists:
                    return exists
                if type(r) is not bool:
                    error = error or no_overload("predicate", r)
            if error is not None:
                raise error
            return not exists
        if kind == "exists_one":
            count = 0
            for k, v in pairs:
                scope[var], scope[var2] = k, v
                count += _truth(body(scope))
            return count == 1
        if kind == "transformList":
            out: list[Any] = []
            for k, v in pairs:
                scope[var], scope[var2] = k, v
                if flt is None or _truth(flt(scope)):
                    out.append(body(scope))
            return out
        if kind == "transformMap":
            result: dict[Any, Any] = {}
            for k, v in pairs:
                scope[var], scope[var2] = k, v
                if flt is None or _truth(flt(scope)):
                    result[key_of(k)] = body(scope)
            return result
        raise no_overload(kind, container)

    return run


def _truth(v: Any) -> bool:
    if type(v) is not bool:
        raise no_overload("predicate", v)
    return v


def _quantifier(exists: bool, var: str, items: Sequence[Any], scope: dict[str, Any], body: Fn) -> bool:
    error: CelEvalError | None = None
    for item in items:
        scope[var] = item
        try:
            v = body(scope)
        except CelEvalError as e:
            error = error or e
            continue
        if v is exists:
            return bool(exists)
        if type(v) is not bool:
            error = error or no_overload("predicate", v)
    if error is not None:
        raise error
    return not exists
