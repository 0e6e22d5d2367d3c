"""Turning the stored tables of one schema into those of another, keeping every row.

Every function runs inside a transaction the caller opened, after the caller set
`PRAGMA foreign_keys=OFF` (SQLite ignores that pragma inside a transaction). Before
COMMIT the caller runs `PRAGMA foreign_key_check`; `foreign_key_problems` turns its rows
into messages. A failure raises `MigrationError` and the caller rolls back; so does a
constraint the row checks did not foresee, whose `sqlite3.IntegrityError` the caller
turns into a MigrationError (`migrations.execute`, through `db.constraints`).

A column change SQLite's ALTER TABLE cannot express goes through the rebuild of
https://sqlite.org/lang_altertable.html#otheralter: create the new table under a
temporary name, copy the rows with their values converted, drop the old table, rename the
new one, then recreate every index and trigger. The change triggers are created after the
copy, so the copy logs nothing in `_alyx_changes`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import replace

from alyx_server.errors import MigrationError
from alyx_server.schema.conversions import conversion_sql
from alyx_server.schema.ddl import (
    collection_sql,
    column_sql,
    create_table_sql,
    drop_triggers_sql,
    index_sql,
    quote,
    trigger_sql,
)
from alyx_server.schema.diff import SchemaDiff, creation_order
from alyx_server.schema.model import Collection, Field, FieldType
from alyx_server.schema.prechecks import (
    MAX_IDS_SHOWN,
    collection_problems,
    field_sources,
    primary_key_column,
)

__all__ = [
    "REBUILD_PREFIX",
    "apply_diff",
    "can_add_column",
    "create_collection",
    "drop_collection",
    "foreign_key_problems",
    "needs_rebuild",
    "rebuild_collection",
    "rename_collection",
]

# Temporary table name prefix of a rebuild; `_alyx` names are reserved, so none collides.
REBUILD_PREFIX = "_alyx_rebuild_"

_INDEX_NAME = re.compile(r'INDEX "((?:[^"]|"")*)"')


def create_collection(conn: sqlite3.Connection, c: Collection) -> None:
    """Create the table of a new collection with its indexes and triggers."""
    for sql in collection_sql(c):
        conn.execute(sql)


def drop_collection(conn: sqlite3.Connection, c: Collection) -> None:
    """Drop a collection's table; its indexes and triggers go with it."""
    conn.execute(f"DROP TABLE {quote(c.name)}")


def rename_collection(conn: sqlite3.Connection, old: Collection, new_name: str) -> Collection:
    """Rename a collection's table and return the renamed collection.

    Trigger bodies write the collection name into `_alyx_changes` and derived index names
    embed it, so both are recreated under the new name. SQLite itself rewrites foreign
    keys of other tables that point at the renamed one.
    """
    renamed = _renamed(old, new_name)
    for sql in drop_triggers_sql(old):
        conn.execute(sql)
    for name in _stored_indexes(conn, old.name):
        conn.execute(f"DROP INDEX {quote(name)}")
    try:
        conn.execute(f"ALTER TABLE {quote(old.name)} RENAME TO {quote(new_name)}")
    except sqlite3.OperationalError as e:
        raise MigrationError(f"cannot rename collection {old.name} to {new_name}: {e}") from e
    for sql in [*index_sql(renamed), *trigger_sql(renamed)]:
        conn.execute(sql)
    return renamed


def _renamed(c: Collection, new_name: str) -> Collection:
    fields = tuple(
        replace(f, references=replace(f.references, collection=new_name))
        if f.references is not None and f.references.collection == c.name
        else f
        for f in c.fields
    )
    return replace(c, name=new_name, fields=fields)


def _stored_indexes(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    """Indexes created by a CREATE INDEX statement on `table` (name -> SQL)."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,),
    )
    return {str(name): str(sql) for name, sql in rows}


def rebuild_collection(
    conn: sqlite3.Connection,
    old: Collection,
    new: Collection,
    *,
    column_map: Mapping[str, str | None] | None = None,
) -> None:
    """Rebuild `old`'s table as `new`, keeping every row, index and trigger.

    `column_map` maps a new field name to the old column it is filled from (None: no
    source); by default a field takes the old column of the same name. A field without
    a source gets its default or NULL. Raises MigrationError, before changing anything,
    when a row cannot be kept.
    """
    sources = field_sources(old, new, column_map)
    problems = collection_problems(conn, old, new, sources)
    if problems:
        raise MigrationError(f"cannot rebuild {new.name}: " + "; ".join(problems))
    _rebuild(conn, old, new, sources)


def _rebuild(
    conn: sqlite3.Connection, old: Collection, new: Collection, sources: Mapping[str, Field | None]
) -> None:
    temp = REBUILD_PREFIX + new.name
    columns: list[str] = []
    values: list[str] = []
    pk = new.primary
    if pk.type is not FieldType.INT or sources[pk.name] is None:
        # Keep rowids: the order rows were written in, or the id of an INTEGER key without source.
        columns.append("rowid")
        values.append("rowid")
    for f in new.fields:
        source = sources[f.name]
        if source is not None:
            columns.append(quote(f.name))
            values.append(conversion_sql(source.type, f.type, quote(source.name)))
    conn.execute(create_table_sql(new, table_name=temp))
    conn.execute(
        f"INSERT INTO {quote(temp)} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {quote(old.name)}"
    )
    conn.execute(f"DROP TABLE {quote(old.name)}")
    conn.execute(f"ALTER TABLE {quote(temp)} RENAME TO {quote(new.name)}")
    for sql in [*index_sql(new), *trigger_sql(new)]:
        conn.execute(sql)


def can_add_column(f: Field) -> bool:
    """True when `ALTER TABLE ADD COLUMN` can add this new field to a table with rows.

    SQLite refuses a PRIMARY KEY, a non-constant default (now, auto) and NOT NULL without
    a non-NULL default; a reference with a non-NULL default is rebuilt so that
    `foreign_key_check` sees the copied rows like any other.
    """
    if f.primary:
        return False
    default = f.default
    if default is None or (default.kind == "literal" and default.value is None):
        return f.nullable
    if default.kind != "literal":
        return False
    return f.references is None


def needs_rebuild(old: Collection, new: Collection) -> bool:
    """True when turning `old` into `new` changes a column beyond what ALTER TABLE can do."""
    if any(new.field(f.name) is None for f in old.fields):
        return True
    for f in new.fields:
        before = old.field(f.name)
        if before is None:
            if not can_add_column(f):
                return True
        elif column_sql(before) != column_sql(f):
            return True
    return False


def _alter_in_place(conn: sqlite3.Connection, old: Collection, new: Collection) -> None:
    """Add columns, then bring indexes and triggers in line with `new` (no rebuild)."""
    table = quote(new.name)
    for f in new.fields:
        if old.field(f.name) is None:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column_sql(f)}")
    stored = _stored_indexes(conn, new.name)
    wanted: dict[str, str] = {}
    for sql in index_sql(new):
        match = _INDEX_NAME.search(sql)
        assert match is not None, sql
        wanted[match.group(1).replace('""', '"')] = sql
    for name, sql in stored.items():
        if wanted.get(name) != sql:
            conn.execute(f"DROP INDEX {quote(name)}")
    for name, sql in wanted.items():
        if stored.get(name) != sql:
            conn.execute(sql)
    if trigger_sql(old) != trigger_sql(new):
        for sql in [*drop_triggers_sql(old), *trigger_sql(new)]:
            conn.execute(sql)


def apply_diff(
    conn: sqlite3.Connection,
    diff: SchemaDiff,
    *,
    allow_destructive: bool = False,
    column_maps: Mapping[str, Mapping[str, str | None]] | None = None,
) -> None:
    """Apply every change of `diff` to the stored tables.

    Destructive changes are refused unless `allow_destructive` (a migration file asked for
    them). Every row check runs first, so a refusal changes nothing. `column_maps` gives
    a rebuild's column map per collection, e.g. for a renamed field.
    """
    column_maps = column_maps or {}
    if diff.destructive and not allow_destructive:
        listed = "; ".join(f"{c.summary} ({c.reason})" for c in diff.destructive)
        raise MigrationError(f"destructive schema changes need a migration file: {listed}")
    unknown = sorted(n for n in column_maps if n not in diff.old or n not in diff.new)
    if unknown:
        raise MigrationError(f"column maps name collections missing from either schema: {', '.join(unknown)}")
    plans = _plans(diff, column_maps)
    problems: list[str] = []
    sources = [field_sources(old, new, column_map) for old, new, column_map in plans]
    for (old, new, _), source in zip(plans, sources, strict=True):
        problems.extend(collection_problems(conn, old, new, source))
    if problems:
        raise MigrationError("schema change refused: " + "; ".join(problems))
    for c in diff.old:
        if c.name not in diff.new:
            drop_collection(conn, c)
    for c in creation_order(c for c in diff.new if c.name not in diff.old):
        create_collection(conn, c)
    for (old, new, column_map), source in zip(plans, sources, strict=True):
        if column_map is not None or needs_rebuild(old, new):
            _rebuild(conn, old, new, source)
        else:
            _alter_in_place(conn, old, new)


_Plan = tuple[Collection, Collection, Mapping[str, str | None] | None]


def _plans(diff: SchemaDiff, column_maps: Mapping[str, Mapping[str, str | None]]) -> list[_Plan]:
    """Surviving collections whose table changes, with their column map if any."""
    out: list[_Plan] = []
    for new in diff.new:
        old = diff.old.get(new.name)
        if old is None:
            continue
        sql_changes = [c for c in diff.for_collection(new.name) if c.kind != "change_rules"]
        if sql_changes or new.name in column_maps:
            out.append((old, new, column_maps.get(new.name)))
    return out


def foreign_key_problems(conn: sqlite3.Connection) -> list[str]:
    """`PRAGMA foreign_key_check` as messages: which rows point at a missing parent row."""
    groups: dict[tuple[str, str, int], list[int]] = {}
    for table, rowid, parent, fkid in conn.execute("PRAGMA foreign_key_check").fetchall():
        groups.setdefault((str(table), str(parent), int(fkid)), []).append(rowid)
    out: list[str] = []
    for (table, parent, fkid), rowids in groups.items():
        column, target = _foreign_key_columns(conn, table, fkid)
        pk = quote(primary_key_column(conn, table))
        shown = rowids[:MAX_IDS_SHOWN]
        marks = ", ".join("?" for _ in shown)
        ids = [
            str(r[0])
            for r in conn.execute(
                f"SELECT {pk} FROM {quote(table)} WHERE rowid IN ({marks}) ORDER BY {pk}", shown
            )
        ]
        more = ", ..." if len(rowids) > len(shown) else ""
        rows = "1 row" if len(rowids) == 1 else f"{len(rowids)} rows"
        out.append(
            f"{rows} in {table}.{column} reference a missing {parent}.{target} (ids: {', '.join(ids)}{more})"
        )
    return out


def _foreign_key_columns(conn: sqlite3.Connection, table: str, fkid: int) -> tuple[str, str]:
    for row in conn.execute(f"PRAGMA foreign_key_list({quote(table)})"):
        if row[0] == fkid:
            return str(row[3]), str(row[4] or "rowid")
    return "?", "?"
