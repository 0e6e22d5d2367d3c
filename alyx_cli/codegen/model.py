"""What a client is generated from: collections and functions, as language-neutral specs.

`build_model` reads the schema model and the discovered function manifests and decides,
once for every language, what each field means to a client:

- in the stored doc: every public field (`internal` ones are never returned), typed, null
  allowed when the field is nullable;
- in the create input: required when the field is non-nullable without a default (an
  integer primary key is assigned by SQLite, so it is optional too);
- in the update input: every public field except the primary key, all optional;
- server-managed timestamps (`default: now`, `onUpdate: now`, not `clientWritable`) are in
  the stored doc only: the server refuses them in create and update input;
- references to `_alyx_users.id` expand to the `User` type, other references to the
  referenced collection's doc type;
- file fields are file metadata (one, or a list when `maxFiles` > 1) in the stored doc and
  only null in create and update input: files are sent by the `upload` helper;
- a function that is a job (manifest `job:`) with a rule clients can pass gets a typed
  `enqueue` (`client.jobs.<name>.enqueue`) whose payload is its input; a job without a
  rule (admins only) or with `rule: "false"` gets none.

Collections and functions come out sorted by name, fields in schema order, so the output
never depends on dictionary or file-system order.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alyx_server.schema.model import Field, FieldType, Schema
from alyx_server.schema.system_tables import USERS_TABLE

__all__ = [
    "CodegenModel",
    "CollectionSpec",
    "FieldSpec",
    "FunctionSpec",
    "build_model",
    "pascal",
    "singular",
]

# Type names the clients define themselves; a collection type never takes one of them.
RESERVED_TYPE_NAMES = frozenset({
    "Alyx", "AlyxError", "AuthResponse", "Batch", "BatchOperation", "BatchResult", "Client",
    "Collection", "Error", "FileInput", "FileMetadata", "FileToken", "Filter", "FunctionError",
    "Functions", "ListResult", "Options", "Jobs", "AsyncJobs", "Enqueued", "EnqueueOptions",
    "Enqueuer", "AsyncEnqueuer",
    "Query", "Realtime", "Subscription", "Tokens", "User", "Account",
})  # fmt: skip


# Members of the generated clients; a collection with such a name is reached as
# `<name>_collection` instead.
RESERVED_ACCESSORS = frozenset({
    "auth", "batch", "close", "collections", "functions", "realtime", "request", "tokens", "url",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field as a client sees it."""

    name: str
    type: FieldType
    nullable: bool
    required: bool
    primary: bool = False
    enum: tuple[Any, ...] | None = None
    reference: str | None = None
    server_managed: bool = False
    multiple: bool = False

    @property
    def expands_to_user(self) -> bool:
        return self.reference == USERS_TABLE

    @property
    def is_file(self) -> bool:
        """A file field: file metadata in docs (a list when `multiple`); inputs can only
        clear it (null), uploads go through the clients' `upload` helper."""
        return self.type is FieldType.FILE


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """A collection: its name, the base of its type names, and its public fields."""

    name: str
    type_name: str
    fields: tuple[FieldSpec, ...]
    taken: frozenset[str] = frozenset()
    """Client members this project's client has beyond RESERVED_ACCESSORS (`jobs`, when
    some job can be queued by clients)."""

    @property
    def accessor(self) -> str:
        """The client member that reaches the collection (`client.posts`)."""
        clash = self.name in RESERVED_ACCESSORS or self.name in self.taken
        return self.name + "_collection" if clash else self.name

    @property
    def primary(self) -> FieldSpec:
        return next(f for f in self.fields if f.primary)

    @property
    def creatable(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.server_managed)

    @property
    def updatable(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.primary and not f.server_managed)

    @property
    def references(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.reference is not None)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function: its name, the base of its type names, its input and output fields."""

    name: str
    type_name: str
    input: tuple[FieldSpec, ...]
    output: tuple[FieldSpec, ...]
    enqueue: bool = False
    """A job (manifest `job:`) that clients may queue: it has a rule, and not `false`."""


@dataclass(frozen=True, slots=True)
class CodegenModel:
    """Everything a language's templates need, plus the hash printed in every header."""

    collections: tuple[CollectionSpec, ...]
    functions: tuple[FunctionSpec, ...]
    schema_hash: str
    functions_hash: str

    def collection(self, name: str) -> CollectionSpec:
        return next(c for c in self.collections if c.name == name)

    @property
    def jobs(self) -> tuple[FunctionSpec, ...]:
        """The jobs clients may queue (`client.jobs`); none: the clients have no `jobs`."""
        return tuple(fn for fn in self.functions if fn.enqueue)


def pascal(name: str) -> str:
    """`blog_posts` -> `BlogPosts`, `clear-completed` -> `ClearCompleted`."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\-]+", name) if part)


def singular(name: str) -> str:
    """A plain English singular for type names: `posts` -> `post`, `categories` -> `category`."""
    if name.endswith("ies") and len(name) > 3:
        return name[:-3] + "y"
    if name.endswith(("sses", "xes", "ches", "shes")):
        return name[:-2]
    if name.endswith("s") and not name.endswith(("ss", "us", "is")) and len(name) > 1:
        return name[:-1]
    return name


def _type_names(names: Iterable[str]) -> dict[str, str]:
    """Collection name -> type name; a clash falls back to the plural plus `Record`."""
    wanted = {n: pascal(singular(n)) for n in names}
    counts: dict[str, int] = {}
    for t in wanted.values():
        counts[t] = counts.get(t, 0) + 1
    out: dict[str, str] = {}
    for name, t in wanted.items():
        if t in RESERVED_TYPE_NAMES or counts[t] > 1 or not t[:1].isalpha():
            t = pascal(name) + "Record"
        out[name] = t
    return out


def _field(f: Field, *, in_collection: bool) -> FieldSpec:
    auto_key = in_collection and f.primary and f.type is FieldType.INT
    return FieldSpec(
        name=f.name,
        type=f.type,
        nullable=f.nullable,
        required=f.required_on_create and not auto_key,
        primary=f.primary,
        enum=f.validation.enum,
        reference=f.references.collection if f.references is not None else None,
        server_managed=in_collection and f.server_managed,
        multiple=f.file is not None and f.file.multiple,
    )


def _function_fields(field_set: Any) -> tuple[FieldSpec, ...]:
    if field_set is None:
        return ()
    return tuple(_field(f, in_collection=False) for f in field_set.fields)


def client_enqueues(spec: Any) -> bool:
    """True when clients may queue the function as a job: a `job:` section and a rule
    that is not `false` (without a rule only admins may, so clients get no `enqueue`)."""
    rule = getattr(spec, "rule", None)
    return getattr(spec, "job", None) is not None and rule is not None and rule.strip() != "false"


def _functions_hash(functions: Mapping[str, Any]) -> str:
    """sha256 of the functions' names, inputs and outputs, and which are jobs clients may
    queue: what the clients depend on."""
    declared: dict[str, dict[str, Any]] = {
        name: {
            "input": spec.input.to_dict() if spec.input is not None else None,
            "output": spec.output.to_dict() if spec.output is not None else None,
        }
        for name, spec in sorted(functions.items())
    }
    for name, spec in functions.items():
        if client_enqueues(spec):
            declared[name]["enqueue"] = True  # only then, so other projects' hashes stay
    text = json.dumps(declared, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def build_model(schema: Schema, functions: Mapping[str, Any] | None = None) -> CodegenModel:
    """The codegen model of `schema` and of `functions` (name -> manifest FunctionSpec)."""
    functions = functions or {}
    collections = sorted(schema.collections, key=lambda c: c.name)
    type_names = _type_names(c.name for c in collections)
    function_specs = tuple(
        FunctionSpec(
            name=name,
            type_name=pascal(name),
            input=_function_fields(spec.input),
            output=_function_fields(spec.output),
            enqueue=client_enqueues(spec),
        )
        for name, spec in sorted(functions.items())
    )
    taken = frozenset({"jobs"}) if any(fn.enqueue for fn in function_specs) else frozenset()
    specs = tuple(
        CollectionSpec(
            name=c.name,
            type_name=type_names[c.name],
            fields=tuple(_field(f, in_collection=True) for f in c.fields if not f.internal),
            taken=taken,
        )
        for c in collections
    )
    return CodegenModel(specs, function_specs, schema.checksum(), _functions_hash(functions))
