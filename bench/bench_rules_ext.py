"""Evaluations per second of three extension-heavy rules on the closure path.

CEL's standard extensions (strings, math, optionals, two-variable macros, cel.bind) run
only in Alyx's closures (cel-python 0.5.0 has none of them), so this prints Alyx's figure
per rule against the target of 200,000 evaluations per second, one process, one run.
Run: `.venv/bin/python bench/bench_rules_ext.py`.
"""

from __future__ import annotations

import functools
import platform

from alyx_server.rules.load import compile_rule
from bench.bench_rules import AUTH, DOC, REQUEST, SCHEMA, rate

TARGET = 200_000
RULES = {
    "strings": "doc.title.lowerAscii().indexOf('bench') >= 0 && doc.title.split(' ').size() == 3 "
    "&& doc.title.trim() == doc.title",
    "math and optionals": "math.greatest(doc.views, 10) == doc.views && math.abs(doc.views - 50) < 10 "
    "&& request.body.?title.orValue('') != ''",
    "bind and two-variable macros": "cel.bind(owner, doc.author_id, auth != null && owner == auth.id) "
    "&& doc.tags.all(i, t, i < 5 && t.size() < 20)",
}


def measure() -> list[tuple[str, float]]:
    collection = SCHEMA.get("posts")
    assert collection is not None
    rows = []
    for name, text in RULES.items():
        rule = compile_rule(collection, "read", text)
        act = {"auth": AUTH, "doc": DOC, "request": REQUEST}
        assert rule.evaluate(act) is True, name
        rows.append((name, rate(functools.partial(rule.evaluate, act))))
    return rows


def table(rows: list[tuple[str, float]]) -> str:
    lines = ["| rule | Alyx closures (eval/s) | µs/eval | target 200,000/s |", "|---|---|---|---|"]
    for name, fast in rows:
        lines.append(f"| {name} | {fast:,.0f} | {1e6 / fast:.2f} | {'met' if fast >= TARGET else 'missed'} |")
    return "\n".join(lines)


def main() -> None:
    print(f"Python {platform.python_version()}")
    print(table(measure()))


if __name__ == "__main__":
    main()
