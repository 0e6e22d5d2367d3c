"""Evaluations per second: Alyx's compiled CEL closures against cel-python's interpreter.

Five typical rules, one process, one run (cel-python, which raises on `auth != null` for
a map, runs `has(auth.id)` in its place); prints a table and, with --write, appends a
"## Rules" section to docs/benchmarks.md. Run: `.venv/bin/python bench/bench_rules.py`.
"""

from __future__ import annotations

import argparse
import functools
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy

from alyx_server.rules.cel import celpy_environment, to_celpy
from alyx_server.rules.compile_py import doc_value
from alyx_server.rules.load import compile_rule
from alyx_server.schema.loader import parse_schema

SCHEMA = parse_schema(
    """
version: 1
collections:
  posts:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      title:      { type: string }
      author_id:  { type: uuid }
      published:  { type: bool, default: false }
      views:      { type: int, default: 0 }
      tags:       { type: json, nullable: true }
      created_at: { type: timestamp, default: now }
"""
)
RULES = {
    "owner": "auth != null && doc.author_id == auth.id",
    "published or owner": "doc.published || (auth != null && auth.id == doc.author_id)",
    "role in list": "auth != null && (auth.role in ['admin', 'editor'] || doc.author_id == auth.id)",
    "update guard": "auth != null && auth.id == doc.author_id && "
    "(!has(request.body.author_id) || request.body.author_id == auth.id)",
    "strings and numbers": "doc.title.startsWith('How') && doc.views > 10 && size(doc.title) < 200",
}
AUTH = {
    "id": "u1", "email": "a@example.com", "role": "user", "verified": True,
    "metadata": {}, "app_metadata": {},
}  # fmt: skip
DOC = {
    "id": "d1", "title": "How to bench", "author_id": "u1", "published": False, "views": 42,
    "tags": ["a"], "created_at": "2026-01-31T12:00:00.000Z",
}  # fmt: skip
REQUEST = {"method": "PATCH", "ip": "127.0.0.1", "time": None, "body": {"title": "x"}, "query": {}}


def rate(fn: Callable[[], Any], seconds: float = 0.5) -> float:
    """Calls per second of fn, measured for about `seconds`."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        n += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def measure() -> list[tuple[str, float, float]]:
    collection = SCHEMA.get("posts")
    assert collection is not None
    fields = {f.name: f.type for f in collection.fields}
    env = celpy_environment(celpy.InterpretedRunner)
    celpy_activation = {
        "auth": to_celpy(AUTH),
        "doc": to_celpy(doc_value(DOC, fields)),
        "request": to_celpy({k: v for k, v in REQUEST.items() if v is not None}),
    }
    rows = []
    for name, text in RULES.items():
        rule = compile_rule(collection, "read", text)
        act = {"auth": AUTH, "doc": DOC, "request": REQUEST}
        assert rule.evaluate(act) is True, name
        # cel-python 0.5.0 raises on `map != null`: it gets the equivalent has(auth.id).
        program = env.program(env.compile(text.replace("auth != null", "has(auth.id)")))
        fast = rate(functools.partial(rule.evaluate, act))
        slow = rate(functools.partial(program.evaluate, celpy_activation), seconds=0.3)
        rows.append((name, fast, slow))
    return rows


def table(rows: list[tuple[str, float, float]]) -> str:
    lines = [
        "| rule | Alyx closures (eval/s) | µs/eval | cel-python interpreter (eval/s) | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, fast, slow in rows:
        lines.append(f"| {name} | {fast:,.0f} | {1e6 / fast:.2f} | {slow:,.0f} | {fast / slow:.0f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="append the results to docs/benchmarks.md")
    args = parser.parse_args()
    result = table(measure())
    print(result)
    if args.write:
        docs = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        section = (
            "\n## Rules\n\n"
            f"`bench/bench_rules.py`, one process, Python {platform.python_version()}, cel-python 0.5.0. "
            "Evaluations per second of five typical rules (each gives `true` on the sample "
            "document) with Alyx's compiled closures and with cel-python's interpreter, in "
            "the same run. Target: at least 50x cel-python.\n\n" + result + "\n"
        )
        with docs.open("a") as f:
            f.write(section)


if __name__ == "__main__":
    main()
