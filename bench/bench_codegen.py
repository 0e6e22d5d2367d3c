"""Client generation time: a 50-collection schema, TypeScript + Go + Python, in-process.

    python bench/bench_codegen.py [--rounds 20] [--collections 50]

Builds a schema of N collections (12 fields each: every type, an enum, nullable fields,
a reference to users and one to the previous collection) plus 10 functions, then times
`render_all` (model building and rendering, no disk) and `generate` (the same plus writing
into a fresh folder, then again into the same folder, where nothing is rewritten). The
first round includes compiling the templates (a cold `alyx generate`); the others reuse
the compiled templates, as `alyx dev` does on every schema change. Target: < 300 ms.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alyx_cli.codegen import LANGUAGES, Renderer, build_model, generate, render_all
from alyx_server.functions import FieldSet
from alyx_server.schema.model import Schema

TARGET_MS = 300.0


def make_schema(n: int) -> Schema:
    collections: dict[str, Any] = {}
    for i in range(n):
        fields: dict[str, Any] = {
            "id": {"type": "uuid", "primary": True, "default": "auto"},
            "owner_id": {"type": "uuid", "references": "_alyx_users.id", "onDelete": "cascade"},
            "title": {"type": "string", "maxLength": 200},
            "body": {"type": "text", "default": ""},
            "status": {"type": "string", "enum": ["draft", "review", "published"], "default": "draft"},
            "count": {"type": "int", "default": 0},
            "score": {"type": "float", "nullable": True},
            "done": {"type": "bool", "default": False},
            "data": {"type": "json", "nullable": True},
            "file": {"type": "blob", "nullable": True},
            "created_at": {"type": "timestamp", "default": "now"},
        }
        if i:
            fields["parent_id"] = {"type": "uuid", "references": f"things_{i - 1:02d}.id", "nullable": True}
        collections[f"things_{i:02d}"] = {"fields": fields}
    return Schema.from_dict({"version": 1, "collections": collections})


def make_functions(n: int) -> dict[str, Any]:
    schema = Schema.from_dict(
        {
            "collections": {
                "f": {
                    "fields": {
                        "id": {"type": "uuid", "primary": True},
                        "name": {"type": "string"},
                        "limit": {"type": "int", "default": 10},
                        "note": {"type": "string", "nullable": True},
                    }
                }
            }
        }
    )
    fields = tuple(f for f in schema.collections[0].fields if not f.primary)
    return {
        f"task_{i}": SimpleNamespace(input=FieldSet(fields, "input"), output=FieldSet(fields[:2], "output"))
        for i in range(n)
    }


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--collections", type=int, default=50)
    args = parser.parse_args()
    schema = make_schema(args.collections)
    functions = make_functions(10)
    languages = tuple(LANGUAGES)
    renderer = Renderer()
    cold = timed(lambda: render_all(build_model(schema, functions), languages, renderer))
    warm = [
        timed(lambda: render_all(build_model(schema, functions), languages, renderer))
        for _ in range(args.rounds)
    ]
    files = render_all(build_model(schema, functions), languages, renderer)
    size = sum(len(text) for lang in files.values() for text in lang.values())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        first_write = timed(lambda: generate(schema, functions, languages, out / "a", renderer=renderer))
        unchanged = [
            timed(lambda: generate(schema, functions, languages, out / "a", renderer=renderer))
            for _ in range(args.rounds)
        ]
    count = sum(len(f) for f in files.values())
    print(
        f"python {platform.python_version()} on {platform.machine()}, {args.collections} collections, "
        f"10 functions, {len(languages)} languages, {count} files, {size / 1024:.0f} KiB"
    )
    print("| step | ms |")
    print("|---|---:|")
    print(f"| render, cold (templates compiled) | {cold:.1f} |")
    print(f"| render, warm (median of {args.rounds}) | {statistics.median(warm):.1f} |")
    print(f"| generate into an empty folder (warm) | {first_write:.1f} |")
    print(f"| generate again, nothing rewritten (median) | {statistics.median(unchanged):.1f} |")
    verdict = "within" if cold < TARGET_MS else "OVER"
    print(f"\ncold render {cold:.1f} ms: {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
