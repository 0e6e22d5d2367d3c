"""Whole-database work: seed, dump, back up, restore and rebuild a project's database.

The transactions behind `alyx db seed|dump|backup|restore|reset`, as functions over a
connection or file paths and plain values that raise Alyx's errors, so that the CLI only
parses, calls and prints, and an admin API can share them.

Seed files and dumps share one format, a mapping of collection names to lists of
documents in the REST API's form (bools, parsed JSON, ISO timestamps, base64 blobs):
`{"posts": [{"title": "Hello"}], "comments": []}`. Dumps include `internal` fields, so a
dump seeds an empty database back to the same documents. A seed is validated by the
document codec (defaults applied) and written in one transaction, with foreign keys
checked at the end, so the order of collections and documents does not matter and a
bad document leaves the database untouched.

Backups use SQLite's online backup API: a consistent copy taken while the server keeps
writing. Restore and rebuild refuse a database that another process (a running server)
has open.

Errors: a bad seed or backup file is a ValidationError, an unknown collection NotFound,
a dangling reference Conflict (FOREIGN_KEY_VIOLATION), a database in use Conflict
(DATABASE_IN_USE), a database behind schema.yaml MigrationError, and any other SQLite
failure an AlyxError (DATABASE_ERROR) naming the database file.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alyx_server.db.codec import codec_for
from alyx_server.db.connection import Synchronous, open_connection
from alyx_server.db.documents import insert_doc
from alyx_server.errors import AlyxError, Conflict, MigrationError, NotFound, ValidationError
from alyx_server.migrations import ApplyResult, apply_migrations, plan_migrations, read_history
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import Collection, Schema
from alyx_server.schema.system_tables import HISTORY_TABLE
from alyx_server.tools.suggest import did_you_mean
from alyx_server.tools.yaml_lines import YamlError, parse_yaml

__all__ = [
    "Advance",
    "SeedData",
    "backup_database",
    "backup_files",
    "check_alyx_database",
    "database_error",
    "database_errors",
    "dump_documents",
    "exclusive_connection",
    "files_folder",
    "parse_seed",
    "read_seed_file",
    "rebuild_database",
    "restore_database",
    "restore_files",
    "seed_database",
    "seed_documents",
    "stored_schema",
]

SeedData = dict[str, list[dict[str, Any]]]
Advance = Callable[[], None]
"""Called once per seeded document (a progress bar's step)."""


# -- SQLite failures, named by database ----------------------------------------------------
def database_error(name: str, error: sqlite3.Error) -> AlyxError:
    """`data/alyx.db: database is locked (another process ...)`: one line naming the file."""
    reason = str(error)
    busy = "locked" in reason or "busy" in reason
    if busy:
        reason += " (another process is writing to it; try again when it has finished)"
    return AlyxError(f"{name}: {reason}", code="DATABASE_ERROR", status=503 if busy else 500)


@contextmanager
def database_errors(name: str) -> Iterator[None]:
    """Re-raise SQLite errors of the block as `database_error(name, ...)`."""
    try:
        yield
    except sqlite3.Error as error:
        raise database_error(name, error) from error


@contextmanager
def exclusive_connection(path: Path, name: str) -> Iterator[sqlite3.Connection]:
    """A connection holding `path` exclusively; Conflict while another process has it open.

    A server keeps its connections open (and under WAL each holds a shared lock), so
    failing to get the exclusive lock at once means the database is in use.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    try:
        try:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            raise _in_use(
                f"{name} is in use by another process (is `alyx dev` or `alyx serve` "
                "running?); stop it and try again"
            ) from e
        yield conn
    finally:
        conn.close()


def _in_use(message: str) -> Conflict:
    return Conflict(message, code="DATABASE_IN_USE")


# -- seed files -----------------------------------------------------------------------------
def parse_seed(name: str, text: str) -> Any:
    """The data of seed file `name`: JSON when it ends in `.json`, YAML otherwise."""
    if Path(name).suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValidationError(f"{name}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
        except RecursionError as e:
            raise ValidationError(f"{name}: invalid JSON: nested too deeply; flatten the documents") from e
    # The located reader bounds nesting and alias expansion, which yaml.safe_load does not.
    try:
        root = parse_yaml(text)
    except YamlError as e:
        where = f"{name}:{e.line}:{e.column}" if e.line is not None else name
        raise ValidationError(f"{where}: invalid YAML: {e.message}") from e
    return None if root is None else root.to_python()


def read_seed_file(path: Path) -> SeedData:
    """Read a JSON (`.json`) or YAML seed file: `{collection: [document, ...]}`."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError(f"{path.name}: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    data = parse_seed(path.name, text)
    example = '{"posts": [{"title": "Hello"}]}'
    if not isinstance(data, dict):
        raise ValidationError(
            f"{path.name}: expected a mapping of collection names to lists of documents, e.g. {example}"
        )
    for collection, docs in data.items():
        if not isinstance(docs, list):
            raise ValidationError(f"{path.name}: {collection} must be a list of documents")
        for index, doc in enumerate(docs):
            if not isinstance(doc, dict):
                raise ValidationError(f"{path.name}: {collection}[{index}] must be an object")
    return data


# -- seeding and dumping --------------------------------------------------------------------
def _check_collections(file: str, data: SeedData, schema: Schema) -> list[Collection]:
    found = []
    for name in data:
        collection = schema.get(str(name))
        if collection is None:
            hint = did_you_mean(str(name), schema.names)
            known = ", ".join(schema.names) or "none"
            raise NotFound(
                f"{file}: unknown collection {name!r}"
                + (f" ({hint})" if hint else "")
                + f"; collections are: {known}",
                code="COLLECTION_NOT_FOUND",
            )
        found.append(collection)
    return found


def _row_error(where: str, error: AlyxError) -> AlyxError:
    """`seed.json: posts[3].title: title is required`: the row, the field, the codec's words."""
    if isinstance(error, ValidationError) and error.issues:
        first, *rest = error.issues
        message = f"{where}.{first.field}: {first.message}"
        if rest:
            message += "; also " + "; ".join(i.message for i in rest)
        return ValidationError(message, error.issues, code=error.code)
    field = error.field if isinstance(error, Conflict) else None
    message = f"{where}.{field}: {error}" if field else f"{where}: {error}"
    return AlyxError(message, code=error.code, status=error.status)


def _foreign_key_error(
    conn: sqlite3.Connection,
    file: str,
    schema: Schema,
    positions: Mapping[tuple[str, Any], int],
) -> Conflict | None:
    """The first seeded row whose reference points nowhere, named by collection and index."""
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
    return Conflict(
        f"{file}: {where}.{column}: {column} refers to a {parent} document that does not exist",
        code="FOREIGN_KEY_VIOLATION",
        field=str(column),
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


def seed_database(
    conn: sqlite3.Connection,
    schema: Schema,
    migrations_dir: Path,
    data: SeedData,
    *,
    file: str,
    name: str,
    advance: Advance = lambda: None,
) -> int:
    """Seed `data` into the database `name`, which must be up to date with `schema`.

    The documents are checked against the schema the tables have (the newest migration
    snapshot); a database behind schema.yaml is refused with MigrationError first.
    """
    if not plan_migrations(conn, schema, migrations_dir).up_to_date:
        raise MigrationError(f"{name} is not up to date with schema.yaml; run `alyx migrate apply` first")
    return seed_documents(conn, stored_schema(conn), data, file=file, advance=advance)


def dump_documents(conn: sqlite3.Connection, schema: Schema) -> SeedData:
    """Every collection's documents in API form, internal fields included, by primary key."""
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


def stored_schema(conn: sqlite3.Connection) -> Schema:
    """The schema the tables have now: the newest migration history snapshot."""
    history = read_history(conn)
    return history[-1].snapshot if history else Schema()


# -- whole database files -------------------------------------------------------------------
def backup_database(source: Path, target: Path) -> None:
    """Copy the live database at `source` to a single self-contained file `target`.

    One backup step reads one consistent snapshot; under WAL, writers carry on meanwhile.
    The copy is written beside `target` and renamed into place, so a failed backup never
    leaves a half-written file. SQLite errors propagate (wrap in `database_errors`).
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


def files_folder(backup_file: Path) -> Path:
    """Where `alyx db backup FILE` puts the local file storage's copy: `FILE.files/`."""
    return backup_file.with_name(backup_file.name + ".files")


def backup_files(storage: Path, target: Path) -> int:
    """Copy the local file storage folder `storage` into `target`; the files copied.

    Stored files never change under their name, so a copy is a copy of each file not yet
    in `target` (hard-linked where the file system allows, else copied). Run it before
    and after `backup_database`: the snapshot's files are in the union (a file is deleted
    only after the commit that stops referencing it). Partial uploads are skipped.
    """
    copied = 0
    if not storage.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return 0
    for source in sorted(storage.rglob("*")):
        relative = source.relative_to(storage)
        if not source.is_file() or relative.parts[0] == ".partial":
            continue
        dest = target / relative
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, dest)
        except FileNotFoundError:
            continue  # deleted meanwhile: no snapshot taken after its delete references it
        except OSError:
            shutil.copy2(source, dest)
        copied += 1
    return copied


def restore_files(backup_folder: Path, storage: Path) -> int:
    """Replace the local file storage folder with `backup_folder` (made by `backup_files`):
    copied beside it, then swapped in, so a failed copy leaves the old folder as it was."""
    fresh = storage.with_name(f".{storage.name}.restore")
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(backup_folder, fresh)
    old = storage.with_name(f".{storage.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if storage.exists():
        os.replace(storage, old)
    os.replace(fresh, storage)
    shutil.rmtree(old, ignore_errors=True)
    return sum(1 for p in storage.rglob("*") if p.is_file())


def check_alyx_database(path: Path) -> None:
    """Refuse anything but an intact SQLite database holding Alyx's migration history."""
    if not path.is_file():
        raise ValidationError(f"{path} does not exist or is not a file")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise ValidationError(f"{path} cannot be opened: {e}") from e
    try:
        result = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as e:
        raise ValidationError(f"{path} is not an SQLite database ({e})") from e
    finally:
        conn.close()
    if result != ["ok"]:
        raise ValidationError(f"{path} is damaged: {result[0]}")
    if HISTORY_TABLE not in tables:
        raise ValidationError(
            f"{path} is an SQLite database but not an Alyx one (it has no {HISTORY_TABLE} table)"
        )


def restore_database(backup_file: Path, database: Path, *, name: str, timeout: float = 5.0) -> None:
    """Copy `backup_file` over `database` through the backup API, holding it exclusively.

    `timeout` bounds how long a lock taken meanwhile by another process is waited out.
    """
    deadline = time.monotonic() + timeout

    def give_up_when_busy(status: int, remaining: int, total: int) -> None:
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and time.monotonic() > deadline:
            raise _in_use(f"{name} stayed locked by another process; try again")

    database.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(backup_file.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        with exclusive_connection(database, name) as dst, database_errors(name):
            src.backup(dst, pages=256, progress=give_up_when_busy)
    finally:
        src.close()


def _remove_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def rebuild_database(
    path: Path,
    schema: Schema,
    migrations_dir: Path,
    *,
    name: str,
    synchronous: Synchronous = "normal",
) -> ApplyResult:
    """Replace the database at `path` (shown as `name`) with a new, empty one built from
    the migrations and `schema`.

    The new database is built beside the old one first, so a migration that fails leaves
    the old database as it was; the old one is removed only once nothing has it open.
    """
    fresh = path.with_name(f".{path.name}.reset")
    _remove_files(fresh)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with database_errors(str(Path(name).with_name(fresh.name))):
            conn = open_connection(fresh, synchronous=synchronous)
            try:
                result = apply_migrations(conn, schema, migrations_dir)
            finally:
                conn.close()
        if path.exists():
            with exclusive_connection(path, name):
                pass
        _remove_files(path)
        os.replace(fresh, path)
    finally:
        _remove_files(fresh)
    return result
