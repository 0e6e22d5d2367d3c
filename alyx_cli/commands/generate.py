"""`alyx generate [-l typescript,go,python] [-o DIR]`: typed clients for the project.

Reads schema.yaml and the function manifests, renders the clients into `DIR/<language>/`
and rewrites only the files whose content changed. Languages and output folder default
to `dev.generate.languages` and `dev.generate.output` of alyx.yaml. Nothing of the
server's web stack is imported, so the command starts fast.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from alyx_cli.output import CommandError, console, reports_errors
from alyx_cli.project import find_project, project_option

__all__ = ["command", "parse_languages"]

_KNOWN = ("typescript", "go", "python")


def parse_languages(raw: str) -> tuple[str, ...]:
    """`typescript,go` -> ("typescript", "go"); an unknown name is a one-line error."""
    out: list[str] = []
    for part in raw.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in _KNOWN:
            raise CommandError(f"unknown language {name!r}; choose from: {', '.join(_KNOWN)}")
        if name not in out:
            out.append(name)
    if not out:
        raise CommandError(f"no language given; choose from: {', '.join(_KNOWN)}")
    return tuple(out)


@click.command("generate", short_help="Write typed TypeScript, Go and Python clients.")
@click.option("-l", "--languages", "languages", metavar="LIST", help="Comma-separated: typescript,go,python.")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (one sub-folder per language).",
)
@project_option
@reports_errors
def command(languages: str | None, output: Path | None, project_dir: Path) -> None:
    """Generate typed clients from schema.yaml and the function manifests.

    Only files whose content changed are rewritten.

    \b
    Example:
      alyx generate -l typescript,python -o generated
    """
    from alyx_cli.codegen import generate
    from alyx_server.functions import Defaults, discover_functions

    project = find_project(project_dir)
    settings = project.settings
    langs = (
        parse_languages(languages)
        if languages
        else parse_languages(",".join(settings.dev.generate.languages))
    )
    target = output if output is not None else settings.dev.generate.output
    if not target.is_absolute():
        target = (Path.cwd() / target) if output is not None else (project.root / target)
    schema = project.load_schema()
    found = discover_functions(settings.functions.path, Defaults(), root=project.root)
    err = console(stderr=True)
    for problem in found.problems:
        err.print(Text(f"warning: {problem.message} (left out of the clients)", style="yellow"))
    report = generate(schema, found.functions, langs, target)
    out = console()
    shown = project.show(target)
    out.print(
        f"{', '.join(langs)} client(s) in {shown}: {len(report.written)} file(s) written, "
        f"{len(report.unchanged)} unchanged, {len(report.removed)} removed"
    )
