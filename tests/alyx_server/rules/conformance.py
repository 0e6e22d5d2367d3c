"""Running the CEL specification's conformance cases against Alyx's evaluators.

`run_case` answers one case with the closure evaluator (or, outside the compiled subset,
the wrapped cel-python) and, where the expression can become SQL, with SQLite too.
`python -m tests.alyx_server.rules.conformance` prints the unsupported-case table that
docs/rules.md carries.
"""

from __future__ import annotations

import math
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alyx_server.rules.cel import FallbackProgram
from alyx_server.rules.compile_py import CompileEnv, Unsupported, compile_node
from alyx_server.rules.compile_sql import NotSQL, sql_for_constant_activation
from alyx_server.rules.syntax import CelCompileError, parse
from alyx_server.rules.values import BoolKey, CelEvalError, CelType, Optional, UInt
from tests.alyx_server.rules.textproto import Case, load_cases

__all__ = ["Outcome", "conformance_folder", "expected_of", "run_case", "same_value", "unsupported_table"]

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFORMANCE_ENV = CompileEnv(strict_functions=False)
ERROR = object()


def conformance_folder() -> Path:
    """The core-language cases, carried in `cel_conformance/` beside this module."""
    return Path(__file__).resolve().parent / "cel_conformance"


def extensions_folder() -> Path:
    """The standard extensions' cases (strings, math, optionals, bindings, macros2)."""
    return conformance_folder() / "extensions"


def _value(v: dict[str, Any]) -> Any:
    ((kind, raw),) = v.items()
    if kind == "int64_value":
        return int(raw)
    if kind == "uint64_value":
        return UInt(int(raw))
    if kind == "double_value":
        return float(raw) if not isinstance(raw, str) else float(raw.replace("inf", "inf"))
    if kind == "string_value":
        return raw.decode("utf-8")
    if kind == "bytes_value":
        return bytes(raw)
    if kind == "bool_value":
        return bool(raw)
    if kind == "null_value":
        return None
    if kind == "list_value":
        return [_value(x) for x in raw.get("values", [])]
    if kind == "map_value":
        return {_value(e["key"]): _value(e["value"]) for e in raw.get("entries", [])}
    if kind == "type_value":
        return CelType(raw.decode())
    raise LookupError(kind)


def expected_of(case: Case) -> Any:
    """The expected value, ERROR for an expected error; LookupError for protobuf values."""
    if "eval_error" in case.raw:
        return ERROR
    if "value" not in case.raw:
        return True
    return _value(case.raw["value"])


def bindings_of(case: Case) -> dict[str, Any]:
    out = {}
    for b in case.raw.get("bindings", []):
        out[b["key"].decode()] = _value(b["value"]["value"])
    return out


def same_value(a: Any, b: Any) -> bool:
    """Exact CEL equality of results: same kinds (int, uint, double differ), NaN is NaN."""
    if a is ERROR or b is ERROR:
        return a is b
    if type(a) is Optional:
        return type(b) is Optional and a.has == b.has and (not a.has or same_value(a.value, b.value))
    if isinstance(a, dict) and isinstance(b, dict):
        a, b = _unwrap_keys(a), _unwrap_keys(b)
        keys_a = {(type(k), k) for k in a}
        keys_b = {(type(k), k) for k in b}
        return keys_a == keys_b and all(same_value(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            pass
        else:
            return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def _unwrap_keys(m: dict[Any, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for k, v in m.items():
        out[k.value if type(k) is BoolKey else k] = v
    return out


@dataclass
class Outcome:
    """How a case went: `path` is closure, fallback or unsupported; `sql` is None when not SQL."""

    path: str
    ok: bool
    got: Any = None
    sql: bool | None = None
    reason: str = ""


def _evaluate(fn: Any, activation: dict[str, Any]) -> Any:
    try:
        return fn(activation)
    except CelEvalError:
        return ERROR


def run_case(case: Case, conn: sqlite3.Connection) -> Outcome:
    try:
        expected = expected_of(case)
        activation = bindings_of(case)
    except LookupError as e:
        return Outcome("unsupported", False, reason=f"protobuf message value ({e})")
    try:
        node = parse(case.expr)
    except CelCompileError as e:
        return Outcome("closure", expected is ERROR, ERROR, reason=e.message)
    try:
        fn = compile_node(node, CONFORMANCE_ENV)
    except CelCompileError as e:
        if e.message.startswith("protobuf message type"):
            # Refused at compile time, so never answered: recorded as unsupported.
            return Outcome("unsupported", False, ERROR, reason=e.message)
        return Outcome("closure", expected is ERROR, ERROR, reason=e.message)
    except Unsupported as e:
        return _fallback(case, expected, activation, str(e))
    got = _evaluate(fn, activation)
    outcome = Outcome("closure", same_value(got, expected), got)
    try:
        sql_got = sql_for_constant_activation(node, activation, conn)
    except NotSQL:
        return outcome
    outcome.sql = same_value(ERROR if sql_got is None else sql_got, expected)
    return outcome


def _fallback(case: Case, expected: Any, activation: dict[str, Any], why: str) -> Outcome:
    try:
        program = FallbackProgram(case.expr)
        got = _evaluate(program, activation)
    except Exception as e:  # cel-python failing in its own way is part of what we record
        return Outcome("unsupported", False, reason=f"{why}; cel-python: {type(e).__name__}")
    if same_value(got, expected):
        return Outcome("fallback", True, got, reason=why)
    return Outcome("unsupported", False, got, reason=f"{why}; cel-python answers {got!r}")


def _reason(out: Outcome, known: dict[str, str], case: Case) -> str:
    if case.id in known:
        return known[case.id]
    text = out.reason
    if "protobuf" in text or "message" in text:
        return "protobuf messages and wrapper types (Alyx documents are not protobufs)"
    if text.startswith("syntax error"):
        return "backquoted field names are not in cel-python 0.5.0's grammar"
    return text.replace("|", "\\|")


def unsupported_table(outcomes: list[tuple[Case, Outcome]], known: dict[str, str]) -> str:
    """The markdown table of failing cases, one line per case, with the reason."""
    lines = ["| case | expression | reason |", "|---|---|---|"]
    for case, out in outcomes:
        if out.ok:
            continue
        expr = case.expr if len(case.expr) <= 60 else case.expr[:57] + "..."
        expr = expr.replace("|", "\\|").replace("`", "'")
        lines.append(f"| {case.id} | `{expr}` | {_reason(out, known, case)} |")
    return "\n".join(lines)


def main() -> None:
    from tests.alyx_server.rules.test_conformance import KNOWN_DEVIATIONS

    conn = sqlite3.connect(":memory:")
    outcomes = [(case, run_case(case, conn)) for case in load_cases(conformance_folder())]
    print(unsupported_table(outcomes, KNOWN_DEVIATIONS))


if __name__ == "__main__":
    sys.exit(main())
