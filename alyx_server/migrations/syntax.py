"""Operations in migration-file syntax: `{kind: {arguments}}` as plain data.

`to_yaml` writes an operation the way a user writes it; the history stores the `down`
side of every applied file in this form, and `alyx migrate create` pre-fills new files
with it. `from_yaml` reads back what Alyx itself stored (user files go through
`files.py`, which checks every key and names the line of each mistake).
"""

from __future__ import annotations

from typing import Any

from alyx_server.migrations.operations import (
    AddField,
    AddIndex,
    AlterField,
    ChangeType,
    CreateCollection,
    DropCollection,
    DropField,
    DropIndex,
    Operation,
    RenameCollection,
    RenameField,
    Sql,
)
from alyx_server.schema.model import Collection, Field, FieldType, Index, Schema

__all__ = ["collection_definition", "field_definition", "from_yaml", "to_yaml"]


def field_definition(field: Field) -> dict[str, Any]:
    """A field in schema.yaml syntax (`{type: string, nullable: true}`), via the snapshot form."""
    probe = Schema((Collection("probe", (field,)),))
    definition: dict[str, Any] = probe.to_dict()["collections"]["probe"]["fields"][field.name]
    return definition


def collection_definition(collection: Collection) -> dict[str, Any]:
    body: dict[str, Any] = Schema((collection,)).to_dict()["collections"][collection.name]
    return body


def to_yaml(op: Operation) -> dict[str, Any]:
    """`{kind: {arguments}}`, the way the operation is written in a migration file."""
    body: dict[str, Any]
    if isinstance(op, AddField | AlterField):
        body = {"collection": op.collection, "field": op.field.name}
        body["definition"] = field_definition(op.field)
        if op.using is not None:
            body["using"] = op.using
    elif isinstance(op, DropField):
        body = {"collection": op.collection, "field": op.field}
    elif isinstance(op, RenameField):
        body = {"collection": op.collection, "from": op.old, "to": op.new}
    elif isinstance(op, ChangeType):
        body = {"collection": op.collection, "field": op.field, "type": op.type.value}
        if op.using is not None:
            body["using"] = op.using
    elif isinstance(op, CreateCollection):
        body = {"collection": op.collection.name}
        body["definition"] = collection_definition(op.collection)
    elif isinstance(op, DropCollection):
        body = {"collection": op.collection}
    elif isinstance(op, RenameCollection):
        body = {"from": op.old, "to": op.new}
    elif isinstance(op, AddIndex):
        body = {"collection": op.collection, "name": op.index.name, "fields": list(op.index.fields)}
        if op.index.unique:
            body["unique"] = True
        if op.index.order != "asc":
            body["order"] = op.index.order
    elif isinstance(op, DropIndex):
        body = {"collection": op.collection, "name": op.name}
    else:
        body = {"up": op.up} if op.down is None else {"up": op.up, "down": op.down}
    return {op.kind: body}


def from_yaml(item: dict[str, Any]) -> Operation:
    """Rebuild an operation from `to_yaml` output stored by Alyx itself (not a user's file)."""
    ((kind, body),) = item.items()
    if kind in ("add_field", "alter_field"):
        probe = {"probe": {"fields": {body["field"]: body["definition"]}}}
        field = Schema.from_dict({"collections": probe}).collections[0].fields[0]
        cls = AddField if kind == "add_field" else AlterField
        return cls(body["collection"], field, body.get("using"))
    if kind == "drop_field":
        return DropField(body["collection"], body["field"])
    if kind == "rename_field":
        return RenameField(body["collection"], body["from"], body["to"])
    if kind == "change_type":
        new_type = FieldType(body["type"])
        return ChangeType(body["collection"], body["field"], new_type, body.get("using"))
    if kind == "create_collection":
        probe = {body["collection"]: body["definition"]}
        return CreateCollection(Schema.from_dict({"collections": probe}).collections[0])
    if kind == "drop_collection":
        return DropCollection(body["collection"])
    if kind == "rename_collection":
        return RenameCollection(body["from"], body["to"])
    if kind == "add_index":
        index = Index(body["name"], tuple(body["fields"]), bool(body.get("unique")), body.get("order", "asc"))
        return AddIndex(body["collection"], index)
    if kind == "drop_index":
        return DropIndex(body["collection"], body["name"])
    if kind == "sql":
        return Sql(body["up"], body.get("down"))
    raise ValueError(f"unknown operation {kind!r}")
