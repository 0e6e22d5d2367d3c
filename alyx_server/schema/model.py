"""The schema model: what schema.yaml describes, as immutable values.

The loader (`schema.loader`) builds these from YAML with source locations; the DDL
generator, the differ, the database layer, rules and codegen all read them. A `Schema`
round-trips through `to_dict()` / `Schema.from_dict()`, which is the snapshot stored in
`_alyx_migrations.schema`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from alyx_server.errors import Location
from alyx_server.schema.system_tables import USERS_TABLE

__all__ = [
    "ACTIONS",
    "SQL_TYPES",
    "USERS_TABLE",
    "Collection",
    "Default",
    "Field",
    "FieldType",
    "FileOptions",
    "Index",
    "Reference",
    "Rules",
    "Schema",
    "Validation",
]

ACTIONS = ("create", "read", "update", "delete")


class FieldType(StrEnum):
    UUID = "uuid"
    STRING = "string"
    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TIMESTAMP = "timestamp"
    JSON = "json"
    BLOB = "blob"
    FILE = "file"


# SPEC §4: how each type is stored in SQLite.
SQL_TYPES: Mapping[FieldType, str] = {
    FieldType.UUID: "TEXT",
    FieldType.STRING: "TEXT",
    FieldType.TEXT: "TEXT",
    FieldType.INT: "INTEGER",
    FieldType.FLOAT: "REAL",
    FieldType.BOOL: "INTEGER",
    FieldType.TIMESTAMP: "TEXT",
    FieldType.JSON: "TEXT",
    FieldType.BLOB: "BLOB",
    # The metadata of the stored file(s) as JSON (storage/files.py); the bytes live in storage.
    FieldType.FILE: "TEXT",
}


@dataclass(frozen=True, slots=True)
class Default:
    """A field default: `auto` (generated id), `now` (current timestamp) or a literal."""

    kind: Literal["auto", "now", "literal"]
    value: Any = None

    def to_yaml(self) -> Any:
        return self.kind if self.kind != "literal" else self.value


@dataclass(frozen=True, slots=True)
class Reference:
    """A foreign key: `references: <collection>.<field>` with its `onDelete` action."""

    collection: str
    field: str
    on_delete: Literal["restrict", "cascade", "set null"] = "restrict"


@dataclass(frozen=True, slots=True)
class Validation:
    """Checks Alyx runs before a write (SQLite enforces only NOT NULL, UNIQUE and FKs)."""

    min_length: int | None = None
    max_length: int | None = None
    min: float | int | None = None
    max: float | int | None = None
    pattern: str | None = None
    enum: tuple[Any, ...] | None = None
    format: Literal["email", "url", "uuid"] | None = None

    def is_empty(self) -> bool:
        return self == Validation()


@dataclass(frozen=True, slots=True)
class FileOptions:
    """The options of a `file` field (schema/file_options.py reads them).

    `max_files` 1 is a single file (the column holds one metadata object), more a list;
    `max_size` in bytes (None: `storage.max_file_size` only); `mime_types` the content types
    allowed, as sniffed from the bytes (`image/*` patterns allowed; empty: any);
    `protected` downloads need a file token; `thumbs` the `WxH` sizes (with an optional
    `f` suffix for fit instead of crop) thumbnails may be asked in.
    """

    max_files: int = 1
    max_size: int | None = None
    mime_types: tuple[str, ...] = ()
    protected: bool = False
    thumbs: tuple[str, ...] = ()

    @property
    def multiple(self) -> bool:
        return self.max_files > 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_files != 1:
            out["maxFiles"] = self.max_files
        if self.max_size is not None:
            out["maxSize"] = self.max_size
        if self.mime_types:
            out["mimeTypes"] = list(self.mime_types)
        if self.protected:
            out["protected"] = True
        if self.thumbs:
            out["thumbs"] = list(self.thumbs)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FileOptions:
        return cls(
            max_files=int(d.get("maxFiles", 1)),
            max_size=d.get("maxSize"),
            mime_types=tuple(d.get("mimeTypes") or ()),
            protected=bool(d.get("protected", False)),
            thumbs=tuple(d.get("thumbs") or ()),
        )


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: FieldType
    primary: bool = False
    unique: bool = False
    nullable: bool = False
    index: bool = False
    default: Default | None = None
    references: Reference | None = None
    on_update_now: bool = False
    internal: bool = False
    client_writable: bool = False
    validation: Validation = field(default_factory=Validation)
    file: FileOptions | None = None
    """The options of a `file` field; None for every other type."""
    location: Location | None = field(default=None, compare=False, repr=False)

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]

    @property
    def required_on_create(self) -> bool:
        """SPEC §4: a non-nullable field without a default must be given on create."""
        return not self.nullable and self.default is None

    @property
    def server_sets(self) -> bool:
        """A timestamp the server sets (`default: now` or `onUpdate: now`)."""
        return self.on_update_now or (self.default is not None and self.default.kind == "now")

    @property
    def server_managed(self) -> bool:
        """A timestamp the server sets (`server_sets`): clients may not write it, unless
        the schema marks it `clientWritable: true`."""
        return self.server_sets and not self.client_writable


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    fields: tuple[str, ...]
    unique: bool = False
    order: Literal["asc", "desc"] = "asc"
    location: Location | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Rules:
    """CEL source text per action; None means no rule (admins only)."""

    create: str | None = None
    read: str | None = None
    update: str | None = None
    delete: str | None = None

    def get(self, action: str) -> str | None:
        if action not in ACTIONS:
            raise KeyError(action)
        value: str | None = getattr(self, action)
        return value


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    fields: tuple[Field, ...]
    indexes: tuple[Index, ...] = ()
    rules: Rules = field(default_factory=Rules)
    location: Location | None = field(default=None, compare=False, repr=False)
    # Where each rule was written (action -> location), for rule compile errors.
    rule_locations: Mapping[str, Location] = field(default_factory=dict, compare=False, repr=False)

    @property
    def primary(self) -> Field:
        for f in self.fields:
            if f.primary:
                return f
        raise LookupError(f"collection {self.name!r} has no primary field")

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True, slots=True)
class Schema:
    collections: tuple[Collection, ...] = ()
    version: int = 1
    source: str | None = field(default=None, compare=False, repr=False)

    def __iter__(self) -> Iterator[Collection]:
        return iter(self.collections)

    def get(self, name: str) -> Collection | None:
        for c in self.collections:
            if c.name == name:
                return c
        return None

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.collections)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.collections)

    # -- snapshots -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The canonical, JSON-able form (schema.yaml syntax), used for snapshots."""
        return {
            "version": self.version,
            "collections": {c.name: _collection_to_dict(c) for c in self.collections},
        }

    def checksum(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        """Rebuild a schema from `to_dict()` output (trusted: no validation here)."""
        return cls(
            version=int(data.get("version", 1)),
            collections=tuple(
                _collection_from_dict(name, body) for name, body in (data.get("collections") or {}).items()
            ),
        )


def _validation_to_dict(v: Validation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, attr in (
        ("minLength", v.min_length),
        ("maxLength", v.max_length),
        ("min", v.min),
        ("max", v.max),
        ("pattern", v.pattern),
        ("format", v.format),
    ):
        if attr is not None:
            out[key] = attr
    if v.enum is not None:
        out["enum"] = list(v.enum)
    return out


def _field_to_dict(f: Field) -> dict[str, Any]:
    out: dict[str, Any] = {"type": f.type.value}
    for key in ("primary", "unique", "nullable", "index", "internal"):
        if getattr(f, key):
            out[key] = True
    if f.default is not None:
        out["default"] = f.default.to_yaml()
    if f.references is not None:
        out["references"] = f"{f.references.collection}.{f.references.field}"
        out["onDelete"] = f.references.on_delete
    if f.on_update_now:
        out["onUpdate"] = "now"
    if f.client_writable:
        out["clientWritable"] = True
    out.update(_validation_to_dict(f.validation))
    if f.file is not None:
        out.update(f.file.to_dict())
    return out


def _collection_to_dict(c: Collection) -> dict[str, Any]:
    out: dict[str, Any] = {"fields": {f.name: _field_to_dict(f) for f in c.fields}}
    if c.indexes:
        out["indexes"] = [
            {"name": i.name, "fields": list(i.fields), "unique": i.unique, "order": i.order}
            for i in c.indexes
        ]
    rules = {a: c.rules.get(a) for a in ACTIONS if c.rules.get(a) is not None}
    if rules:
        out["rules"] = rules
    return out


def _field_from_dict(name: str, d: Mapping[str, Any]) -> Field:
    default: Default | None = None
    if "default" in d:
        raw = d["default"]
        if raw == "auto":
            default = Default("auto")
        elif raw == "now":
            default = Default("now")
        else:
            default = Default("literal", raw)
    ref: Reference | None = None
    if d.get("references"):
        coll, _, fld = str(d["references"]).rpartition(".")
        ref = Reference(coll, fld, d.get("onDelete", "restrict"))
    enum = d.get("enum")
    return Field(
        name=name,
        type=FieldType(d["type"]),
        primary=bool(d.get("primary", False)),
        unique=bool(d.get("unique", False)),
        nullable=bool(d.get("nullable", False)),
        index=bool(d.get("index", False)),
        default=default,
        references=ref,
        on_update_now=d.get("onUpdate") == "now",
        internal=bool(d.get("internal", False)),
        client_writable=bool(d.get("clientWritable", False)),
        validation=Validation(
            min_length=d.get("minLength"),
            max_length=d.get("maxLength"),
            min=d.get("min"),
            max=d.get("max"),
            pattern=d.get("pattern"),
            enum=tuple(enum) if enum is not None else None,
            format=d.get("format"),
        ),
        file=FileOptions.from_dict(d) if d["type"] == FieldType.FILE.value else None,
    )


def _collection_from_dict(name: str, d: Mapping[str, Any]) -> Collection:
    rules = d.get("rules") or {}
    return Collection(
        name=name,
        fields=tuple(_field_from_dict(n, f) for n, f in (d.get("fields") or {}).items()),
        indexes=tuple(
            Index(
                name=i["name"],
                fields=tuple(i["fields"]),
                unique=bool(i.get("unique", False)),
                order=i.get("order", "asc"),
            )
            for i in d.get("indexes") or []
        ),
        rules=Rules(**{a: rules.get(a) for a in ACTIONS}),
    )
