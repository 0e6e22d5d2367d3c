"""`alyx generate`: typed TypeScript, Go and Python clients from the schema and functions.

    model.py       build_model: collections and functions as language-neutral specs
    typescript.py  go: golang.py  python.py   type spelling per language (Jinja filters)
    render.py      Renderer: codegen_templates/<lang>/**/*.j2 -> {path: text}
    writer.py      write_files: only changed files are rewritten, stale generated ones removed

Only the schema model and the function manifest loader are imported from the server,
never its web stack, so the command starts fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from alyx_cli.codegen.golang import GO
from alyx_cli.codegen.language import Language
from alyx_cli.codegen.model import CodegenModel, build_model
from alyx_cli.codegen.python import PYTHON
from alyx_cli.codegen.render import GENERATED_MARK, Renderer
from alyx_cli.codegen.typescript import TYPESCRIPT
from alyx_cli.codegen.writer import WriteReport, write_files
from alyx_server.schema.model import Schema

__all__ = [
    "GENERATED_MARK",
    "LANGUAGES",
    "CodegenModel",
    "Renderer",
    "WriteReport",
    "build_model",
    "generate",
    "render_all",
]

LANGUAGES: Mapping[str, Language] = {lang.name: lang for lang in (TYPESCRIPT, GO, PYTHON)}


def render_all(
    model: CodegenModel, languages: Iterable[str], renderer: Renderer | None = None
) -> dict[str, Mapping[str, str]]:
    """Language name -> (relative path -> text), for each of `languages`."""
    renderer = renderer if renderer is not None else Renderer()
    return {name: renderer.render(model, LANGUAGES[name]) for name in languages}


def generate(
    schema: Schema,
    functions: Mapping[str, Any],
    languages: Iterable[str],
    output: Path,
    *,
    renderer: Renderer | None = None,
) -> WriteReport:
    """Render the clients for `languages` into `output/<language>/`; only changes are written."""
    model = build_model(schema, functions)
    report = WriteReport()
    for name, files in render_all(model, languages, renderer).items():
        folder = LANGUAGES[name].folder
        one = write_files(output / folder, files, prefix=f"{folder}/")
        report.written += one.written
        report.unchanged += one.unchanged
        report.removed += one.removed
    return report
