"""How large a CEL expression may be, checked before the parser does any work.

The parser (Lark, pure Python) costs tens of microseconds per token and runs on the
event loop for a `where=`, and the compilers walk the syntax tree recursively; so an
expression is measured first, with one linear scan:

    every expression      brackets ( [ { nested at most 32 deep (the CEL specification's
                          minimum), and a syntax tree at most 100 levels deep (checked
                          while the tree is built; `&&` and `||` chains count as a
                          balanced tree, so a long chain of them is not deep)
    a caller's `where`    also at most 1024 characters and 200 tokens

Schema rules, written by the project's developers and compiled once at load, have no
length or token limit. The figures are documented in docs/rules.md ("Limits").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_DEPTH",
    "MAX_NESTING",
    "RULE_LIMITS",
    "WHERE_LIMITS",
    "WHERE_MAX_LENGTH",
    "WHERE_MAX_TOKENS",
    "SizeLimits",
    "SizeProblem",
    "size_problem",
]

MAX_NESTING = 32
MAX_DEPTH = 100
WHERE_MAX_LENGTH = 1024
WHERE_MAX_TOKENS = 200


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """The limits one kind of expression is held to (None: no limit)."""

    max_length: int | None = None
    max_tokens: int | None = None
    max_nesting: int = MAX_NESTING
    max_depth: int = MAX_DEPTH


RULE_LIMITS = SizeLimits()
WHERE_LIMITS = SizeLimits(WHERE_MAX_LENGTH, WHERE_MAX_TOKENS)


@dataclass(frozen=True, slots=True)
class SizeProblem:
    """The first limit an expression breaks: what, and where (0-based offset in the text)."""

    message: str
    offset: int


# One token per match, as CEL's lexer would split it (close enough to count: an
# unterminated string is counted as a quote character and the rest as tokens). Each
# alternative is linear: no nested repetition.
_TOKEN = re.compile(
    r"""
      (?P<skip>\s+|//[^\n]*)
    | [rRbB]{0,2}(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\")
    | [rRbB]{0,2}(?:'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
    | [A-Za-z_][A-Za-z_0-9]*|[0-9][A-Za-z_0-9.]*
    | &&|\|\||[=!<>]=
    | (?P<open>[(\[{])|(?P<close>[)\]}])
    | .
    """,
    re.VERBOSE | re.DOTALL,
)


def size_problem(text: str, limits: SizeLimits) -> SizeProblem | None:
    """The first limit `text` breaks (length, tokens, bracket nesting), or None."""
    if limits.max_length is not None and len(text) > limits.max_length:
        return SizeProblem(f"the expression has {len(text)} characters; the limit is {limits.max_length}", 0)
    tokens = depth = 0
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "skip":
            continue
        tokens += 1
        if limits.max_tokens is not None and tokens > limits.max_tokens:
            return SizeProblem(
                f"the expression has more than {limits.max_tokens} tokens (names, literals, "
                f"operators); the limit is {limits.max_tokens}",
                m.start(),
            )
        if m.lastgroup == "open":
            depth += 1
            if depth > limits.max_nesting:
                return SizeProblem(
                    f"brackets are nested more than {limits.max_nesting} deep; "
                    f"the limit is {limits.max_nesting} levels",
                    m.start(),
                )
        elif m.lastgroup == "close":
            depth = max(depth - 1, 0)
    return None
