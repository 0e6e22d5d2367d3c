"""`matches` on RE2: linear-time regular expressions, compiled once, size-capped.

The CEL specification names RE2. Python's `re` backtracks: `^(a+)+$` against thirty
`a`s and a `!` tries 2^30 ways, and one such `where=` held the whole server. RE2 answers
in time linear in the text (times the program size, which the evaluation budget charges).
A pattern is compiled once (`compile_regex`, a bounded cache); one longer than
`MAX_PATTERN_LENGTH`, or one RE2 refuses (backreferences, lookaround), is a
`CelEvalError`, which the compiler turns into a located compile error for a literal.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from alyx_server.rules.budget import REGEX_WORK_PER_STEP, EvalBudget, spend
from alyx_server.rules.syntax import Call, CelCompileError, Lit
from alyx_server.rules.values import CelEvalError, no_overload
from alyx_server.tools.regexes import RegexError, compile_re2

__all__ = ["MAX_PATTERN_LENGTH", "Regex", "compile_regex", "literal_pattern", "matches", "search"]

MAX_PATTERN_LENGTH = 1000
"""Longest `matches` pattern, in characters (RE2 itself refuses repetitions above 1000)."""

_UNANCHORED = re2._Anchor.UNANCHORED


class Regex:
    """One RE2 program for `matches`: `search(data)` on UTF-8 bytes, `cost` its size."""

    __slots__ = ("_program", "cost", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise CelEvalError(
                f"regular expression too long ({len(pattern):,} characters; at most {MAX_PATTERN_LENGTH:,})"
            )
        try:
            # The wrapper's own search decodes match offsets back to characters, several
            # microseconds a call; the program's Match on bytes is what a bool needs.
            # matches() only asks whether there is a match: no capture groups.
            self._program = compile_re2(pattern, capture=False)._regexp
        except RegexError as e:
            raise CelEvalError(
                f"invalid regular expression {pattern!r}: {e} "
                "(matches() uses RE2 syntax: no backreferences or lookaround)"
            ) from e
        self.cost = max(1, int(self._program.ProgramSize()))

    def search(self, data: bytes) -> bool:
        return bool(self._program.Match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)


@lru_cache(maxsize=512)
def compile_regex(pattern: str) -> Regex:
    """The RE2 program of `pattern`, compiled once; CelEvalError when RE2 refuses it."""
    return Regex(pattern)


def search(s: Any, regex: Regex, budget: EvalBudget | None = None) -> bool:
    """`s.matches(regex)`: an unanchored RE2 search, charged to `budget` for its work."""
    if type(s) is not str:
        raise no_overload("matches", s)
    data = s.encode("utf-8", "surrogatepass")
    if budget is not None:
        work = len(data) * regex.cost
        if work >= REGEX_WORK_PER_STEP:
            spend(budget, work // REGEX_WORK_PER_STEP)
    return regex.search(data)


def matches(s: Any, pattern: Any, budget: EvalBudget | None = None) -> bool:
    """`s.matches(pattern)` with a pattern known only at evaluation time."""
    if type(s) is not str or type(pattern) is not str:
        raise no_overload("matches", s, pattern)
    return search(s, compile_regex(pattern), budget)


def literal_pattern(node: Call) -> Regex | None:
    """The compiled pattern of `s.matches('lit')` or `matches(s, 'lit')`, checked now.

    A literal pattern RE2 refuses is a compile error at the pattern's column, so a rule
    in schema.yaml stops the load and a `where=` answers 400, before any document is read.
    """
    if node.function != "matches" or not node.args:
        return None
    literal = node.args[-1]
    if not isinstance(literal, Lit) or not isinstance(literal.value, str):
        return None
    try:
        return compile_regex(literal.value)
    except CelEvalError as e:
        raise CelCompileError(e.message, literal.line, literal.column) from e
