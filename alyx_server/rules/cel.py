"""The wrapped cel-python evaluator: the fallback outside the compiled subset.

Alyx's values (values.py) are converted to cel-python's `celtypes` on the way in and
back on the way out; cel-python's error values come back as `CelEvalError`. Its known
deviations from the specification are shimmed where the shim is cheap: a comparison
that cel-python refuses between a map or list and `null` (`{"a": 1} != null`) is
answered with heterogeneous equality before cel-python sees it, because the closure
compiler handles every comparison and only the unsupported node reaches cel-python.

Its `matches` is replaced by Alyx's (`regex.matches`: RE2 with the pattern cache and
its length cap). The fallback has no evaluation budget, which is why a `where=` must stay
inside the compiled subset (`load.compile_where`); only rules from schema.yaml reach it.

cel-python 0.5.0 builds one process-wide parser for the tree class of the first
`Environment`; `celpy_environment` resets it when a different runner class asks, so
interpreted and compiled environments can live in one process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParser
from celpy.evaluation import CELEvalError

from alyx_server.rules.budget import BUDGET
from alyx_server.rules.regex import matches
from alyx_server.rules.syntax import lark_parser
from alyx_server.rules.values import CelEvalError, CelType, UInt

__all__ = ["FallbackProgram", "celpy_environment", "from_celpy", "to_celpy"]

_ENV_LOCK = threading.Lock()


def celpy_environment(runner_class: type[Any] | None = None) -> celpy.Environment:
    """A cel-python Environment for `runner_class`, resetting the shared parser if needed."""
    runner = runner_class or celpy.InterpretedRunner
    wanted = getattr(runner, "tree_node_class", lark.Tree)
    with _ENV_LOCK:
        current = CELParser.CEL_PARSER
        if current is not None and current.options.tree_class is not wanted:
            CELParser.CEL_PARSER = None
        return celpy.Environment(runner_class=runner)


def to_celpy(v: Any) -> Any:
    """An Alyx CEL value as a cel-python value."""
    t = type(v)
    if v is None:
        return None
    if t is bool:
        return celtypes.BoolType(v)
    if t is UInt:
        return celtypes.UintType(int(v))
    if t is int:
        return celtypes.IntType(v)
    if t is float:
        return celtypes.DoubleType(v)
    if t is str:
        return celtypes.StringType(v)
    if t is bytes:
        return celtypes.BytesType(v)
    if isinstance(v, datetime):
        return celtypes.TimestampType(v.astimezone(UTC))
    if isinstance(v, timedelta):
        return celtypes.DurationType(seconds=v.days * 86400 + v.seconds, nanos=v.microseconds * 1000)
    if isinstance(v, Mapping):
        return celtypes.MapType({to_celpy(k): to_celpy(x) for k, x in v.items()})
    if isinstance(v, list | tuple):
        return celtypes.ListType([to_celpy(x) for x in v])
    if isinstance(v, CelType):
        return v
    raise TypeError(f"no CEL value for {t.__name__}")


_TYPE_NAMES = {
    celtypes.BoolType: "bool", celtypes.IntType: "int", celtypes.UintType: "uint",
    celtypes.DoubleType: "double", celtypes.StringType: "string", celtypes.BytesType: "bytes",
    celtypes.ListType: "list", celtypes.MapType: "map", celtypes.NullType: "null_type",
    celtypes.TimestampType: "google.protobuf.Timestamp",
    celtypes.DurationType: "google.protobuf.Duration",
}  # fmt: skip


def from_celpy(v: Any) -> Any:
    """A cel-python value as an Alyx CEL value; an error value raises CelEvalError."""
    if isinstance(v, CELEvalError):
        raise CelEvalError(str(v.args[0]) if v.args else "evaluation error")
    if v is None or isinstance(v, celtypes.NullType):
        return None
    if isinstance(v, celtypes.BoolType):
        return bool(v)
    if isinstance(v, celtypes.UintType):
        return UInt(int(v))
    if isinstance(v, celtypes.IntType):
        return int(v)
    if isinstance(v, celtypes.DoubleType):
        return float(v)
    if isinstance(v, celtypes.StringType):
        return str(v)
    if isinstance(v, celtypes.BytesType):
        return bytes(v)
    if isinstance(v, celtypes.TimestampType):
        return datetime.fromtimestamp(v.timestamp(), tz=UTC).replace(microsecond=v.microsecond)
    if isinstance(v, celtypes.DurationType):
        return timedelta(days=v.days, seconds=v.seconds, microseconds=v.microseconds)
    if isinstance(v, celtypes.MapType):
        return {from_celpy(k): from_celpy(x) for k, x in v.items()}
    if isinstance(v, celtypes.ListType):
        return [from_celpy(x) for x in v]
    if isinstance(v, type):
        return CelType(_TYPE_NAMES.get(v, getattr(v, "__name__", str(v))))
    if isinstance(v, CelType):
        return v
    return v


def _celpy_matches(text: Any, pattern: Any) -> Any:
    """cel-python's `matches` replaced by Alyx's RE2 one (an error value when refused)."""
    if not isinstance(text, str) or not isinstance(pattern, str):
        return CELEvalError("no such overload: matches", TypeError, (text, pattern))
    try:
        return celtypes.BoolType(matches(str(text), str(pattern)))
    except CelEvalError as e:
        return CELEvalError(e.message, ValueError, (pattern,))


class FallbackProgram:
    """One expression run by cel-python's interpreter, with Alyx values in and out."""

    def __init__(self, text: str) -> None:
        self.text = text
        tree = lark_parser().parse(text)
        self._runner = celpy_environment().program(tree, functions={"matches": _celpy_matches})

    def __call__(self, activation: Mapping[str, Any]) -> Any:
        context = {name: to_celpy(value) for name, value in activation.items() if name != BUDGET}
        try:
            result = self._runner.evaluate(context)
        except CELEvalError as e:
            raise CelEvalError(str(e.args[0]) if e.args else "evaluation error") from e
        except (TypeError, ValueError, ArithmeticError, KeyError, AttributeError, IndexError) as e:
            raise CelEvalError(f"{type(e).__name__}: {e}") from e
        return from_celpy(result)
