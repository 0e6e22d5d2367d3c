"""Field `pattern`s: RE2 syntax, matched anywhere in the value as in JSON Schema.

A pattern is compiled with RE2, which matches in time linear in the value, so no pattern
written in `schema.yaml` can make a write spin (Python's `re` backtracks: `^(a+)+$` takes
seconds on 30 characters). The semantics are JSON Schema's, so the OpenAPI document can
publish the pattern as is: the pattern may match anywhere in the value unless anchored,
and `$` means the true end of the value (Python's `$` also matches before a final
newline, which let `"nl\\n"` pass `^[a-z]+$`). RE2 refuses backreferences and lookaround;
the loader reports such a pattern at its line in `schema.yaml`.
"""

from __future__ import annotations

from typing import Any

from alyx_server.tools.regexes import RegexError, compile_re2

__all__ = ["MAX_PATTERN_LENGTH", "FieldPattern", "PatternError", "compile_pattern"]

MAX_PATTERN_LENGTH = 1000
"""Longest pattern accepted, in characters: a longer one is a mistake, not a validation."""


class PatternError(ValueError):
    """A pattern RE2 does not accept, or one that is too long; the message says why."""


class FieldPattern:
    """One compiled pattern: `matches(text)` is True when it matches somewhere in `text`."""

    __slots__ = ("_regex", "source")

    def __init__(self, source: str, regex: Any) -> None:
        self.source = source
        self._regex = regex

    def matches(self, text: str) -> bool:
        return self._regex.search(text) is not None


def compile_pattern(source: str) -> FieldPattern:
    """`source` compiled with RE2, or PatternError naming what RE2 refused."""
    if len(source) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"the pattern is {len(source)} characters long; at most {MAX_PATTERN_LENGTH} are allowed"
        )
    try:
        regex = compile_re2(source)
    except RegexError as e:
        raise PatternError(str(e)) from e
    return FieldPattern(source, regex)
