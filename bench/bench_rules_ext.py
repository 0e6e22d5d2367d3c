"""Evaluations per second of three extension-heavy rules on the closure path.

CEL's standard extensions (strings, math, optionals, two-variable macros, cel.bind) run
only in Alyx's closures (cel-python 0.5.0 has none of them), so this prints Alyx's figure
per rule against the target of 200,000 evaluations per second, one process. Each rule is
measured `--runs` times (best and median); the plain rules of bench_rules.py are measured
in the same run as a reference for how busy the machine is.
Run: `.venv/bin/python bench/bench_rules_ext.py [--runs 5]`.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
from pathlib import Path

from alyx_server.rules.load import compile_rule

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rules import AUTH, DOC, REQUEST, SCHEMA, rate
from bench_rules import RULES as REFERENCE_RULES

TARGET = 200_000
RULES = {
    "strings": "doc.title.lowerAscii().indexOf('bench') >= 0 && doc.title.split(' ').size() == 3 "
    "&& doc.title.trim() == doc.title",
    "math and optionals": "math.greatest(doc.views, 10) == doc.views && math.abs(doc.views - 50) < 10 "
    "&& request.body.?title.orValue('') != ''",
    "bind and two-variable macros": "cel.bind(owner, doc.author_id, auth != null && owner == auth.id) "
    "&& doc.tags.all(i, t, i < 5 && t.size() < 20)",
}


def measure(runs: int = 5) -> list[tuple[str, float, float]]:
    """(rule, best, median) evaluations per second over `runs` measurements of each rule."""
    rows = []
    for name, text in RULES.items():
        fn = _evaluation(name, text)
        rates = [rate(fn) for _ in range(runs)]
        rows.append((name, max(rates), statistics.median(rates)))
    return rows


def reference() -> tuple[float, float]:
    """The slowest and fastest of bench_rules.py's plain rules on the closures, measured now."""
    rates = [rate(_evaluation(name, text)) for name, text in REFERENCE_RULES.items()]
    return min(rates), max(rates)


def _evaluation(name: str, text: str) -> functools.partial[object]:
    collection = SCHEMA.get("posts")
    assert collection is not None
    rule = compile_rule(collection, "read", text)
    act = {"auth": AUTH, "doc": DOC, "request": REQUEST}
    assert rule.evaluate(act) is True, name
    return functools.partial(rule.evaluate, act)


def table(rows: list[tuple[str, float, float]]) -> str:
    lines = [
        "| rule | best (eval/s) | median (eval/s) | µs/eval (best) | target 200,000/s |",
        "|---|---|---|---|---|",
    ]
    for name, best, median in rows:
        verdict = "met" if median >= TARGET else "missed"
        lines.append(f"| {name} | {best:,.0f} | {median:,.0f} | {1e6 / best:.2f} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measurements of each rule (best and median)")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}")
    low, high = reference()
    print(table(measure(args.runs)))
    low2, high2 = reference()
    print(
        f"reference, bench_rules.py's plain rules in the same run: {min(low, low2):,.0f}"
        f"-{max(high, high2):,.0f} eval/s"
    )


if __name__ == "__main__":
    main()
