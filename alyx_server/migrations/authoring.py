"""`alyx migrate create <name>`: a new migration file, pre-filled with what schema.yaml needs.

The file gets the next free version and the destructive operations found between the
latest snapshot (after any pending files) and schema.yaml: `drop_field`,
`drop_collection`, `change_type` (or `alter_field` for a stricter constraint), `add_field`
for a required field without default, `add_index` for a new unique index. When a dropped
field and an added field of one collection share a type, a comment suggests that it may
be a rename, which would keep the data. With nothing destructive the file has no
operations and a commented `sql` example.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import yaml

from alyx_server.errors import MigrationError
from alyx_server.migrations.files import MAX_VERSION, MIGRATION_NAME
from alyx_server.migrations.operations import (
    AddField,
    AddIndex,
    AlterField,
    ChangeType,
    DropCollection,
    DropField,
    DropIndex,
    Operation,
    changed_type,
)
from alyx_server.migrations.runner import plan_migrations
from alyx_server.migrations.syntax import to_yaml
from alyx_server.schema.diff import Change, SchemaDiff
from alyx_server.schema.model import Collection, Field, Index, Schema

__all__ = ["create_migration", "prefilled_operations"]

_SQL_EXAMPLE = """\
# Example: data changes run in the migration's transaction; `down` is used by rollback.
#   - sql:
#       up: "UPDATE posts SET title = trim(title)"
#       down: "SELECT 1"
"""

Prefill = list[tuple[list[str], Operation]]  # (comment lines, operation)


def _rename_hint(change: Change, diff: SchemaDiff) -> list[str]:
    old = change.old
    assert isinstance(old, Field)
    c = change.collection
    for other in diff.changes:
        new = other.new
        added_here = other.kind == "add_field" and other.collection == c
        if added_here and isinstance(new, Field) and new.type == old.type:
            return [
                f"{c}.{old.name} may have been renamed to {c}.{new.name} (same type): to keep",
                "its data, replace the drop_field below with",
                f"  - rename_field: {{ collection: {c}, from: {old.name}, to: {new.name} }}",
            ]
    return []


def _altered(change: Change) -> Operation:
    old, new = change.old, change.new
    assert isinstance(old, Field) and isinstance(new, Field)
    if old.type != new.type and changed_type(old, new.type) == new:
        return ChangeType(change.collection, old.name, new.type)
    return AlterField(change.collection, new)


def _prefill_one(change: Change, diff: SchemaDiff) -> Prefill:
    c = change.collection
    if change.kind == "drop_collection":
        return [([], DropCollection(c))]
    if change.kind == "drop_field" and change.name is not None:
        return [(_rename_hint(change, diff), DropField(c, change.name))]
    if change.kind == "alter_field":
        return [([], _altered(change))]
    if change.kind == "add_field" and isinstance(change.new, Field):
        hint = [
            f"existing rows need a value for {c}.{change.new.name}: add `using: <SQL expression>`",
            "(e.g. using: \"'draft'\") unless the table is empty",
        ]
        return [(hint, AddField(c, change.new))]
    if change.kind == "add_index" and isinstance(change.new, Index):
        old_collection = diff.old.get(c)
        out: Prefill = []
        if isinstance(old_collection, Collection) and any(
            i.name == change.new.name for i in old_collection.indexes
        ):
            out.append(([], DropIndex(c, change.new.name)))
        return [*out, ([], AddIndex(c, change.new))]
    return []


def prefilled_operations(diff: SchemaDiff) -> Prefill:
    """The operations (with comment lines) a file needs for the destructive part of `diff`."""
    return [item for change in diff.destructive for item in _prefill_one(change, diff)]


def _flow(value: dict[str, Any]) -> str:
    """One operation's arguments as a one-line `{key: value}` mapping."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000, allow_unicode=True)
    return str(text).strip()


def _header(version: int, name: str, description: str) -> list[str]:
    """The `version`, `name` and `description` lines, quoted where YAML needs it.

    Dumped as one mapping: a plain scalar dumped alone ends with YAML's end-of-document
    marker `...`, which made the rest of the file a second document the loader refuses;
    a name such as `null` or `123` must also stay a string.
    """
    top = {"version": version, "name": name, "description": description}
    text = yaml.safe_dump(top, sort_keys=False, width=10_000, allow_unicode=True)
    return str(text).splitlines()


def _render(version: int, name: str, description: str, prefill: Prefill) -> str:
    lines = _header(version, name, description)
    if not prefill:
        return "\n".join([*lines, "operations: []", _SQL_EXAMPLE])
    lines.append("operations:")
    for comments, op in prefill:
        lines.extend(f"  # {line}" for line in comments)
        ((kind, body),) = to_yaml(op).items()
        lines.append(f"  - {kind}: {_flow(body)}")
    return "\n".join(lines) + "\n"


def create_migration(conn: sqlite3.Connection, schema: Schema, migrations_dir: Path, name: str) -> Path:
    """Write `migrations/NNN_<name>.yaml` for the destructive changes of `schema`; its path."""
    if not MIGRATION_NAME.match(name):
        raise MigrationError(f"migration name {name!r} must use only a-z, 0-9 and _ (e.g. drop_slug)")
    plan = plan_migrations(conn, schema, migrations_dir)
    prefill = prefilled_operations(plan.auto)
    if plan.auto.destructive:
        description = "schema.yaml changes: " + "; ".join(c.reason for c in plan.auto.destructive)
    else:
        description = "Describe what this migration does."
    if plan.next_version > MAX_VERSION:
        raise MigrationError(
            f"the next migration version would be {plan.next_version}, above {MAX_VERSION}: "
            f"renumber the files in {migrations_dir.name}/ from 1 before creating another"
        )
    path = migrations_dir / f"{plan.next_version:03d}_{name}.yaml"
    migrations_dir.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(_render(plan.next_version, name, description, prefill))
    except FileExistsError as e:
        raise MigrationError(f"{migrations_dir.name}/{path.name} already exists") from e
    return path
