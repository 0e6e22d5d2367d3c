"""DDL for collections: tables, indexes, foreign keys and the triggers Alyx relies on.

Every collection table gets three change triggers that append to `_alyx_changes`, so
that writes from any process (the server, the CLI, a sqlite3 shell) reach the change
feed, and one trigger per `onUpdate: now` field for writes that do not set it.

Unique fields become separate unique indexes (`uq_<collection>_<field>`) rather than
column constraints: SQLite cannot `ADD COLUMN ... UNIQUE`, and one representation for
new tables and altered ones keeps the differ simple.

Non-unique indexes end with the primary key when it is not the rowid (a uuid or string
key). Lists break ties by the primary key, ascending; an index on `author_id` alone
holds rowids, not ids, so `WHERE author_id = ? ORDER BY id` would read every matching
row and sort them in a temporary B-tree, while `(author_id, id)` returns the first page
in index order. An `INTEGER PRIMARY KEY` is the rowid, which every index already ends with.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from alyx_server.schema.model import Collection, Field, FieldType, Index
from alyx_server.schema.system_tables import CHANGES_TABLE

__all__ = [
    "CHANGES_TABLE",
    "NOW_SQL",
    "UUID4_SQL",
    "change_trigger_names",
    "collection_sql",
    "column_sql",
    "create_table_sql",
    "drop_triggers_sql",
    "field_index_name",
    "index_sql",
    "literal_sql",
    "quote",
    "trigger_sql",
    "unique_index_name",
]

# ISO-8601 UTC with milliseconds, the storage format of `timestamp` fields.
NOW_SQL = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"

# A version-4 UUID in SQL, so rows inserted outside Alyx still get an id.
UUID4_SQL = (
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))),2) || '-' || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))),2) || '-' || "
    "lower(hex(randomblob(6)))"
)


def quote(name: str) -> str:
    """Quote an SQL identifier; names are validated by the loader, quoting keeps keywords safe."""
    return '"' + name.replace('"', '""') + '"'


def literal_sql(field_type: FieldType, value: Any) -> str:
    """Render a default literal as SQL text for a column DEFAULT clause."""
    if value is None:
        return "NULL"
    if field_type is FieldType.BOOL:
        return "1" if value else "0"
    if field_type in (FieldType.INT, FieldType.FLOAT):
        return repr(value) if isinstance(value, float) else str(int(value))
    if field_type is FieldType.BLOB:
        # Blob defaults are written as base64 in schema.yaml; the column holds the bytes.
        return "X'" + base64.b64decode(str(value)).hex() + "'"
    if field_type is FieldType.JSON:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    else:
        text = str(value)
    return "'" + text.replace("'", "''") + "'"


def _default_sql(field: Field) -> str | None:
    default = field.default
    if default is None:
        return None
    if default.kind == "now":
        return f"({NOW_SQL})"
    if default.kind == "auto":
        return None if field.type is FieldType.INT else f"({UUID4_SQL})"
    return literal_sql(field.type, default.value)


def column_sql(field: Field) -> str:
    """The column definition of one field (without UNIQUE: see the module docstring)."""
    parts = [quote(field.name), field.sql_type]
    if field.primary:
        parts.append("PRIMARY KEY")
        if field.type is not FieldType.INT:
            parts.append("NOT NULL")
    elif not field.nullable:
        parts.append("NOT NULL")
    default = _default_sql(field)
    if default is not None:
        parts.append(f"DEFAULT {default}")
    if field.references is not None:
        ref = field.references
        parts.append(
            f"REFERENCES {quote(ref.collection)}({quote(ref.field)}) ON DELETE {ref.on_delete.upper()}"
        )
    return " ".join(parts)


def create_table_sql(collection: Collection, *, table_name: str | None = None) -> str:
    """CREATE TABLE for a collection; `table_name` lets a rebuild create it under a temporary name."""
    cols = ",\n  ".join(column_sql(f) for f in collection.fields)
    return f"CREATE TABLE {quote(table_name or collection.name)} (\n  {cols}\n)"


def unique_index_name(collection: str, field: str) -> str:
    return f"uq_{collection}_{field}"


def field_index_name(collection: str, field: str) -> str:
    return f"idx_{collection}_{field}"


def _tie_break(collection: Collection, fields: tuple[str, ...]) -> list[str]:
    """The primary key column to append to a non-unique index on `fields` (see the module
    docstring): none for a rowid key or when the index already holds it."""
    pk = next((f for f in collection.fields if f.primary), None)
    if pk is None or pk.type is FieldType.INT or pk.name in fields:
        return []
    return [quote(pk.name)]


def _explicit_index_sql(collection: Collection, index: Index) -> str:
    direction = " DESC" if index.order == "desc" else ""
    cols = [quote(f) + direction for f in index.fields]
    if not index.unique:
        cols += _tie_break(collection, index.fields)
    unique = "UNIQUE " if index.unique else ""
    return f"CREATE {unique}INDEX {quote(index.name)} ON {quote(collection.name)} ({', '.join(cols)})"


def index_sql(collection: Collection) -> list[str]:
    """Unique indexes for `unique` fields, plain ones for `index` fields, then declared indexes."""
    out: list[str] = []
    table = quote(collection.name)
    for f in collection.fields:
        if f.unique and not f.primary:
            name = quote(unique_index_name(collection.name, f.name))
            out.append(f"CREATE UNIQUE INDEX {name} ON {table} ({quote(f.name)})")
        if f.index and not f.primary and not f.unique:
            name = quote(field_index_name(collection.name, f.name))
            cols = ", ".join([quote(f.name), *_tie_break(collection, (f.name,))])
            out.append(f"CREATE INDEX {name} ON {table} ({cols})")
    out.extend(_explicit_index_sql(collection, i) for i in collection.indexes)
    return out


def change_trigger_names(collection: str) -> tuple[str, str, str]:
    return (
        f"_alyx_chg_{collection}_ins",
        f"_alyx_chg_{collection}_upd",
        f"_alyx_chg_{collection}_del",
    )


def _on_update_trigger_name(collection: str, field: str) -> str:
    return f"_alyx_onupd_{collection}_{field}"


def _change_insert(collection: Collection, op: str, row: str, changed: str) -> str:
    pk = quote(collection.primary.name)
    name = literal_sql(FieldType.STRING, collection.name)
    return (
        f"INSERT INTO {CHANGES_TABLE} (collection, operation, doc_id, changed_fields, ts) "
        f"VALUES ({name}, '{op}', {row}.{pk}, {changed}, {NOW_SQL});"
    )


def _update_trigger(collection: Collection) -> str:
    """UPDATE change trigger.

    Fires only when a field other than an `onUpdate: now` field changed, so the nested
    UPDATE issued by an onUpdate trigger does not log a second change; the onUpdate
    fields are then always listed as changed, since they are about to be refreshed.
    """
    table = quote(collection.name)
    watched = [f for f in collection.fields if not f.on_update_now]
    auto = [f for f in collection.fields if f.on_update_now]
    cond = " OR ".join(f"OLD.{quote(f.name)} IS NOT NEW.{quote(f.name)}" for f in watched) or "0"
    items = [
        f"CASE WHEN OLD.{quote(f.name)} IS NOT NEW.{quote(f.name)} THEN "
        f"{literal_sql(FieldType.STRING, f.name)} END"
        for f in watched
    ] + [literal_sql(FieldType.STRING, f.name) for f in auto]
    changed = (
        f"(SELECT json_group_array(value) FROM json_each(json_array({', '.join(items)})) "
        "WHERE type != 'null')"
    )
    name = quote(change_trigger_names(collection.name)[1])
    body = _change_insert(collection, "UPDATE", "NEW", changed)
    return f"CREATE TRIGGER {name} AFTER UPDATE ON {table} WHEN {cond} BEGIN {body} END"


def trigger_sql(collection: Collection) -> list[str]:
    """The change triggers and the `onUpdate: now` triggers of a collection."""
    table = quote(collection.name)
    ins, _upd, dele = change_trigger_names(collection.name)
    out = [
        f"CREATE TRIGGER {quote(ins)} AFTER INSERT ON {table} BEGIN "
        f"{_change_insert(collection, 'INSERT', 'NEW', 'NULL')} END",
        _update_trigger(collection),
        f"CREATE TRIGGER {quote(dele)} AFTER DELETE ON {table} BEGIN "
        f"{_change_insert(collection, 'DELETE', 'OLD', 'NULL')} END",
    ]
    pk = quote(collection.primary.name)
    for f in collection.fields:
        if not f.on_update_now:
            continue
        col = quote(f.name)
        out.append(
            f"CREATE TRIGGER {quote(_on_update_trigger_name(collection.name, f.name))} "
            f"AFTER UPDATE ON {table} WHEN NEW.{col} IS OLD.{col} BEGIN "
            f"UPDATE {table} SET {col} = {NOW_SQL} WHERE {pk} = NEW.{pk}; END"
        )
    return out


def drop_triggers_sql(collection: Collection) -> list[str]:
    """DROP statements for every trigger `trigger_sql` creates (used before a rebuild)."""
    names = list(change_trigger_names(collection.name)) + [
        _on_update_trigger_name(collection.name, f.name) for f in collection.fields if f.on_update_now
    ]
    return [f"DROP TRIGGER IF EXISTS {quote(n)}" for n in names]


def collection_sql(collection: Collection) -> list[str]:
    """Everything needed to create a collection from nothing: table, indexes, triggers."""
    return [create_table_sql(collection), *index_sql(collection), *trigger_sql(collection)]
