"""Performing one operation on the stored tables, inside the caller's transaction.

Every structural operation is turned into a schema diff between the snapshot before and
after it, applied by `schema.transition.apply_diff` (which checks the rows first and
rebuilds a table only when ALTER TABLE cannot do the change). Three need more:

- `rename_field` gives the rebuild a column map, so the renamed column keeps its data;
- `rename_collection` renames the table in place (`ALTER TABLE ... RENAME`);
- a `using:` expression is evaluated into a staging column `_alyx_using` first, which
  the rebuild then copies into the field, checked and converted like any other value.

The collection an operation names is changed first; other collections whose definition
follows along (a reference to a renamed field) are rebuilt in a second pass, when the
column they point at exists.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping

from alyx_server.db.constraints import ConstraintViolation, map_integrity_errors
from alyx_server.errors import MigrationError
from alyx_server.migrations.operations import (
    AddField,
    AlterField,
    Operation,
    RenameCollection,
    RenameField,
    Sql,
    resolve,
    transform,
)
from alyx_server.migrations.sql_script import split_statements
from alyx_server.schema.ddl import drop_triggers_sql, quote
from alyx_server.schema.diff import diff_schemas
from alyx_server.schema.model import Collection, Field, FieldType, Schema
from alyx_server.schema.transition import apply_diff, rename_collection

__all__ = ["USING_COLUMN", "run_operation", "run_sql", "transition_to"]

USING_COLUMN = "_alyx_using"

_ColumnMaps = Mapping[str, Mapping[str, str | None]]


def run_sql(conn: sqlite3.Connection, script: str) -> None:
    """Run the statements of an `sql` operation one by one (never `executescript`)."""
    for statement in split_statements(script):
        conn.execute(statement)


def transition_to(
    conn: sqlite3.Connection, old: Schema, new: Schema, column_maps: _ColumnMaps | None = None
) -> None:
    """Make the stored tables of `old` those of `new`, destructive changes included."""
    diff = diff_schemas(old, new)
    if diff or column_maps:
        with map_integrity_errors(_refused):
            apply_diff(conn, diff, allow_destructive=True, column_maps=column_maps)


def _refused(violation: ConstraintViolation) -> MigrationError:
    """A constraint the row checks did not foresee still refuses the change, with SQLite's words."""
    return MigrationError(f"schema change refused: {violation.message}")


def _subject(op: Operation) -> str:
    if isinstance(op, RenameCollection):
        return op.new
    if isinstance(op, Sql):
        return ""
    name = op.collection
    return name if isinstance(name, str) else name.name


def _with(schema: Schema, name: str, collection: Collection | None) -> Schema:
    """`schema` with collection `name` replaced (None removes, a new name appends)."""
    out = [c for c in schema if c.name != name]
    if collection is not None:
        placed = [collection if c.name == name else c for c in schema]
        out = placed if name in schema else [*out, collection]
    return dataclasses.replace(schema, collections=tuple(out))


def _stage_using(conn: sqlite3.Connection, before: Schema, op: AddField | AlterField) -> Schema:
    """Evaluate `using` into the staging column; the snapshot gains it as a text field.

    Values go through TEXT, so the rebuild's text-to-type conversion checks each one and
    names the rows that do not fit. Triggers are dropped first, so the UPDATE neither logs
    changes nor touches `onUpdate` fields; the rebuild recreates them.
    """
    collection = before.get(op.collection)
    assert collection is not None and op.using is not None
    table = quote(collection.name)
    for sql in drop_triggers_sql(collection):
        conn.execute(sql)
    conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote(USING_COLUMN)} TEXT")
    try:
        conn.execute(f"UPDATE {table} SET {quote(USING_COLUMN)} = ({op.using})")
    except sqlite3.Error as e:
        raise MigrationError(f"using: {op.using!r} failed: {e}") from e
    staging = Field(USING_COLUMN, FieldType.TEXT, nullable=True)
    if op.field.type is FieldType.BLOB:
        staging = dataclasses.replace(staging, type=FieldType.BLOB)
    staged = dataclasses.replace(collection, fields=(*collection.fields, staging))
    return _with(before, collection.name, staged)


def run_operation(conn: sqlite3.Connection, before: Schema, op: Operation) -> Schema:
    """Perform `op` on the stored tables of snapshot `before`; returns the snapshot after.

    Raises OperationRefused (from the snapshot side), MigrationError (rows that cannot be
    kept) or sqlite3.Error; the caller rolls the transaction back.
    """
    after = transform(before, op)
    if isinstance(op, Sql):
        run_sql(conn, op.up)
        return after
    op = resolve(before, op)
    start = before
    maps: dict[str, dict[str, str | None]] = {}
    subject = _subject(op)
    if isinstance(op, RenameCollection):
        old = before.get(op.old)
        assert old is not None
        renamed = rename_collection(conn, old, op.new)
        start = dataclasses.replace(
            before, collections=tuple(renamed if c.name == op.old else c for c in before)
        )
    elif isinstance(op, RenameField):
        maps = {subject: {op.new: op.old}}
    elif isinstance(op, AddField | AlterField) and op.using is not None:
        start = _stage_using(conn, before, op)
        maps = {subject: {op.field.name: USING_COLUMN}}
    middle = _with(start, subject, after.get(subject))
    transition_to(conn, start, middle, maps)
    transition_to(conn, middle, after)
    return after
