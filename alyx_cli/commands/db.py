"""`alyx db seed|dump|backup|restore|reset`: the data in the project's database.

Seed files and dumps share one format, a mapping of collection names to lists of
documents in the REST API's form (bools, parsed JSON, ISO timestamps, base64 blobs):
`{"posts": [{"title": "Hello"}], "comments": []}`. Dumps include `internal` fields, so a
dump seeds an empty database back to the same documents. A seed is validated by the
database layer's document codec (defaults applied) and written in one transaction, with
foreign keys checked at the end, so the order of collections and documents does not
matter and a bad document leaves the database untouched.

Backups use SQLite's online backup API: a consistent copy taken while the server keeps
writing. Restore and reset refuse a database that another process (a running server)
has open.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml
from rich.text import Text

from alyx_cli.output import CommandError, console, reports_errors
from alyx_cli.project import (
    Project,
    database_errors,
    exclusive_connection,
    find_project,
    project_option,
)
from alyx_server.errors import AlyxError, ValidationError
from alyx_server.tools.yaml_lines import YamlError, parse_yaml

if TYPE_CHECKING:
    from alyx_server.migrations import ApplyResult
    from alyx_server.schema.model import Collection, Schema

# The database layer and the migration runner are imported inside the functions that use
# them, so that `alyx --help` and unrelated commands start without loading them.

__all__ = [
    "PROGRESS_THRESHOLD",
    "backup_database",
    "check_alyx_database",
    "command",
    "dump_documents",
    "read_seed_file",
    "rebuild_database",
    "restore_database",
    "seed_documents",
]

PROGRESS_THRESHOLD = 500
"""Seeds with more documents than this show a progress bar on a terminal."""
HISTORY_TABLE = "_alyx_migrations"
SeedData = dict[str, list[dict[str, Any]]]
Advance = Callable[[], None]


@click.group("db", short_help="Seed, dump, back up, restore and reset the database.")
def command() -> None:
    """Work with the data in the project's database (database.path in alyx.yaml).

    \b
    Example:
      alyx db seed seed.json
      alyx db backup backups/today.db
    """


# -- reading and writing documents -------------------------------------------------------
def _parse(path: Path, text: str) -> Any:
    name = path.name
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise CommandError(f"{name}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
        except RecursionError as e:
            raise CommandError(f"{name}: invalid JSON: nested too deeply; flatten the documents") from e
    # The located reader bounds nesting and alias expansion, which yaml.safe_load does not.
    try:
        root = parse_yaml(text)
    except YamlError as e:
        where = f"{name}:{e.line}:{e.column}" if e.line is not None else name
        raise CommandError(f"{where}: invalid YAML: {e.message}") from e
    return None if root is None else root.to_python()


def read_seed_file(path: Path) -> SeedData:
    """Read a JSON (`.json`) or YAML seed file: `{collection: [document, ...]}`."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CommandError(f"{path.name}: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    data = _parse(path, text)
    example = '{"posts": [{"title": "Hello"}]}'
    if not isinstance(data, dict):
        raise CommandError(
            f"{path.name}: expected a mapping of collection names to lists of documents, e.g. {example}"
        )
    for collection, docs in data.items():
        if not isinstance(docs, list):
            raise CommandError(f"{path.name}: {collection} must be a list of documents")
        for index, doc in enumerate(docs):
            if not isinstance(doc, dict):
                raise CommandError(f"{path.name}: {collection}[{index}] must be an object")
    return data


def _check_collections(file: str, data: SeedData, schema: Schema) -> list[Collection]:
    from alyx_server.tools.suggest import did_you_mean

    found = []
    for name in data:
        collection = schema.get(str(name))
        if collection is None:
            hint = did_you_mean(str(name), schema.names)
            known = ", ".join(schema.names) or "none"
            raise CommandError(
                f"{file}: unknown collection {name!r}"
                + (f" ({hint})" if hint else "")
                + f"; collections are: {known}"
            )
        found.append(collection)
    return found


def _row_error(where: str, error: AlyxError) -> CommandError:
    """`seed.json: posts[3].title: title is required`: the row, the field, the codec's words."""
    if isinstance(error, ValidationError) and error.issues:
        first, *rest = error.issues
        message = f"{where}.{first.field}: {first.message}"
        if rest:
            message += "; also " + "; ".join(i.message for i in rest)
        return CommandError(message)
    field = getattr(error, "field", None)
    return CommandError(f"{where}.{field}: {error}" if field else f"{where}: {error}")


def _foreign_key_error(
    conn: sqlite3.Connection,
    file: str,
    schema: Schema,
    positions: Mapping[tuple[str, Any], int],
) -> CommandError | None:
    """The first seeded row whose reference points nowhere, named by collection and index."""
    from alyx_server.schema.ddl import quote

    problem = conn.execute("PRAGMA foreign_key_check").fetchone()
    if problem is None:
        return None
    table, rowid, parent, fk_id = problem
    column = next(
        (r[3] for r in conn.execute(f"PRAGMA foreign_key_list({quote(table)})") if r[0] == fk_id),
        "?",
    )
    where = str(table)
    collection = schema.get(str(table))
    if collection is not None:
        pk = quote(collection.primary.name)
        row = conn.execute(f"SELECT {pk} FROM {quote(table)} WHERE rowid = ?", (rowid,)).fetchone()
        index = positions.get((str(table), row[0])) if row is not None else None
        if index is not None:
            where = f"{table}[{index}]"
    return CommandError(
        f"{file}: {where}.{column}: {column} refers to a {parent} document that does not exist"
    )


def seed_documents(
    conn: sqlite3.Connection,
    schema: Schema,
    data: SeedData,
    *,
    file: str,
    advance: Advance = lambda: None,
) -> int:
    """Insert every document of `data` in one transaction; the number inserted.

    Foreign keys are checked at the end (`defer_foreign_keys`), so documents may refer to
    ones later in the file. Any failure rolls everything back and names the row.
    """
    from alyx_server.db import insert_doc

    collections = _check_collections(file, data, schema)
    positions: dict[tuple[str, Any], int] = {}
    count = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("PRAGMA defer_foreign_keys = ON")
        for collection in collections:
            pk = collection.primary.name
            for index, doc in enumerate(data[collection.name]):
                try:
                    stored = insert_doc(conn, collection, doc, internal=True)
                except AlyxError as e:
                    raise _row_error(f"{file}: {collection.name}[{index}]", e) from e
                positions[(collection.name, stored[pk])] = index
                count += 1
                advance()
        error = _foreign_key_error(conn, file, schema, positions)
        if error is not None:
            raise error
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return count


def dump_documents(conn: sqlite3.Connection, schema: Schema) -> SeedData:
    """Every collection's documents in API form, internal fields included, by primary key."""
    from alyx_server.db import codec_for
    from alyx_server.schema.ddl import quote

    out: SeedData = {}
    conn.execute("BEGIN")
    try:
        for collection in schema:
            codec = codec_for(collection)
            sql = f"SELECT {codec.columns_sql} FROM {codec.table} ORDER BY {quote(collection.primary.name)}"
            out[collection.name] = [codec.decode(row, internal=True) for row in conn.execute(sql)]
    finally:
        conn.execute("COMMIT")
    return out


def _stored_schema(conn: sqlite3.Connection) -> Schema:
    """The schema the tables have now: the newest migration history snapshot."""
    from alyx_server.migrations import read_history
    from alyx_server.schema.model import Schema

    history = read_history(conn)
    return history[-1].snapshot if history else Schema()


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
    from alyx_server.migrations import plan_migrations

    project = find_project(project_dir)
    project.require_database()
    data = read_seed_file(file)
    schema = project.load_schema()
    with project.connect() as conn:
        if not plan_migrations(conn, schema, project.migrations_dir).up_to_date:
            raise CommandError(
                f"{project.database_name} is not up to date with schema.yaml; run `alyx migrate apply` first"
            )
        total = sum(len(docs) for docs in data.values())
        with _progress(total) as advance:
            count = seed_documents(conn, _stored_schema(conn), data, file=file.name, advance=advance)
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
    project = find_project(project_dir)
    project.require_database()
    fmt = fmt or ("yaml" if file.suffix.lower() in (".yaml", ".yml") else "json")
    with project.connect() as conn:
        data = dump_documents(conn, _stored_schema(conn))
    text = _dump_text(data, fmt)
    count = sum(len(docs) for docs in data.values())
    if str(file) == "-":
        click.echo(text, nl=False)
        console(stderr=True).print(_summary("dumped", data, count, every=True))
        return
    file.write_text(text, encoding="utf-8")
    console().print(_summary("dumped", data, count, every=True) + f" to {file}")


# -- whole database files ------------------------------------------------------------------
def backup_database(source: Path, target: Path) -> None:
    """Copy the live database at `source` to a single self-contained file `target`.

    One backup step reads one consistent snapshot; under WAL, writers carry on meanwhile.
    The copy is written beside `target` and renamed into place, so a failed backup never
    leaves a half-written file.
    """
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    os.replace(partial, target)


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
    project = find_project(project_dir)
    project.require_database()
    if file.exists() and file.resolve() == project.database_path.resolve():
        raise CommandError(f"{file} is the database itself; choose another file")
    if file.exists() and not force:
        raise CommandError(f"{file} already exists; use --force to overwrite it")
    file.parent.mkdir(parents=True, exist_ok=True)
    with database_errors(project.database_name):
        backup_database(project.database_path, file)
    size = file.stat().st_size
    console().print(f"backed up {project.database_name} to {file} ({size / 1024:.0f} KiB)")


def check_alyx_database(path: Path) -> None:
    """Refuse anything but an intact SQLite database holding Alyx's migration history."""
    if not path.is_file():
        raise CommandError(f"{path} does not exist or is not a file")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise CommandError(f"{path} cannot be opened: {e}") from e
    try:
        result = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as e:
        raise CommandError(f"{path} is not an SQLite database ({e})") from e
    finally:
        conn.close()
    if result != ["ok"]:
        raise CommandError(f"{path} is damaged: {result[0]}")
    if HISTORY_TABLE not in tables:
        raise CommandError(
            f"{path} is an SQLite database but not an Alyx one (it has no {HISTORY_TABLE} table)"
        )


def restore_database(backup_file: Path, database: Path, *, name: str, timeout: float = 5.0) -> None:
    """Copy `backup_file` over `database` through the backup API, holding it exclusively."""
    deadline = time.monotonic() + timeout

    def give_up_when_busy(status: int, remaining: int, total: int) -> None:
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and time.monotonic() > deadline:
            raise CommandError(f"{name} stayed locked by another process; try again")

    database.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(backup_file.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        with exclusive_connection(database, name) as dst, database_errors(name):
            src.backup(dst, pages=256, progress=give_up_when_busy)
    finally:
        src.close()


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
    project = find_project(project_dir)
    check_alyx_database(file)
    name = project.database_name
    _confirm(f"Replace {name} with {file}? Its current data will be lost.", yes)
    restore_database(file, project.database_path, name=name)
    console().print(f"restored {name} from {file}")
    console().print("run `alyx migrate status` to compare it with schema.yaml")


def _remove_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def rebuild_database(project: Project, schema: Schema) -> ApplyResult:
    """Replace the database with a new, empty one built from the migrations and schema.yaml.

    The new database is built beside the old one first, so a migration that fails leaves
    the old database as it was; the old one is removed only once nothing has it open.
    """
    from alyx_server.db import open_connection
    from alyx_server.migrations import apply_migrations

    path = project.database_path
    fresh = path.with_name(f".{path.name}.reset")
    _remove_files(fresh)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with database_errors(project.show(fresh)):
            conn = open_connection(fresh, synchronous=project.settings.database.synchronous)
            try:
                result = apply_migrations(conn, schema, project.migrations_dir)
            finally:
                conn.close()
        if path.exists():
            with exclusive_connection(path, project.database_name):
                pass
        _remove_files(path)
        os.replace(fresh, path)
    finally:
        _remove_files(fresh)
    return result


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
    project = find_project(project_dir)
    schema = project.load_schema()
    name = project.database_name
    _confirm(f"Delete every document and user in {name} and start again?", yes)
    result = rebuild_database(project, schema)
    out = console()
    out.print(Text.assemble("reset ", (name, "bold")))
    for label in (*result.files, *result.auto):
        out.print(f"  {label}")
