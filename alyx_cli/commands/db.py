"""`alyx db seed|dump|backup|restore|reset`: the data in the project's database.

Thin commands over `alyx_server.db.maintenance`, which holds the transactions (and
describes the seed and dump format): each command finds the project, calls one function
there and prints what it did. Its errors reach the user as one line (`reports_errors`).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml
from rich.text import Text

from alyx_cli.output import CommandError, console, reports_errors
from alyx_cli.project import database_errors, find_project, project_option

if TYPE_CHECKING:
    from alyx_server.db.maintenance import Advance, SeedData

# The database layer (and with it the migration runner) is imported inside each command,
# so that `alyx --help` and unrelated commands start without loading it.

__all__ = ["PROGRESS_THRESHOLD", "command"]

PROGRESS_THRESHOLD = 500
"""Seeds with more documents than this show a progress bar on a terminal."""


@click.group("db", short_help="Seed, dump, back up, restore and reset the database.")
def command() -> None:
    """Work with the data in the project's database (database.path in alyx.yaml).

    \b
    Example:
      alyx db seed seed.json
      alyx db backup backups/today.db
    """


def _summary(verb: str, data: Mapping[str, list[Any]], count: int, *, every: bool = False) -> str:
    """`seeded 2 collections, 4 docs`: the collections that got docs, or with `every` all
    of them (a dump lists each collection, empty ones too)."""
    collections = len(data) if every else sum(1 for docs in data.values() if docs)
    return (
        f"{verb} {collections} collection{'' if collections == 1 else 's'}, "
        f"{count} doc{'' if count == 1 else 's'}"
    )


@contextmanager
def _progress(total: int) -> Iterator[Advance]:
    """A progress bar on stderr for big seeds on a terminal; a no-op otherwise."""
    err = console(stderr=True)
    if total <= PROGRESS_THRESHOLD or not err.is_terminal:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("seeding", total=total)
        yield lambda: progress.advance(task)


@command.command("seed", short_help="Insert documents from a JSON or YAML file, all or nothing.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@project_option
@reports_errors
def seed(file: Path, project_dir: Path) -> None:
    """Insert the documents of FILE (JSON or YAML) into the database, all or nothing.

    FILE maps collection names to lists of documents; fields left out get their
    defaults. The database must be up to date with schema.yaml (`alyx migrate apply`).

    \b
    Example:
      alyx db seed seed.json      # {"posts": [{"title": "Hello", "author_id": "..."}]}
    """
    from alyx_server.db.maintenance import read_seed_file, seed_database

    project = find_project(project_dir)
    project.require_database()
    data = read_seed_file(file)
    schema = project.load_schema()
    total = sum(len(docs) for docs in data.values())
    with project.connect() as conn, _progress(total) as advance:
        count = seed_database(
            conn,
            schema,
            project.migrations_dir,
            data,
            file=file.name,
            name=project.database_name,
            advance=advance,
        )
    console().print(_summary("seeded", data, count))


def _dump_text(data: SeedData, fmt: str) -> str:
    if fmt == "yaml":
        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


@command.command("dump", short_help="Write every collection's documents to a file.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["json", "yaml"]),
    help="Output format (default: from FILE's extension, .yaml/.yml or json).",
)
@project_option
@reports_errors
def dump(file: Path, fmt: str | None, project_dir: Path) -> None:
    """Write every collection's documents to FILE ('-' for stdout), ready to seed back.

    Documents are in the API's form, ordered by primary key, internal fields included.
    Alyx's own tables (users, sessions, tokens) are not dumped: use `alyx db backup`.

    \b
    Example:
      alyx db dump seed.yaml
      alyx db dump - -f json | jq '.posts | length'
    """
    from alyx_server.db.maintenance import dump_documents, stored_schema

    project = find_project(project_dir)
    project.require_database()
    fmt = fmt or ("yaml" if file.suffix.lower() in (".yaml", ".yml") else "json")
    with project.connect() as conn:
        data = dump_documents(conn, stored_schema(conn))
    text = _dump_text(data, fmt)
    count = sum(len(docs) for docs in data.values())
    if str(file) == "-":
        click.echo(text, nl=False)
        console(stderr=True).print(_summary("dumped", data, count, every=True))
        return
    file.write_text(text, encoding="utf-8")
    console().print(_summary("dumped", data, count, every=True) + f" to {file}")


@command.command("backup", short_help="Copy the database online, even while the server runs.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@project_option
@reports_errors
def backup(file: Path, force: bool, project_dir: Path) -> None:
    """Copy the database to FILE with SQLite's online backup, even while the server runs.

    The backup is one file (no -wal/-shm beside it) that `alyx db restore` accepts.

    \b
    Example:
      alyx db backup backups/$(date +%F).db
    """
    from alyx_server.db.maintenance import backup_database, backup_files, files_folder

    project = find_project(project_dir)
    project.require_database()
    if file.exists() and file.resolve() == project.database_path.resolve():
        raise CommandError(f"{file} is the database itself; choose another file")
    if file.exists() and not force:
        raise CommandError(f"{file} already exists; use --force to overwrite it")
    file.parent.mkdir(parents=True, exist_ok=True)
    storage = project.settings.storage
    folder = files_folder(file)
    local_files = storage.backend == "local"
    if local_files:
        if folder.exists():
            shutil.rmtree(folder)
        backup_files(storage.path, folder)
    with database_errors(project.database_name):
        backup_database(project.database_path, file)
    copied = backup_files(storage.path, folder) if local_files else 0
    size = file.stat().st_size
    out = console()
    out.print(f"backed up {project.database_name} to {file} ({size / 1024:.0f} KiB)")
    if local_files:
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        out.print(
            f"copied {count} stored file(s) to {folder}" + (f" ({copied} new meanwhile)" if copied else "")
        )
    else:
        out.print(f"stored files stay in the S3 bucket {storage.s3.bucket} (docs/files.md: backups)")


def _confirm(question: str, yes: bool) -> None:
    """Ask before destroying data; without a terminal to ask on, `--yes` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(f"{question} Pass --yes to confirm (there is no terminal to ask on)")
    click.confirm(question, abort=True, err=True)


@command.command("restore", short_help="Replace the database with a backup.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@project_option
@reports_errors
def restore(file: Path, yes: bool, project_dir: Path) -> None:
    """Replace the database with the backup FILE (made by `alyx db backup`).

    FILE must be an intact Alyx database. Stop the server first: a database in use is
    refused. Asks for confirmation unless --yes.

    \b
    Example:
      alyx db restore backups/2026-01-31.db --yes
    """
    from alyx_server.db.maintenance import check_alyx_database, files_folder, restore_database, restore_files

    project = find_project(project_dir)
    check_alyx_database(file)
    name = project.database_name
    folder = files_folder(file)
    storage = project.settings.storage
    with_files = folder.is_dir() and storage.backend == "local"
    what = f"{name} and {project.show(storage.path)}" if with_files else name
    _confirm(f"Replace {what} with {file}? Its current data will be lost.", yes)
    restore_database(file, project.database_path, name=name)
    console().print(f"restored {name} from {file}")
    if with_files:
        count = restore_files(folder, storage.path)
        console().print(f"restored {count} stored file(s) from {folder}")
    console().print("run `alyx migrate status` to compare it with schema.yaml")


@command.command("reset", short_help="Delete all data and rebuild the database.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@project_option
@reports_errors
def reset(yes: bool, project_dir: Path) -> None:
    """Delete all data, users included, and rebuild the database from schema.yaml.

    The database file is removed (with its -wal and -shm files) and every migration is
    applied again. Asks for confirmation unless --yes; without a terminal, --yes is
    required.

    \b
    Example:
      alyx db reset --yes && alyx db seed seed.json
    """
    from alyx_server.db.maintenance import rebuild_database

    project = find_project(project_dir)
    schema = project.load_schema()
    name = project.database_name
    _confirm(f"Delete every document and user in {name} and start again?", yes)
    synchronous = project.settings.database.synchronous
    result = rebuild_database(
        project.database_path, schema, project.migrations_dir, name=name, synchronous=synchronous
    )
    out = console()
    out.print(Text.assemble("reset ", (name, "bold")))
    for label in (*result.files, *result.auto):
        out.print(f"  {label}")
