"""The operations of a migration file as values, and what each does to a schema snapshot.

Each operation has two pure sides, none touching a database:

- `transform(schema, op)`: the snapshot after the operation (renames follow references
  and declared indexes; a dropped field leaves the indexes that named it);
- `inverse(schema, op)`: the operations that undo it, computed from the snapshot before,
  so `drop_field` / `drop_collection` are undone by recreating the structure (not the data).

`syntax.py` writes them in file syntax; `execute.py` performs them on a connection.
Beside the operations of SPEC §5 there are `alter_field` (a stricter constraint: NOT NULL,
unique, a reference, which no other operation can express), `add_index` / `drop_index`
(a new unique index is stricter too) and `create_collection` (the undo of
`drop_collection`; new collections otherwise come from schema.yaml automatically).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from alyx_server.schema.model import (
    Collection,
    Default,
    Field,
    FieldType,
    Index,
    Schema,
    Validation,
)
from alyx_server.schema.system_tables import USERS_TABLE

__all__ = [
    "AddField",
    "AddIndex",
    "AlterField",
    "ChangeType",
    "CreateCollection",
    "DropCollection",
    "DropField",
    "DropIndex",
    "Operation",
    "OperationRefused",
    "RenameCollection",
    "RenameField",
    "Sql",
    "changed_type",
    "inverse",
    "resolve",
    "transform",
]


class OperationRefused(Exception):
    """An operation that does not fit the snapshot it is applied to (callers add where)."""


@dataclass(frozen=True, slots=True)
class AddField:
    collection: str
    field: Field
    using: str | None = None
    kind: ClassVar[str] = "add_field"


@dataclass(frozen=True, slots=True)
class DropField:
    collection: str
    field: str
    kind: ClassVar[str] = "drop_field"


@dataclass(frozen=True, slots=True)
class RenameField:
    collection: str
    old: str
    new: str
    kind: ClassVar[str] = "rename_field"


@dataclass(frozen=True, slots=True)
class ChangeType:
    collection: str
    field: str
    type: FieldType
    using: str | None = None
    kind: ClassVar[str] = "change_type"


@dataclass(frozen=True, slots=True)
class AlterField:
    collection: str
    field: Field
    using: str | None = None
    kind: ClassVar[str] = "alter_field"


@dataclass(frozen=True, slots=True)
class CreateCollection:
    collection: Collection
    kind: ClassVar[str] = "create_collection"


@dataclass(frozen=True, slots=True)
class DropCollection:
    collection: str
    kind: ClassVar[str] = "drop_collection"


@dataclass(frozen=True, slots=True)
class RenameCollection:
    old: str
    new: str
    kind: ClassVar[str] = "rename_collection"


@dataclass(frozen=True, slots=True)
class AddIndex:
    collection: str
    index: Index
    kind: ClassVar[str] = "add_index"


@dataclass(frozen=True, slots=True)
class DropIndex:
    collection: str
    name: str
    kind: ClassVar[str] = "drop_index"


@dataclass(frozen=True, slots=True)
class Sql:
    up: str
    down: str | None = None
    kind: ClassVar[str] = "sql"


Operation: TypeAlias = (
    AddField
    | DropField
    | RenameField
    | ChangeType
    | AlterField
    | CreateCollection
    | DropCollection
    | RenameCollection
    | AddIndex
    | DropIndex
    | Sql
)


# -- change_type ---------------------------------------------------------------------------
_TEXTUAL = (FieldType.STRING, FieldType.TEXT)
_NUMERIC = (FieldType.INT, FieldType.FLOAT)


def _kept_default(default: Default | None, new_type: FieldType) -> Default | None:
    if default is None:
        return None
    if default.kind == "auto":
        return default if new_type in (FieldType.UUID, FieldType.INT) else None
    if default.kind == "now":
        return default if new_type is FieldType.TIMESTAMP else None
    value = default.value
    try:
        if new_type in _TEXTUAL:
            return Default("literal", value if isinstance(value, str) else str(value))
        if new_type is FieldType.INT and not isinstance(value, bool):
            return Default("literal", int(value)) if int(value) == float(value) else None
        if new_type is FieldType.FLOAT and not isinstance(value, bool):
            return Default("literal", float(value))
    except (TypeError, ValueError):
        return None
    return None


def changed_type(field: Field, new_type: FieldType) -> Field:
    """`field` with another type, keeping the options that still make sense for it."""
    v = field.validation
    textual, numeric = new_type in _TEXTUAL, new_type in _NUMERIC
    enum_fits = v.enum is not None and all(
        isinstance(x, str) if textual else isinstance(x, int | float) and not isinstance(x, bool)
        for x in v.enum
    )
    validation = Validation(
        min_length=v.min_length if textual else None,
        max_length=v.max_length if textual else None,
        min=v.min if numeric else None,
        max=v.max if numeric else None,
        pattern=v.pattern if textual else None,
        enum=v.enum if (textual or numeric) and enum_fits else None,
        format=v.format if textual else None,
    )
    return dataclasses.replace(
        field,
        type=new_type,
        default=_kept_default(field.default, new_type),
        on_update_now=field.on_update_now and new_type is FieldType.TIMESTAMP,
        validation=validation,
    )


# -- transform -----------------------------------------------------------------------------
def _collection(schema: Schema, name: str) -> Collection:
    found = schema.get(name)
    if found is None:
        known = ", ".join(schema.names) or "none"
        raise OperationRefused(f"collection {name!r} does not exist (collections: {known})")
    return found


def _existing_field(collection: Collection, name: str) -> Field:
    found = collection.field(name)
    if found is None:
        known = ", ".join(collection.field_names)
        raise OperationRefused(f"{collection.name}.{name} does not exist (fields: {known})")
    return found


def _referrers(schema: Schema, collection: str, field: str | None = None) -> list[str]:
    """`other.field` of every field referencing `collection` (or `collection.field`)."""
    return [
        f"{c.name}.{f.name}"
        for c in schema
        for f in c.fields
        if f.references is not None
        and f.references.collection == collection
        and (field is None or f.references.field == field)
        and not (c.name == collection and f.references.field == f.name)
    ]


def _replace(schema: Schema, old_name: str, new: Collection | None) -> Schema:
    out = (
        [c for c in schema if c.name != old_name]
        if new is None
        else [new if c.name == old_name else c for c in schema]
    )
    return dataclasses.replace(schema, collections=tuple(out))


def _with_fields(collection: Collection, fields: list[Field]) -> Collection:
    return dataclasses.replace(collection, fields=tuple(fields))


def _retarget(schema: Schema, old: tuple[str, str], new: tuple[str, str]) -> Schema:
    """Point every reference to `old` (collection, field) at `new`."""
    collections = []
    for c in schema:
        fields = []
        for f in c.fields:
            ref = f.references
            if ref is not None and (ref.collection, ref.field) == old:
                ref = dataclasses.replace(ref, collection=new[0], field=new[1])
                f = dataclasses.replace(f, references=ref)
            fields.append(f)
        collections.append(_with_fields(c, fields))
    return dataclasses.replace(schema, collections=tuple(collections))


def _check_reference(schema: Schema, c: Collection, field: Field) -> None:
    ref = field.references
    if ref is None or (ref.collection, ref.field) == (USERS_TABLE, "id"):
        return
    target = c if ref.collection == c.name else schema.get(ref.collection)
    if target is None or target.field(ref.field) is None:
        raise OperationRefused(
            f"{c.name}.{field.name} references {ref.collection}.{ref.field}, which does not exist"
        )


def _add_field(schema: Schema, op: AddField) -> Schema:
    c = _collection(schema, op.collection)
    _check_reference(schema, c, op.field)
    if c.field(op.field.name) is not None:
        raise OperationRefused(f"{c.name}.{op.field.name} already exists")
    if op.field.primary:
        raise OperationRefused("a collection has exactly one primary field; it cannot be added")
    return _replace(schema, c.name, _with_fields(c, [*c.fields, op.field]))


def _drop_field(schema: Schema, op: DropField) -> Schema:
    c = _collection(schema, op.collection)
    if _existing_field(c, op.field).primary:
        raise OperationRefused(f"{c.name}.{op.field} is the primary field; it cannot be dropped")
    users = _referrers(schema, c.name, op.field)
    if users:
        raise OperationRefused(
            f"{', '.join(users)} references {c.name}.{op.field}: drop or change that field first"
        )
    indexes = tuple(i for i in c.indexes if op.field not in i.fields)
    kept = _with_fields(c, [f for f in c.fields if f.name != op.field])
    return _replace(schema, c.name, dataclasses.replace(kept, indexes=indexes))


def _rename_index_field(index: Index, old: str, new: str) -> Index:
    return dataclasses.replace(index, fields=tuple(new if f == old else f for f in index.fields))


def _rename_field(schema: Schema, op: RenameField) -> Schema:
    c = _collection(schema, op.collection)
    _existing_field(c, op.old)
    if c.field(op.new) is not None:
        raise OperationRefused(f"{c.name}.{op.new} already exists")
    fields = [dataclasses.replace(f, name=op.new) if f.name == op.old else f for f in c.fields]
    indexes = tuple(_rename_index_field(i, op.old, op.new) for i in c.indexes)
    renamed = dataclasses.replace(_with_fields(c, fields), indexes=indexes)
    return _retarget(_replace(schema, c.name, renamed), (c.name, op.old), (c.name, op.new))


def _alter_field(schema: Schema, op: AlterField) -> Schema:
    c = _collection(schema, op.collection)
    old = _existing_field(c, op.field.name)
    if old.primary != op.field.primary:
        raise OperationRefused(f"alter_field cannot change which field of {c.name} is primary")
    if old.primary and old.type != op.field.type:
        raise OperationRefused(f"{c.name}.{old.name} is the primary field; its type cannot change")
    _check_reference(schema, c, op.field)
    fields = [op.field if f.name == old.name else f for f in c.fields]
    return _replace(schema, c.name, _with_fields(c, fields))


def _change_type(schema: Schema, op: ChangeType) -> tuple[Schema, AlterField]:
    c = _collection(schema, op.collection)
    old = _existing_field(c, op.field)
    if old.type == op.type and op.using is None:
        raise OperationRefused(f"{c.name}.{op.field} already has type {op.type.value}")
    alter = AlterField(c.name, changed_type(old, op.type), op.using)
    return _alter_field(schema, alter), alter


def _create_collection(schema: Schema, op: CreateCollection) -> Schema:
    if op.collection.name in schema:
        raise OperationRefused(f"collection {op.collection.name!r} already exists")
    return dataclasses.replace(schema, collections=(*schema.collections, op.collection))


def _drop_collection(schema: Schema, op: DropCollection) -> Schema:
    c = _collection(schema, op.collection)
    users = _referrers(schema, c.name)
    if users:
        raise OperationRefused(f"{', '.join(users)} references {c.name}: drop or change that field first")
    return _replace(schema, c.name, None)


def _rename_collection(schema: Schema, op: RenameCollection) -> Schema:
    c = _collection(schema, op.old)
    if op.new in schema:
        raise OperationRefused(f"collection {op.new!r} already exists")
    out = _replace(schema, c.name, dataclasses.replace(c, name=op.new))
    for f in c.fields:
        out = _retarget(out, (c.name, f.name), (op.new, f.name))
    return out


def _add_index(schema: Schema, op: AddIndex) -> Schema:
    c = _collection(schema, op.collection)
    taken = {i.name for other in schema for i in other.indexes}
    if op.index.name in taken:
        raise OperationRefused(f"an index named {op.index.name!r} already exists")
    for name in op.index.fields:
        _existing_field(c, name)
    return _replace(schema, c.name, dataclasses.replace(c, indexes=(*c.indexes, op.index)))


def _existing_index(c: Collection, name: str) -> Index:
    for index in c.indexes:
        if index.name == name:
            return index
    known = ", ".join(i.name for i in c.indexes) or "none"
    raise OperationRefused(f"{c.name} has no index {name!r} (indexes: {known})")


def _drop_index(schema: Schema, op: DropIndex) -> Schema:
    c = _collection(schema, op.collection)
    _existing_index(c, op.name)
    indexes = tuple(i for i in c.indexes if i.name != op.name)
    return _replace(schema, c.name, dataclasses.replace(c, indexes=indexes))


def resolve(schema: Schema, op: Operation) -> Operation:
    """The operation as it executes: `change_type` becomes the `alter_field` it implies."""
    return _change_type(schema, op)[1] if isinstance(op, ChangeType) else op


def transform(schema: Schema, op: Operation) -> Schema:
    """The snapshot after `op`; raises OperationRefused when `op` does not fit `schema`."""
    if isinstance(op, AddField):
        return _add_field(schema, op)
    if isinstance(op, DropField):
        return _drop_field(schema, op)
    if isinstance(op, RenameField):
        return _rename_field(schema, op)
    if isinstance(op, ChangeType):
        return _change_type(schema, op)[0]
    if isinstance(op, AlterField):
        return _alter_field(schema, op)
    if isinstance(op, CreateCollection):
        return _create_collection(schema, op)
    if isinstance(op, DropCollection):
        return _drop_collection(schema, op)
    if isinstance(op, RenameCollection):
        return _rename_collection(schema, op)
    if isinstance(op, AddIndex):
        return _add_index(schema, op)
    if isinstance(op, DropIndex):
        return _drop_index(schema, op)
    return schema  # sql: the snapshot describes collections, which sql must not restructure


# -- inverse -------------------------------------------------------------------------------
_FILLERS: dict[FieldType, str] = {
    FieldType.INT: "0",
    FieldType.FLOAT: "0.0",
    FieldType.BOOL: "0",
    FieldType.JSON: "'null'",
    FieldType.BLOB: "X''",
}


def _refill(field: Field) -> str | None:
    """What a recreated NOT NULL field without default holds in existing rows."""
    if field.nullable or field.default is not None:
        return None
    return _FILLERS.get(field.type, "''")


def inverse(schema: Schema, op: Operation) -> list[Operation] | None:
    """Operations undoing `op` applied to `schema`; None for `sql` without `down`."""
    if isinstance(op, AddField):
        return [DropField(op.collection, op.field.name)]
    if isinstance(op, DropField):
        old = _existing_field(_collection(schema, op.collection), op.field)
        return [AddField(op.collection, old, _refill(old))]
    if isinstance(op, RenameField):
        return [RenameField(op.collection, op.new, op.old)]
    if isinstance(op, ChangeType | AlterField):
        name = op.field if isinstance(op, ChangeType) else op.field.name
        old = _existing_field(_collection(schema, op.collection), name)
        return [AlterField(op.collection, old)]
    if isinstance(op, CreateCollection):
        return [DropCollection(op.collection.name)]
    if isinstance(op, DropCollection):
        return [CreateCollection(_collection(schema, op.collection))]
    if isinstance(op, RenameCollection):
        return [RenameCollection(op.new, op.old)]
    if isinstance(op, AddIndex):
        return [DropIndex(op.collection, op.index.name)]
    if isinstance(op, DropIndex):
        index = _existing_index(_collection(schema, op.collection), op.name)
        return [AddIndex(op.collection, index)]
    return None if op.down is None else [Sql(op.down, op.up)]
