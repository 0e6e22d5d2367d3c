"""RE2 programs: the one regular-expression engine for patterns that users write.

Schema field `pattern`s and CEL `matches` both run on RE2 (google-re2), whose matching time
is linear in the text: Python's `re` backtracks, and `^(a+)+$` on thirty `a`s and a `!`
takes seconds while it holds the interpreter. RE2 refuses what it cannot do in linear time
(backreferences, lookaround); `compile_re2` reports that as a `RegexError` with RE2's own
reason, for the caller to place in a file, a parameter or a rule.
"""

from __future__ import annotations

from typing import Any

import re2

__all__ = ["MAX_PROGRAM_MEMORY", "RegexError", "compile_re2"]

MAX_PROGRAM_MEMORY = 2 << 20
"""Bytes RE2 may use for one compiled program (a pattern past it is refused)."""


class RegexError(ValueError):
    """A pattern RE2 does not accept; the message is RE2's reason."""


def compile_re2(source: str, *, capture: bool = True) -> Any:
    """`source` compiled by RE2 (`re2._Regexp` wrapper), or RegexError naming RE2's reason.

    `capture=False` when only whether there is a match matters (a smaller, faster program).
    """
    options = re2.Options()
    options.never_capture = not capture
    options.log_errors = False
    options.max_mem = MAX_PROGRAM_MEMORY
    try:
        return re2.compile(source, options)
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise RegexError(reason) from e
