"""Data checks before a stricter schema change: which stored rows the new schema cannot hold.

SQLite enforces NOT NULL, UNIQUE and foreign keys; a type change goes through a conversion
(`schema.conversions`). Before a table is altered or rebuilt, these checks count the rows
that would break one of them and say so in a sentence naming the field and, where useful,
the first offending primary keys: "3 rows have NULL in posts.slug". Validation rules
(maxLength, pattern...) run in Alyx on write and are not checked here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from alyx_server.errors import MigrationError
from alyx_server.schema.conversions import conversion_sql, refusal_sql
from alyx_server.schema.ddl import literal_sql, quote
from alyx_server.schema.model import Collection, Field, FieldType, Index

__all__ = [
    "MAX_IDS_SHOWN",
    "collection_problems",
    "field_problems",
    "field_sources",
    "has_sql_default",
    "index_problems",
    "primary_key_column",
    "table_exists",
]

MAX_IDS_SHOWN = 5


def table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def primary_key_column(conn: sqlite3.Connection, table: str) -> str:
    """The stored table's primary key column, or `rowid` when it has none."""
    for row in conn.execute(f"PRAGMA table_info({quote(table)})"):
        if row[5]:
            return str(row[1])
    return "rowid"


def _rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n} rows"


def _have(n: int) -> str:
    return "1 row has" if n == 1 else f"{n} rows have"


def _ids(conn: sqlite3.Connection, table: str, where: str, n: int) -> str:
    pk = quote(primary_key_column(conn, table))
    sql = f"SELECT {pk} FROM {quote(table)} WHERE {where} ORDER BY {pk} LIMIT {MAX_IDS_SHOWN}"
    shown = [str(r[0]) for r in conn.execute(sql)]
    more = ", ..." if n > len(shown) else ""
    return f" (ids: {', '.join(shown)}{more})"


def _count(conn: sqlite3.Connection, table: str, where: str) -> int:
    row = conn.execute(f"SELECT COUNT(*) FROM {quote(table)} WHERE {where}").fetchone()
    return int(row[0])


def _duplicates(conn: sqlite3.Connection, table: str, exprs: Sequence[str]) -> int:
    """Rows whose (non-NULL) value tuple appears more than once; UNIQUE allows repeated NULLs."""
    cols = ", ".join(f"{e} AS v{i}" for i, e in enumerate(exprs))
    keys = ", ".join(f"v{i}" for i in range(len(exprs)))
    not_null = " AND ".join(f"v{i} IS NOT NULL" for i in range(len(exprs)))
    sql = (
        f"SELECT COALESCE(SUM(k), 0) FROM (SELECT COUNT(*) AS k FROM "
        f"(SELECT {cols} FROM {quote(table)}) WHERE {not_null} GROUP BY {keys} HAVING k > 1)"
    )
    return int(conn.execute(sql).fetchone()[0])


def has_sql_default(field: Field) -> bool:
    """True when SQLite fills the column by itself on INSERT (DEFAULT clause or rowid)."""
    if field.primary and field.type is FieldType.INT:
        return True
    default = field.default
    if default is None:
        return False
    if default.kind == "auto":
        return field.type is not FieldType.INT or field.primary
    return default.kind == "now" or default.value is not None


def field_problems(
    conn: sqlite3.Connection,
    table: str,
    label: str,
    source: Field | None,
    new: Field,
) -> list[str]:
    """Rows of `table` that field `new` (filled from column `source`) cannot hold.

    `label` names the field in messages (`posts.slug`). A check runs only when the new
    field is stricter than its source, so an unchanged field costs nothing.
    """
    if not table_exists(conn, table):
        return []
    if source is None:
        return _new_field_problems(conn, table, label, new)
    col = quote(source.name)
    value = conversion_sql(source.type, new.type, col)
    same_type = source.type == new.type
    out: list[str] = []
    refusal = refusal_sql(source.type, new.type, col)
    if refusal is not None:
        where = f"{col} IS NOT NULL AND ({refusal})"
        n = _count(conn, table, where)
        if n:
            out.append(f"{_rows(n)} in {label} cannot become {new.type}{_ids(conn, table, where, n)}")
    int_key = new.primary and new.type is FieldType.INT
    if not new.nullable and not int_key and (source.nullable or not same_type):
        n = _count(conn, table, f"{col} IS NULL")
        if n:
            out.append(f"{_have(n)} NULL in {label}")
    was_unique = (source.unique or source.primary) and same_type
    if (new.unique or new.primary) and not was_unique:
        n = _duplicates(conn, table, [value])
        if n:
            out.append(f"{_have(n)} duplicate values in {label}")
    if new.references is not None and (source.references != new.references or not same_type):
        out.extend(_missing_references(conn, table, label, new, value))
    return out


def _new_field_problems(conn: sqlite3.Connection, table: str, label: str, new: Field) -> list[str]:
    rows = _count(conn, table, "1")
    if rows == 0:
        return []
    if new.primary and new.type is FieldType.INT:
        return []
    out: list[str] = []
    if not new.nullable and not has_sql_default(new):
        out.append(f"{_have(rows)} NULL in {label} (a new field without a default)")
    default = new.default
    shared = default is not None and (
        default.kind == "now" or (default.kind == "literal" and default.value is not None)
    )
    if (new.unique or new.primary) and shared and rows > 1:
        out.append(f"{rows} rows would share the default of unique field {label}")
    literal = default is not None and default.kind == "literal" and default.value is not None
    if new.references is not None and default is not None and literal:
        value = literal_sql(new.type, default.value)
        out.extend(_missing_references(conn, table, label, new, value))
    return out


def _missing_references(
    conn: sqlite3.Connection, table: str, label: str, new: Field, value: str
) -> list[str]:
    ref = new.references
    assert ref is not None
    target = f"{ref.collection}.{ref.field}"
    if table_exists(conn, ref.collection):
        parent = f"(SELECT {quote(ref.field)} FROM {quote(ref.collection)})"
        where = f"({value}) IS NOT NULL AND ({value}) NOT IN {parent}"
    else:
        where = f"({value}) IS NOT NULL"
    n = _count(conn, table, where)
    if not n:
        return []
    return [f"{_rows(n)} in {label} reference a missing {target}{_ids(conn, table, where, n)}"]


def index_problems(
    conn: sqlite3.Connection, table: str, collection: str, index: Index, exprs: Sequence[str]
) -> list[str]:
    """Duplicate rows for a new unique declared index over `exprs` (one SQL value per field)."""
    if not index.unique or not table_exists(conn, table):
        return []
    n = _duplicates(conn, table, exprs)
    if not n:
        return []
    fields = ", ".join(index.fields)
    return [f"{_have(n)} duplicate values in {collection}({fields}) for unique index {index.name}"]


def collection_problems(
    conn: sqlite3.Connection,
    old: Collection,
    new: Collection,
    sources: Mapping[str, Field | None],
) -> list[str]:
    """Every row problem of turning stored collection `old` into `new`.

    `sources` maps each new field name to the old field its values come from (None: none).
    """
    out: list[str] = []
    for f in new.fields:
        out.extend(field_problems(conn, old.name, f"{new.name}.{f.name}", sources.get(f.name), f))
    old_indexes = set(old.indexes)
    for index in new.indexes:
        srcs = [sources.get(name) for name in index.fields]
        moved = any(s is None or s.name != name for s, name in zip(srcs, index.fields, strict=True))
        if index in old_indexes and not moved:
            continue
        exprs = [_converted(s, new.field(name)) for s, name in zip(srcs, index.fields, strict=True)]
        out.extend(index_problems(conn, old.name, new.name, index, exprs))
    return out


def _converted(source: Field | None, target: Field | None) -> str:
    """The SQL value each row will hold in `target`: converted from `source`, or, for a new
    field, its default when every row gets the same one (NULL when they differ or none)."""
    if target is None:
        return "NULL"
    if source is None:
        default = target.default
        if default is None or default.kind == "auto":
            return "NULL"
        if default.kind == "now":
            return "'now'"
        return literal_sql(target.type, default.value)
    return conversion_sql(source.type, target.type, quote(source.name))


def field_sources(
    old: Collection, new: Collection, column_map: Mapping[str, str | None] | None = None
) -> dict[str, Field | None]:
    """Where each field of `new` takes its values from in `old`.

    `column_map` maps a new field name to an old column name, or None for "no source";
    an unmapped field takes the old field of the same name, if there is one.
    """
    column_map = column_map or {}
    unknown = sorted(set(column_map) - set(new.field_names))
    if unknown:
        raise MigrationError(f"column map for {new.name} names unknown new fields: {', '.join(unknown)}")
    out: dict[str, Field | None] = {}
    for f in new.fields:
        source_name = column_map.get(f.name, f.name)
        source = old.field(source_name) if source_name is not None else None
        if source is None and f.name in column_map and source_name is not None:
            raise MigrationError(
                f"column map for {new.name}.{f.name} names {old.name}.{source_name}, which does not exist"
            )
        out[f.name] = source
    return out
