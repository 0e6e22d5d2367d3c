"""The evaluation budget: how much work one rule or `where` evaluation may do.

An expression runs on the server's event loop, so its work must be bounded by more than
its size: a comprehension over a list field, nested in another, or `matches` over a long
text grows with the data. The closure compiler (`compile_py`) gives each evaluation of
such an expression a budget of `rules.eval_budget` steps under the activation key
`BUDGET`; comprehensions charge one step per element before they run, `matches` charges
for its RE2 work (`regex.search`), and `+`, `in`, and string scans charge for the size
they build or read. Past the budget the evaluation is an error: the rule denies, the
document is left out.
"""

from __future__ import annotations

from typing import Any

from alyx_server.rules.values import CelEvalError

__all__ = [
    "BUDGET",
    "DEFAULT_EVAL_BUDGET",
    "REGEX_WORK_PER_STEP",
    "SIZE_PER_STEP",
    "EvalBudget",
    "charge_size",
    "new_budget",
    "spend",
]

DEFAULT_EVAL_BUDGET = 100_000
"""Steps one evaluation may take (`rules.eval_budget`): about 50 ms of work on one core."""

BUDGET = "@budget"
"""The activation key holding the evaluation's `EvalBudget` (no CEL name can spell it)."""

# One step is about one comprehension element; these many characters or list items
# copied or scanned by C code, or RE2 (program instructions x text bytes), cost as much.
SIZE_PER_STEP = 256
REGEX_WORK_PER_STEP = 64


EvalBudget = list[int]
"""The steps one evaluation has left and its limit, `[left, limit]` (`new_budget`).

A counter checked where work grows (per comprehension, per scan of a long value), not a
clock read per node; a two-item list because one is made per evaluation (and per document
of a list), where even a small class's `__init__` shows in the rules benchmark.
"""


def new_budget(limit: int) -> EvalBudget:
    """A fresh budget of `limit` steps (hot paths write the literal `[limit, limit]`)."""
    return [limit, limit]


def spend(budget: EvalBudget, steps: int) -> None:
    """Charge `steps`; past the limit the evaluation is an error (the rule denies)."""
    budget[0] -= steps
    if budget[0] < 0:
        raise CelEvalError(
            f"evaluation budget exceeded: the expression needs more than {budget[1]:,} steps "
            "(rules.eval_budget); loop over fewer items or scan shorter values"
        )


def charge_size(budget: EvalBudget, value: Any) -> Any:
    """`value`, after charging `budget` for its size when it is a long string, bytes or list."""
    t = type(value)
    if t is str or t is bytes or t is list:
        n = len(value)
        if n >= SIZE_PER_STEP:
            spend(budget, n // SIZE_PER_STEP)
    return value
