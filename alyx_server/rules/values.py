"""CEL values as plain Python objects, with the specification's operators.

    CEL        Python
    null       None
    bool       bool
    int        int (64-bit: overflow is an error)
    uint       UInt (an int subclass, 0 .. 2**64-1)
    double     float
    string     str
    bytes      bytes
    list       list (or tuple)
    map        dict
    timestamp  datetime (aware, UTC)
    duration   timedelta
    type       CelType
    optional   Optional (CEL's optional values: `optional.of(x)`, `m.?key`)

An evaluation error is raised as `CelEvalError`; the logical operators catch it and
absorb it as the specification says (`false && error` is false, `true || error` true).
Equality is heterogeneous (values of different types are unequal, never an error) and
numbers compare across int, uint and double by their exact values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "NONE",
    "UINT64_MAX",
    "BoolKey",
    "CelEvalError",
    "CelType",
    "Optional",
    "UInt",
    "cel_add",
    "cel_compare",
    "cel_div",
    "cel_eq",
    "cel_in",
    "cel_index",
    "cel_mod",
    "cel_mul",
    "cel_neg",
    "cel_select",
    "cel_sub",
    "check_int",
    "from_json",
    "key_of",
    "map_keys",
    "no_overload",
    "opt_index",
    "opt_select",
    "type_of",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
# CEL's timestamp range is years 1..9999 (datetime's own); durations are about +-10000 years.
MAX_DURATION = timedelta(seconds=315_576_000_000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TS_DIFF = timedelta(microseconds=INT64_MAX // 1000)


class CelEvalError(Exception):
    """An error value of CEL: raised, and absorbed by `&&`, `||` and some macros."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UInt(int):
    """CEL's uint: an int that remembers its type."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{int(self)}u"


@dataclass(frozen=True, slots=True)
class CelType:
    """A CEL type as a value (`type(1) == int`)."""

    name: str

    def __str__(self) -> str:
        return self.name


class Optional:
    """CEL's `optional_type`: a value that may be absent (`optional.none()`)."""

    __slots__ = ("has", "value")

    def __init__(self, has: bool, value: Any = None) -> None:
        self.has = has
        self.value = value

    def __eq__(self, other: object) -> bool:
        if type(other) is not Optional:
            return False
        return self.has == other.has and (not self.has or cel_eq(self.value, other.value))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"optional.of({self.value!r})" if self.has else "optional.none()"


NONE = Optional(False)


def no_overload(op: str, *args: Any) -> CelEvalError:
    types = ", ".join(type_of(a).name for a in args)
    return CelEvalError(f"no such overload: {op}({types})")


def type_of(v: Any) -> CelType:
    """The CEL type of a value."""
    t = type(v)
    name = _TYPE_NAMES.get(t)
    if name is None:
        if isinstance(v, UInt):
            name = "uint"
        elif isinstance(v, Mapping):
            name = "map"
        elif isinstance(v, Sequence) and not isinstance(v, str | bytes):
            name = "list"
        elif isinstance(v, datetime):
            name = "google.protobuf.Timestamp"
        elif isinstance(v, timedelta):
            name = "google.protobuf.Duration"
        else:
            name = t.__name__
    return CelType(name)


_TYPE_NAMES: dict[type, str] = {
    type(None): "null_type",
    bool: "bool",
    int: "int",
    UInt: "uint",
    float: "double",
    str: "string",
    bytes: "bytes",
    list: "list",
    tuple: "list",
    dict: "map",
    datetime: "google.protobuf.Timestamp",
    timedelta: "google.protobuf.Duration",
    CelType: "type",
    Optional: "optional_type",
}


def check_int(v: int) -> int:
    if v < INT64_MIN or v > INT64_MAX:
        raise CelEvalError("return error for overflow")
    return v


def _check_uint(v: int) -> UInt:
    if v < 0 or v > UINT64_MAX:
        raise CelEvalError("return error for overflow")
    return UInt(v)


def _check_ts(v: datetime) -> datetime:
    return v


def _check_duration(v: timedelta) -> timedelta:
    if abs(v) > MAX_DURATION:
        raise CelEvalError("return error for overflow")
    return v


# -- classification ----------------------------------------------------------------------
def _is_num(v: Any) -> bool:
    t = type(v)
    return t is int or t is float or t is UInt


def _is_list(v: Any) -> bool:
    return type(v) is list or type(v) is tuple


# -- equality ----------------------------------------------------------------------------
def cel_eq(a: Any, b: Any) -> bool:
    """Heterogeneous equality: different kinds are unequal; numbers compare by value."""
    ta, tb = type(a), type(b)
    if ta is tb and (ta is str or ta is int or ta is bool or a is None):
        return bool(a == b)
    if _is_num(a):
        if not _is_num(b):
            return False
        if ta is float or tb is float:
            return float(a) == float(b)
        return bool(a == b)
    if ta is bool or tb is bool or a is None or b is None:
        return False
    if _is_list(a):
        if not _is_list(b) or len(a) != len(b):
            return False
        return all(cel_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        if not isinstance(b, Mapping) or len(a) != len(b):
            return False
        for k, v in a.items():
            found, other = _map_find(b, k)
            if not found or not cel_eq(v, other):
                return False
        return True
    if ta is tb or (isinstance(a, datetime) and isinstance(b, datetime)):
        return bool(a == b)
    return False


def key_of(k: Any) -> Any:
    """A map key as a Python dict key that keeps CEL's key kinds apart: `true` and `1`
    are distinct keys in CEL but one key in a dict, so bool keys are stored wrapped."""
    return BoolKey(k) if type(k) is bool else k


class BoolKey:
    """A bool map key (see `key_of`); equal only to the same bool key."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is BoolKey and other.value is self.value

    def __hash__(self) -> int:
        return hash(("bool", self.value))

    def __repr__(self) -> str:
        return "true" if self.value else "false"


def _map_find(m: Mapping[Any, Any], key: Any) -> tuple[bool, Any]:
    """Look a key up with CEL's key equality (1 == 1u == 1.0, but true != 1)."""
    if type(key) is str:
        if key in m:
            return True, m[key]
        return False, None
    if type(key) is BoolKey:
        key = key.value
    for k, v in m.items():
        if type(k) is BoolKey:
            k = k.value
        if type(k) is not str and cel_eq(k, key):
            return True, v
    return False, None


def map_keys(m: Mapping[Any, Any]) -> list[Any]:
    """A map's keys as CEL values (bool keys unwrapped, see `key_of`)."""
    return [k.value if type(k) is BoolKey else k for k in m]


# -- ordering ----------------------------------------------------------------------------
def cel_compare(op: str, a: Any, b: Any) -> bool:
    """`<`, `<=`, `>`, `>=` on values of one orderable kind (numbers across kinds)."""
    ta, tb = type(a), type(b)
    ok = (
        (_is_num(a) and _is_num(b))
        or (ta is tb and ta in (str, bytes, bool, timedelta))
        or (isinstance(a, datetime) and isinstance(b, datetime))
    )
    if not ok:
        raise no_overload(op, a, b)
    if (ta is float) != (tb is float) and _is_num(a):
        # int and uint compare with a double as doubles (the specification's lossy rule).
        a, b = float(a), float(b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


# -- arithmetic --------------------------------------------------------------------------
def cel_add(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is int:
            return check_int(a + b)
        if ta is float or ta is str or ta is bytes:
            return a + b
        if ta is UInt:
            return _check_uint(a + b)
        if ta is timedelta:
            return _check_duration(a + b)
    if _is_list(a) and _is_list(b):
        return [*a, *b]
    try:
        if isinstance(a, datetime) and tb is timedelta:
            return _check_ts(a + b)
        if ta is timedelta and isinstance(b, datetime):
            return _check_ts(b + a)
    except OverflowError as e:
        raise CelEvalError("timestamp out of range") from e
    raise no_overload("_+_", a, b)


def cel_sub(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is int:
            return check_int(a - b)
        if ta is float:
            return a - b
        if ta is UInt:
            return _check_uint(a - b)
        if ta is timedelta:
            return _check_duration(a - b)
    try:
        if isinstance(a, datetime) and isinstance(b, datetime):
            # The difference of two timestamps must fit in 64-bit nanoseconds (about 292 years).
            diff = a - b
            if abs(diff) > _MAX_TS_DIFF:
                raise CelEvalError("duration out of range")
            return diff
        if isinstance(a, datetime) and tb is timedelta:
            return _check_ts(a - b)
    except OverflowError as e:
        raise CelEvalError("timestamp out of range") from e
    raise no_overload("_-_", a, b)


def cel_mul(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is int:
            return check_int(a * b)
        if ta is float:
            return a * b
        if ta is UInt:
            return _check_uint(a * b)
    raise no_overload("_*_", a, b)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def cel_div(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is int or ta is UInt:
            if b == 0:
                raise CelEvalError("division by zero")
            q = _trunc_div(a, b)
            return check_int(q) if ta is int else _check_uint(q)
        if ta is float:
            if b == 0.0:
                if a == 0.0 or math.isnan(a):
                    return math.nan
                return math.copysign(math.inf, a) * math.copysign(1.0, b)
            return a / b
    raise no_overload("_/_", a, b)


def cel_mod(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is tb and (ta is int or ta is UInt):
        if b == 0:
            raise CelEvalError("modulus by zero")
        r = abs(a) % abs(b)
        r = r if a >= 0 else -r
        return r if ta is int else UInt(r)
    raise no_overload("_%_", a, b)


def cel_neg(a: Any) -> Any:
    ta = type(a)
    if ta is int:
        return check_int(-a)
    if ta is float:
        return -a
    if ta is timedelta:
        return _check_duration(-a)
    raise no_overload("-_", a)


# -- containers --------------------------------------------------------------------------
def cel_in(x: Any, container: Any) -> bool:
    if _is_list(container):
        return any(cel_eq(x, e) for e in container)
    if isinstance(container, Mapping):
        return _map_find(container, x)[0]
    raise no_overload("@in", x, container)


def cel_index(container: Any, key: Any) -> Any:
    if type(container) is Optional:
        return opt_index(container, key)
    if _is_list(container):
        tk = type(key)
        if tk is float and key.is_integer():
            key = int(key)
        elif tk is not int and tk is not UInt:
            raise no_overload("_[_]", container, key)
        if key < 0 or key >= len(container):
            raise CelEvalError(f"index out of bounds: {key}")
        return container[key]
    if isinstance(container, Mapping):
        if type(key) not in (str, int, UInt, bool, float):
            raise no_overload("_[_]", container, key)
        found, value = _map_find(container, key)
        if not found:
            raise CelEvalError(f"no such key: {key!r}")
        return value
    raise no_overload("_[_]", container, key)


def cel_select(operand: Any, name: str) -> Any:
    if type(operand) is Optional:
        return opt_select(operand, name)
    if type(operand) is dict or isinstance(operand, Mapping):
        try:
            return operand[name]
        except KeyError:
            raise CelEvalError(f"no such key: {name!r}") from None
    raise CelEvalError(f"no such key: {name!r} (selecting from {type_of(operand).name})")


def opt_select(operand: Any, name: str) -> Optional:
    """`operand.?name`: the field as an optional value, none when absent (or on none)."""
    if type(operand) is Optional:
        if not operand.has:
            return NONE
        operand = operand.value
    if isinstance(operand, Mapping):
        return Optional(True, operand[name]) if name in operand else NONE
    raise CelEvalError(f"no such key: {name!r} (selecting from {type_of(operand).name})")


def opt_index(container: Any, key: Any) -> Optional:
    """`container[?key]`: the entry as an optional value, none when absent (or on none)."""
    if type(container) is Optional:
        if not container.has:
            return NONE
        container = container.value
    try:
        return Optional(True, cel_index(container, key))
    except CelEvalError:
        if _is_list(container) and type(key) in (int, UInt, float):
            return NONE
        if isinstance(container, Mapping) and type(key) in (str, int, UInt, bool, float):
            return NONE
        raise


# -- JSON --------------------------------------------------------------------------------
def from_json(v: Any) -> Any:
    """A parsed JSON value as a CEL value: integers stay int within 64 bits, else double."""
    t = type(v)
    if t is int:
        return v if INT64_MIN <= v <= INT64_MAX else float(v)
    if t is dict:
        return {k: from_json(x) for k, x in v.items()} if _needs_json_fix(v) else v
    if t is list:
        return [from_json(x) for x in v] if _needs_json_fix(v) else v
    return v


def _needs_json_fix(v: Any) -> bool:
    items = v.values() if type(v) is dict else v
    for x in items:
        t = type(x)
        if t is int:
            if not INT64_MIN <= x <= INT64_MAX:
                return True
        elif (t is dict or t is list) and _needs_json_fix(x):
            return True
    return False


def seconds_since_epoch(ts: datetime) -> int:
    return int((ts - _EPOCH) // timedelta(seconds=1))
