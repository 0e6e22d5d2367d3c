"""CEL's standard extensions: strings, math, optionals (cel-go's `ext` package semantics).

    strings    charAt indexOf lastIndexOf lowerAscii upperAscii replace split substring
               trim join format reverse, strings.quote
    math       math.greatest math.least math.abs math.ceil math.floor math.round
               math.trunc math.sign math.isNaN math.isInf math.isFinite, math.bitAnd
               bitOr bitXor bitNot bitShiftLeft bitShiftRight
    optionals  optional.of optional.none optional.ofNonZeroValue, hasValue value
               orValue or (optMap, optFlatMap, `?.`, `[?]` are syntax: compile_py)

`TABLE` holds the functions that do a bounded amount of work; `BUDGETED` the ones whose
work grows with their input or output (string building, splitting, formatting): their
implementations take the evaluation's `EvalBudget` first and charge it *before* building
(`replace` and `join` compute the result's size first), so `'x'.replace('', s)` over a
long `s` is an evaluation error, not a gigabyte.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from alyx_server.rules.budget import SIZE_PER_STEP, EvalBudget, spend
from alyx_server.rules.values import (
    INT64_MAX,
    NONE,
    UINT64_MAX,
    BoolKey,
    CelEvalError,
    CelType,
    Optional,
    UInt,
    cel_compare,
    check_int,
    no_overload,
)

__all__ = ["BUDGETED", "TABLE", "format_value", "non_zero"]

Impl = Callable[..., Any]


def _charge(budget: EvalBudget, size: int) -> None:
    if size >= SIZE_PER_STEP:
        spend(budget, size // SIZE_PER_STEP)


def _str(name: str, *values: Any) -> None:
    for v in values:
        if type(v) is not str:
            raise no_overload(name, *values)


def _int(name: str, *values: Any) -> None:
    for v in values:
        if type(v) is not int:
            raise no_overload(name, *values)


# -- strings -----------------------------------------------------------------------------
def _char_at(s: Any, i: Any) -> str:
    _str("charAt", s)
    _int("charAt", i)
    if i < 0 or i > len(s):
        raise CelEvalError(f"index out of range: {i}")
    return s[i : i + 1]  # type: ignore[no-any-return]


def _index_of(budget: EvalBudget, s: Any, sub: Any, start: Any = 0) -> int:
    _str("indexOf", s, sub)
    _int("indexOf", start)
    if start < 0 or start > len(s):
        raise CelEvalError(f"index out of range: {start}")
    _charge(budget, len(s))
    return s.find(sub, start)  # type: ignore[no-any-return]


def _last_index_of(budget: EvalBudget, s: Any, sub: Any, start: Any = None) -> int:
    _str("lastIndexOf", s, sub)
    if start is None:
        start = len(s)
    _int("lastIndexOf", start)
    if start < 0 or start > len(s):
        raise CelEvalError(f"index out of range: {start}")
    _charge(budget, len(s))
    return s.rfind(sub, 0, start + len(sub))  # type: ignore[no-any-return]


_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_UPPER = {c + 32: c for c in range(ord("A"), ord("Z") + 1)}


def _lower_ascii(budget: EvalBudget, s: Any) -> str:
    _str("lowerAscii", s)
    _charge(budget, len(s))
    # str.lower of an ASCII string changes A-Z only (isascii is O(1)); translate is slow.
    return s.lower() if s.isascii() else s.translate(_LOWER)  # type: ignore[no-any-return]


def _upper_ascii(budget: EvalBudget, s: Any) -> str:
    _str("upperAscii", s)
    _charge(budget, len(s))
    return s.upper() if s.isascii() else s.translate(_UPPER)  # type: ignore[no-any-return]


def _replace(budget: EvalBudget, s: Any, old: Any, new: Any, n: Any = -1) -> str:
    _str("replace", s, old, new)
    _int("replace", n)
    _charge(budget, len(s))
    count = len(s) + 1 if old == "" else s.count(old)
    if n >= 0:
        count = min(count, n)
    _charge(budget, len(s) + count * max(len(new) - len(old), 0))
    return s.replace(old, new, n if n >= 0 else -1)  # type: ignore[no-any-return]


def _split(budget: EvalBudget, s: Any, sep: Any, n: Any = -1) -> list[str]:
    _str("split", s, sep)
    _int("split", n)
    _charge(budget, len(s))
    if n == 0:
        return []
    if sep == "":
        chars = list(s)
        if 0 < n < len(chars):
            return [*chars[: n - 1], "".join(chars[n - 1 :])]
        return chars
    return s.split(sep, n - 1 if n > 0 else -1)  # type: ignore[no-any-return]


def _substring(budget: EvalBudget, s: Any, start: Any, end: Any = None) -> str:
    _str("substring", s)
    if end is None:
        end = len(s)
    _int("substring", start, end)
    if start < 0 or start > len(s) or end < 0 or end > len(s):
        raise CelEvalError(f"index out of range: {start if not 0 <= start <= len(s) else end}")
    if start > end:
        raise CelEvalError(f"invalid substring range. start: {start}, end: {end}")
    _charge(budget, end - start)
    return s[start:end]  # type: ignore[no-any-return]


# Go's unicode.IsSpace: what cel-go's trim removes.
_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


_ASCII_SPACE = "\t\n\v\f\r "


def _trim(budget: EvalBudget, s: Any) -> str:
    _str("trim", s)
    _charge(budget, len(s))
    return s.strip(_ASCII_SPACE if s.isascii() else _SPACE)  # type: ignore[no-any-return]


def _join(budget: EvalBudget, items: Any, sep: Any = "") -> str:
    if type(items) is not list and type(items) is not tuple:
        raise no_overload("join", items, sep)
    _str("join", sep, *items)
    _charge(budget, sum(map(len, items)) + len(sep) * len(items))
    return sep.join(items)  # type: ignore[no-any-return]


def _reverse(budget: EvalBudget, s: Any) -> str:
    _str("reverse", s)
    _charge(budget, len(s))
    return s[::-1]  # type: ignore[no-any-return]


_QUOTE = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
    "\\": "\\\\", '"': '\\"',
}  # fmt: skip


def _quote(budget: EvalBudget, s: Any) -> str:
    _str("strings.quote", s)
    _charge(budget, 2 * len(s))
    return '"' + "".join(_QUOTE.get(c, c) for c in s) + '"'


# -- format ------------------------------------------------------------------------------
def _double_text(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return ""


def format_value(v: Any, budget: EvalBudget) -> str:
    """`%s` of a value, as cel-go's format writes it (lists and maps recursively)."""
    from alyx_server.rules.functions import to_string

    t = type(v)
    if v is None:
        out = "null"
    elif t is float:
        out = _double_text(v) or to_string(v)
    elif t is list or t is tuple:
        out = "[" + ", ".join(format_value(x, budget) for x in v) + "]"
    elif isinstance(v, Mapping):
        entries = sorted(
            (format_value(k.value if type(k) is BoolKey else k, budget), format_value(x, budget))
            for k, x in v.items()
        )
        out = "{" + ", ".join(f"{k}: {x}" for k, x in entries) + "}"
    elif t is CelType:
        out = v.name
    elif t is Optional:
        raise no_overload("format", v)
    else:
        out = to_string(v)
    _charge(budget, len(out))
    return out


def _number(clause: str, v: Any) -> Any:
    t = type(v)
    if t is int or t is UInt or t is float:
        return v
    raise CelEvalError(
        f"error during formatting: {clause} clause can only be used on numbers, was given {t.__name__}"
    )


def _clause(verb: str, precision: int | None, v: Any, budget: EvalBudget) -> str:
    t = type(v)
    if verb == "s":
        return format_value(v, budget)
    if verb == "d":
        if t is float and _double_text(v):
            return _double_text(v)
        if t is not int and t is not UInt:
            raise CelEvalError("error during formatting: decimal clause can only be used on integers")
        return str(int(v))
    if verb in "fe":
        n = _number("fixed-point" if verb == "f" else "scientific", v)
        if type(n) is float and _double_text(n):
            return _double_text(n)
        digits = 6 if precision is None else precision
        return f"{float(n):.{digits}{verb}}"
    if verb == "b":
        if t is bool:
            return "1" if v else "0"
        if t is not int and t is not UInt:
            raise CelEvalError("error during formatting: only integers and bools can be formatted as binary")
        return format(int(v), "b")
    if verb == "o":
        if t is not int and t is not UInt:
            raise CelEvalError("error during formatting: octal clause can only be used on integers")
        return format(int(v), "o")
    if verb in "xX":
        if t is int or t is UInt:
            out = format(int(v), "x")
        elif t is str:
            out = v.encode("utf-8").hex()
        elif t is bytes:
            out = v.hex()
        else:
            raise CelEvalError(
                "error during formatting: only integers, byte buffers, and strings can be formatted as hex"
            )
        return out.upper() if verb == "X" else out
    raise CelEvalError(f"could not parse formatting clause: unrecognized formatting clause {verb!r}")


def _format(budget: EvalBudget, text: Any, args: Any) -> str:
    _str("format", text)
    if type(args) is not list and type(args) is not tuple:
        raise no_overload("format", text, args)
    _charge(budget, len(text))
    out: list[str] = []
    i = used = 0
    while i < len(text):
        c = text[i]
        if c != "%":
            j = text.find("%", i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
            continue
        i += 1
        if i < len(text) and text[i] == "%":
            out.append("%")
            i += 1
            continue
        precision = None
        if i < len(text) and text[i] == ".":
            j = i + 1
            while j < len(text) and text[j].isdigit():
                j += 1
            if j == i + 1:
                raise CelEvalError("could not parse formatting clause: missing precision")
            precision, i = int(text[i + 1 : j]), j
        if i >= len(text):
            raise CelEvalError("could not parse formatting clause: unexpected end of string")
        if used >= len(args):
            raise CelEvalError(f"index {used} out of range")
        out.append(_clause(text[i], precision, args[used], budget))
        used += 1
        i += 1
    return "".join(out)


# -- math --------------------------------------------------------------------------------
def _numbers(name: str, args: tuple[Any, ...]) -> list[Any]:
    values = list(args[0]) if len(args) == 1 and type(args[0]) in (list, tuple) else list(args)
    if not values:
        raise CelEvalError(f"{name}(list) argument must not be empty")
    for v in values:
        if type(v) not in (int, UInt, float):
            raise no_overload(name, v)
    return values


def _extreme(name: str, op: str) -> Impl:
    def impl(budget: EvalBudget, *args: Any) -> Any:
        values = _numbers(name, args)
        _charge(budget, len(values))
        best = values[0]
        for v in values[1:]:
            if cel_compare(op, v, best):
                best = v
        return best

    return impl


def _double_fn(name: str, fn: Callable[[float], Any]) -> Impl:
    def impl(v: Any) -> Any:
        if type(v) is not float:
            raise no_overload(name, v)
        return fn(v)

    return impl


def _round(v: float) -> float:
    if math.isnan(v) or math.isinf(v):
        return v
    return float(math.copysign(math.floor(abs(v) + 0.5), v))


def _keep_special(fn: Callable[[float], Any]) -> Callable[[float], float]:
    def impl(v: float) -> float:
        return v if math.isnan(v) or math.isinf(v) else float(fn(v))

    return impl


def _abs(v: Any) -> Any:
    t = type(v)
    if t is int:
        return check_int(abs(v))
    if t is UInt:
        return v
    if t is float:
        return abs(v)
    raise no_overload("math.abs", v)


def _sign(v: Any) -> Any:
    t = type(v)
    if t is int:
        return (v > 0) - (v < 0)
    if t is UInt:
        return UInt(1 if v else 0)
    if t is float:
        if math.isnan(v):
            return v
        return 1.0 if v > 0 else -1.0 if v < 0 else 0.0
    raise no_overload("math.sign", v)


def _bits(name: str, fn: Callable[[int, int], int]) -> Impl:
    def impl(a: Any, b: Any) -> Any:
        ta = type(a)
        if ta is not type(b) or (ta is not int and ta is not UInt):
            raise no_overload(name, a, b)
        return UInt(fn(a, b)) if ta is UInt else fn(a, b)

    return impl


def _bit_not(v: Any) -> Any:
    if type(v) is int:
        return ~v
    if type(v) is UInt:
        return UInt(UINT64_MAX ^ v)
    raise no_overload("math.bitNot", v)


def _shift(name: str, left: bool) -> Impl:
    def impl(v: Any, n: Any) -> Any:
        t = type(v)
        if (t is not int and t is not UInt) or type(n) is not int:
            raise no_overload(name, v, n)
        if n < 0:
            raise CelEvalError(f"{name}() negative offset: {n}")
        if n >= 64:
            return UInt(0) if t is UInt else 0
        bits = int(v) & UINT64_MAX
        bits = ((bits << n) if left else (bits >> n)) & UINT64_MAX
        if t is UInt:
            return UInt(bits)
        return bits - (1 << 64) if bits > INT64_MAX else bits

    return impl


# -- optionals ---------------------------------------------------------------------------
def non_zero(v: Any) -> bool:
    """Whether `v` is not its type's zero value (`optional.ofNonZeroValue`)."""
    if v is None or v is False:
        return False
    t = type(v)
    if t in (int, UInt, float, str, bytes, list, tuple, dict) or isinstance(v, Mapping):
        return bool(v)
    if t is timedelta:
        return bool(v)
    if isinstance(v, datetime):
        return v.timestamp() != 0
    return True


def _opt(name: str, v: Any) -> Optional:
    if type(v) is not Optional:
        raise no_overload(name, v)
    return v


def _value(v: Any) -> Any:
    if not _opt("value", v).has:
        raise CelEvalError("optional.none() dereference")
    return v.value


def _or_value(v: Any, other: Any) -> Any:
    return v.value if _opt("orValue", v).has else other


def _or(v: Any, other: Any) -> Any:
    if _opt("or", v).has:
        return v
    return _opt("or", other)


TABLE: dict[tuple[str, bool], dict[int, Impl]] = {
    ("charAt", True): {1: _char_at},
    ("math.abs", False): {1: _abs},
    ("math.sign", False): {1: _sign},
    ("math.ceil", False): {1: _double_fn("math.ceil", _keep_special(math.ceil))},
    ("math.floor", False): {1: _double_fn("math.floor", _keep_special(math.floor))},
    ("math.round", False): {1: _double_fn("math.round", _round)},
    ("math.trunc", False): {1: _double_fn("math.trunc", _keep_special(math.trunc))},
    ("math.isNaN", False): {1: _double_fn("math.isNaN", math.isnan)},
    ("math.isInf", False): {1: _double_fn("math.isInf", math.isinf)},
    ("math.isFinite", False): {1: _double_fn("math.isFinite", math.isfinite)},
    ("math.bitAnd", False): {2: _bits("math.bitAnd", lambda a, b: a & b)},
    ("math.bitOr", False): {2: _bits("math.bitOr", lambda a, b: a | b)},
    ("math.bitXor", False): {2: _bits("math.bitXor", lambda a, b: a ^ b)},
    ("math.bitNot", False): {1: _bit_not},
    ("math.bitShiftLeft", False): {2: _shift("math.bitShiftLeft", True)},
    ("math.bitShiftRight", False): {2: _shift("math.bitShiftRight", False)},
    ("optional.of", False): {1: lambda v: Optional(True, v)},
    ("optional.none", False): {0: lambda: NONE},
    ("optional.ofNonZeroValue", False): {1: lambda v: Optional(True, v) if non_zero(v) else NONE},
    ("hasValue", True): {0: lambda v: _opt("hasValue", v).has},
    ("value", True): {0: _value},
    ("orValue", True): {1: _or_value},
    ("or", True): {1: _or},
}

_GREATEST, _LEAST = _extreme("math.greatest", ">"), _extreme("math.least", "<")
BUDGETED: dict[tuple[str, bool], dict[int, Impl]] = {
    ("indexOf", True): {1: _index_of, 2: _index_of},
    ("lastIndexOf", True): {1: _last_index_of, 2: _last_index_of},
    ("lowerAscii", True): {0: _lower_ascii},
    ("upperAscii", True): {0: _upper_ascii},
    ("replace", True): {2: _replace, 3: _replace},
    ("split", True): {1: _split, 2: _split},
    ("substring", True): {1: _substring, 2: _substring},
    ("trim", True): {0: _trim},
    ("join", True): {0: _join, 1: _join},
    ("reverse", True): {0: _reverse},
    ("format", True): {1: _format},
    ("strings.quote", False): {1: _quote},
    ("math.greatest", False): {n: _GREATEST for n in range(1, 33)},
    ("math.least", False): {n: _LEAST for n in range(1, 33)},
}


# -- closures ----------------------------------------------------------------------------
Fn = Callable[[Mapping[str, Any]], Any]
DYNAMIC: Any = object()
"""In `closure`'s `literals`: this argument is computed at evaluation time."""


def closure(
    name: str, is_method: bool, args: list[Fn], literals: list[Any], key: str
) -> tuple[Fn, bool] | None:
    """A closure made for one call site of an extension function, or None (the compiler
    then calls the `TABLE`/`BUDGETED` implementation): the function resolved at compile
    time, constant arguments (a separator, a format string) checked or parsed once, and the
    budget read from the activation (`a[key]`) only when a value is long enough to charge.

    `args` are the receiver (for a method) and the arguments as closures; `literals` the
    same positions' constant values, or `DYNAMIC`. The bool says whether the closure
    charges the evaluation's budget. The closures keep the implementations' semantics and
    charge exactly what they charge, before building.
    """
    make = _CLOSURES.get((name, is_method, len(args)))
    return None if make is None else make(args, literals, key)


def _scan(name: str, method: Callable[[str], Any]) -> Callable[[list[Fn], list[Any], str], tuple[Fn, bool]]:
    """`s.f()` that reads `s` once and builds at most its size (lowerAscii, trim, ...)."""

    def make(args: list[Fn], literals: list[Any], key: str) -> tuple[Fn, bool]:
        (x,) = args

        def scan(a: Mapping[str, Any]) -> Any:
            s = x(a)
            if type(s) is not str:
                raise no_overload(name, s)
            if len(s) >= SIZE_PER_STEP:
                spend(a[key], len(s) // SIZE_PER_STEP)
            return method(s)

        return scan, True

    return make


def _lower(s: str) -> str:
    return s.lower() if s.isascii() else s.translate(_LOWER)


def _upper(s: str) -> str:
    return s.upper() if s.isascii() else s.translate(_UPPER)


def _stripped(s: str) -> str:
    return s.strip(_ASCII_SPACE if s.isascii() else _SPACE)


def _make_index_of(args: list[Fn], literals: list[Any], key: str) -> tuple[Fn, bool] | None:
    x = args[0]
    sub = literals[1]
    if type(sub) is not str:
        return None

    def index_of(a: Mapping[str, Any]) -> Any:
        s = x(a)
        if type(s) is not str:
            raise no_overload("indexOf", s, sub)
        if len(s) >= SIZE_PER_STEP:
            spend(a[key], len(s) // SIZE_PER_STEP)
        return s.find(sub)

    return index_of, True


def _make_split(args: list[Fn], literals: list[Any], key: str) -> tuple[Fn, bool] | None:
    x = args[0]
    sep = literals[1]
    if type(sep) is not str or sep == "":
        return None

    def split(a: Mapping[str, Any]) -> Any:
        s = x(a)
        if type(s) is not str:
            raise no_overload("split", s, sep)
        # The parts hold at most len(s) characters and len(s) + 1 items: charged first.
        if len(s) >= SIZE_PER_STEP:
            spend(a[key], len(s) // SIZE_PER_STEP)
        return s.split(sep)

    return split, True


def _make_extreme(name: str, op: str) -> Callable[[list[Fn], list[Any], str], tuple[Fn, bool] | None]:
    generic = _GREATEST if op == ">" else _LEAST
    greatest = op == ">"

    def make(args: list[Fn], literals: list[Any], key: str) -> tuple[Fn, bool] | None:
        if len(args) != 2:
            return None
        x, y = args

        # Two scalars (a list literal is one argument): a constant amount of work, no
        # budget; two ints are the common case, the rest is the implementation's.
        def extreme(a: Mapping[str, Any]) -> Any:
            u, v = x(a), y(a)
            if type(u) is int and type(v) is int:
                if greatest:
                    return v if v > u else u
                return v if v < u else u
            return generic(_UNMETERED, u, v)

        return extreme, False

    return make


_UNMETERED: EvalBudget = [0, 0]
"""A budget for calls that charge nothing (two arguments are below one step)."""


def _make_format(args: list[Fn], literals: list[Any], key: str) -> tuple[Fn, bool] | None:
    text = literals[0]
    if type(text) is not str:
        return None
    pieces = _parse_format(text)
    if pieces is None:
        return None
    (y,) = args[1:]
    steps = len(text) // SIZE_PER_STEP
    clause = _clause

    def format_(a: Mapping[str, Any]) -> Any:
        values = y(a)
        if type(values) is not list and type(values) is not tuple:
            raise no_overload("format", text, values)
        budget = a[key]
        if steps:
            spend(budget, steps)
        out: list[str] = []
        for piece in pieces:
            if type(piece) is str:
                out.append(piece)
                continue
            verb, precision, index = piece
            if index >= len(values):
                raise CelEvalError(f"index {index} out of range")
            out.append(clause(verb, precision, values[index], budget))
        return "".join(out)

    return format_, True


def _parse_format(text: str) -> list[Any] | None:
    """`text`'s literal pieces and (verb, precision, argument index) clauses, or None when
    it does not parse (the implementation then reports it at evaluation time)."""
    pieces: list[Any] = []
    i = used = 0
    while i < len(text):
        j = text.find("%", i)
        if j < 0:
            pieces.append(text[i:])
            break
        if j > i:
            pieces.append(text[i:j])
        i = j + 1
        if i < len(text) and text[i] == "%":
            pieces.append("%")
            i += 1
            continue
        precision = None
        if i < len(text) and text[i] == ".":
            j = i + 1
            while j < len(text) and text[j].isdigit():
                j += 1
            if j == i + 1:
                return None
            precision, i = int(text[i + 1 : j]), j
        if i >= len(text):
            return None
        pieces.append((text[i], precision, used))
        used += 1
        i += 1
    return pieces


def _make_or_value(args: list[Fn], literals: list[Any], key: str) -> tuple[Fn, bool]:
    x, y = args

    def or_value(a: Mapping[str, Any]) -> Any:
        v, other = x(a), y(a)
        if type(v) is not Optional:
            raise no_overload("orValue", v)
        return v.value if v.has else other

    return or_value, False


_CLOSURES: dict[tuple[str, bool, int], Callable[[list[Fn], list[Any], str], tuple[Fn, bool] | None]] = {
    ("lowerAscii", True, 1): _scan("lowerAscii", _lower),
    ("upperAscii", True, 1): _scan("upperAscii", _upper),
    ("trim", True, 1): _scan("trim", _stripped),
    ("reverse", True, 1): _scan("reverse", lambda s: s[::-1]),
    ("indexOf", True, 2): _make_index_of,
    ("split", True, 2): _make_split,
    ("format", True, 2): _make_format,
    ("orValue", True, 2): _make_or_value,
    **{("math.greatest", False, n): _make_extreme("math.greatest", ">") for n in range(1, 33)},
    **{("math.least", False, n): _make_extreme("math.least", "<") for n in range(1, 33)},
}
