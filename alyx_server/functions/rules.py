"""A manifest's `rule`: CEL over `auth`, `request` and `input`, compiled by the rules engine.

The expression goes through the same parser and closure compiler as collection rules
(`alyx_server.rules`), so it has the same semantics (the CEL specification's, not a
library's). A rule that does not compile, or names a variable other than those three,
stops that function with a `RuleError` naming the manifest, line and column; a rule
that errors when evaluated denies the call and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from alyx_server.errors import Location, RuleError
from alyx_server.functions.manifest import FunctionSpec
from alyx_server.functions.service import RuleCheck
from alyx_server.rules import Auth, RequestInfo
from alyx_server.rules.compile_py import CompileEnv, Fn, Unsupported, compile_node
from alyx_server.rules.compiled import auth_value, request_value
from alyx_server.rules.syntax import CelCompileError, parse
from alyx_server.rules.values import CelEvalError, from_json

__all__ = ["FUNCTION_RULE_VARIABLES", "compile_function_rule"]

log = logging.getLogger("alyx.rules")

FUNCTION_RULE_VARIABLES = frozenset({"auth", "request", "input"})


def _located(base: Location | None, error: CelCompileError) -> Location | None:
    if base is None or base.line is None:
        return base
    if error.line > 1:
        return Location(base.file, base.line + error.line - 1, error.column, base.path)
    return Location(base.file, base.line, (base.column or 1) + error.column - 1, base.path)


def compile_function_rule(spec: FunctionSpec) -> RuleCheck:
    """The rule of `spec` as a check of (auth, request, input); RuleError if it does not compile."""
    text = spec.rule
    if text is None:
        raise ValueError(f"function {spec.name} has no rule")
    env = CompileEnv(variables=FUNCTION_RULE_VARIABLES)
    try:
        node = parse(text)
        fn: Fn = compile_node(node, env)
    except CelCompileError as e:
        message = f"the rule of function {spec.name} does not compile: {e.message} (CEL column {e.column})"
        raise RuleError(message, _located(spec.rule_location, e)) from e
    except Unsupported:
        from alyx_server.rules.cel import FallbackProgram  # cel-python, loaded when needed

        fn = FallbackProgram(text)
    name = spec.name

    def check(auth: Auth | None, request: RequestInfo, data: Mapping[str, Any]) -> bool:
        activation = {"auth": auth_value(auth), "request": request_value(request), "input": from_json(data)}
        try:
            return fn(activation) is True
        except CelEvalError as e:
            log.warning("the rule of function %s denied a call: evaluation error: %s", name, e.message)
            return False

    return check
