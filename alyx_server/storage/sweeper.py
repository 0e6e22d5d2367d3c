"""Files no document references: the sweeper, and the files of dropped file fields.

Deletes follow commits (api/uploads.py), so the only way to leave a stored object behind
is a crash (or a storage outage) between the two: a file stored for a write that never
committed, a file released by a commit whose delete never ran, a partial upload under
`.partial/` of a process killed mid-upload. `sweep` finds them: every object under a
file key (`<collection>/<field>/<32 hex>/...`) whose folder no document references, and
every `.partial/` object, once older than the grace period (so an upload that completed
but whose write has not committed yet is never touched), plus anything under a prefix
that is no file field of the schema (a field or collection dropped). Deleting a file
with its thumbnails means deleting its folder.

`dropped_prefixes(before, after)` names the storage prefixes of the file fields a schema
change removed; `free_dropped` deletes them after the migration committed, except what a
document of the new schema still references (a renamed field keeps its old keys).

One sweep at a time per database: `SweepLock` is a flock in the database's run folder
(tools/processes.py), which the kernel releases when its holder dies, even by kill -9.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from alyx_server.schema.ddl import quote
from alyx_server.schema.model import FieldType, Schema
from alyx_server.storage.backend import Storage
from alyx_server.storage.files import field_prefix, file_entries, folder_of
from alyx_server.tools.filelocks import FileLock
from alyx_server.tools.processes import run_dir

__all__ = [
    "PARTIAL",
    "SweepLock",
    "SweepResult",
    "dropped_prefixes",
    "file_prefixes",
    "free_dropped",
    "free_dropped_fields",
    "referenced_folders",
    "sweep",
    "sweep_once",
]

log = logging.getLogger("alyx.storage")

PARTIAL = ".partial/"


def file_prefixes(schema: Schema) -> set[str]:
    """`<collection>/<field>/` of every file field of `schema`."""
    return {field_prefix(c.name, f.name) for c in schema for f in c.fields if f.type is FieldType.FILE}


def dropped_prefixes(before: Schema, after: Schema) -> list[str]:
    """The prefixes of file fields in `before` that `after` no longer has."""
    return sorted(file_prefixes(before) - file_prefixes(after))


def referenced_folders(conn: sqlite3.Connection, schema: Schema) -> set[str]:
    """The folder (`.../<32 hex>/`) of every file a document of `schema` references."""
    folders: set[str] = set()
    for collection in schema:
        names = [f.name for f in collection.fields if f.type is FieldType.FILE]
        if not names:
            continue
        columns = ", ".join(quote(n) for n in names)
        where = " OR ".join(f"{quote(n)} IS NOT NULL" for n in names)
        rows = conn.execute(f"SELECT {columns} FROM {quote(collection.name)} WHERE {where}")
        for row in rows:
            for value in row:
                if value is None:
                    continue
                try:
                    decoded = orjson.loads(value)
                except orjson.JSONDecodeError:
                    continue
                for entry in file_entries(decoded):
                    key = entry.get("key")
                    if isinstance(key, str) and "/" in key:
                        folders.add(folder_of(key))
    return folders


async def free_dropped(storage: Storage, prefixes: list[str], referenced: set[str]) -> int:
    """Delete the objects under `prefixes` (dropped file fields) that no folder in
    `referenced` holds; how many. Errors are logged: the sweeper finds what is left."""
    deleted = 0
    for prefix in prefixes:
        try:
            if not any(folder.startswith(prefix) for folder in referenced):
                deleted += await storage.delete_prefix(prefix)
                continue
            async for info in storage.list(prefix):
                if _folder(info.key) not in referenced:
                    await storage.delete(info.key)
                    deleted += 1
        except Exception:
            log.exception("could not delete the files of the dropped field %s", prefix)
    if deleted:
        log.info("deleted %d stored file(s) of dropped file fields", deleted)
    return deleted


async def free_dropped_fields(
    storage: Storage,
    before: Schema,
    after: Schema,
    read_referenced: Callable[[], Awaitable[set[str]]],
) -> int:
    """After a migration from `before` to `after` committed: delete the files of the file
    fields it removed (`free_dropped`); nothing to read when it removed none."""
    prefixes = dropped_prefixes(before, after)
    if not prefixes:
        return 0
    try:
        referenced = await read_referenced()
    except Exception:
        log.exception("could not read which files are referenced; the sweeper will delete them")
        return 0
    return await free_dropped(storage, prefixes, referenced)


@dataclass(slots=True)
class SweepResult:
    """What a sweep found: the keys it deleted (or would, on a dry run), those kept."""

    deleted: list[str] = field(default_factory=list)
    young: int = 0
    """Unreferenced objects not yet older than the grace period, left for a later sweep."""
    kept: int = 0
    """Objects a document references."""
    dry_run: bool = False


def _folder(key: str) -> str:
    # <collection>/<field>/<32 hex>/<name or thumbs/WxH>: the first three segments.
    parts = key.split("/")
    return "/".join(parts[:3]) + "/" if len(parts) >= 4 else key


async def sweep(
    storage: Storage,
    referenced: set[str],
    *,
    now: float,
    grace: float,
    dry_run: bool = False,
) -> SweepResult:
    """Delete the unreferenced objects older than `grace` seconds (see the module docstring).

    `referenced`: `referenced_folders(...)`, read before listing; an object newer than the
    grace period is never deleted, whatever that read saw."""
    result = SweepResult(dry_run=dry_run)
    async for info in storage.list(""):
        key = info.key
        if not key.startswith(PARTIAL) and _folder(key) in referenced:
            result.kept += 1
            continue
        if now - info.modified < grace:
            result.young += 1
            continue
        result.deleted.append(key)
    if not dry_run:
        for key in result.deleted:
            await storage.delete(key)
    if result.deleted and not dry_run:
        log.info("storage sweep: deleted %d unreferenced object(s)", len(result.deleted))
    return result


async def sweep_once(
    storage: Storage,
    read_referenced: Callable[[], Awaitable[set[str]]],
    lock: SweepLock,
    *,
    now: float,
    grace: float,
    dry_run: bool = False,
) -> SweepResult | None:
    """One sweep if no other process of this database is sweeping (else None)."""
    if not lock.try_acquire():
        return None
    try:
        referenced = await read_referenced()
        return await sweep(storage, referenced, now=now, grace=grace, dry_run=dry_run)
    finally:
        lock.release()


class SweepLock:
    """The flock that makes one sweep at a time per database (see the module docstring)."""

    def __init__(self, database: Path) -> None:
        self._lock = FileLock(run_dir(database) / "storage-sweep.lock")

    def try_acquire(self) -> bool:
        return self._lock.try_acquire()

    def release(self) -> None:
        self._lock.release()

    def close(self) -> None:
        self._lock.close()
