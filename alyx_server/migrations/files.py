"""Migration files: `migrations/NNN_<name>.yaml`, read with the line of every mistake.

    version: 3
    name: drop_slug
    description: Posts are addressed by id only.
    operations:
      - drop_field: { collection: posts, field: slug }
      - rename_field: { collection: posts, from: body, to: content }
      - change_type: { collection: posts, field: views, type: int, using: "CAST(views AS INTEGER)" }
      - sql: { up: "UPDATE posts SET title = trim(title)", down: "SELECT 1" }

The version must be the file's NNN, and two files may not share one. The checksum of a
file is the sha256 of its bytes: the history keeps it, so an applied file that was edited
afterwards is noticed. Errors read `migrations/003_drop_slug.yaml:7: operations[1].rename_field:
missing "to"`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from alyx_server.errors import MigrationError, SchemaError
from alyx_server.migrations.operations import (
    AddField,
    AddIndex,
    AlterField,
    ChangeType,
    DropCollection,
    DropField,
    DropIndex,
    Operation,
    RenameCollection,
    RenameField,
    Sql,
)
from alyx_server.migrations.sql_script import ScriptError, split_statements
from alyx_server.schema.model import FieldType, Index
from alyx_server.schema.validate import NAME_PATTERN, SchemaSource, parse_field
from alyx_server.tools.suggest import closest
from alyx_server.tools.yaml_lines import (
    YamlEntry,
    YamlError,
    YamlMapping,
    YamlNode,
    YamlScalar,
    YamlSequence,
    kind_name,
    parse_yaml,
)

__all__ = [
    "FILENAME_PATTERN",
    "MAX_VERSION",
    "MIGRATION_NAME",
    "OPERATION_ARGUMENTS",
    "MigrationFile",
    "Step",
    "checksum_of",
    "load_migration",
    "load_migrations",
    "parse_migration",
]

FILENAME_PATTERN = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.ya?ml$")
MIGRATION_NAME = re.compile(r"^[a-z0-9_]+$")
# Versions are stored as SQLite integers (at most 2^63-1); 15 digits leave room for
# date-style numbers such as 20260131120000 and for `migrate create`'s next number.
MAX_VERSION = 999_999_999_999_999
_TOP_KEYS = ("version", "name", "description", "operations")

# operation -> (required arguments, optional arguments)
OPERATION_ARGUMENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "add_field": (("collection", "field", "definition"), ("using",)),
    "drop_field": (("collection", "field"), ()),
    "rename_field": (("collection", "from", "to"), ()),
    "change_type": (("collection", "field", "type"), ("using",)),
    "alter_field": (("collection", "field", "definition"), ("using",)),
    "drop_collection": (("collection",), ()),
    "rename_collection": (("from", "to"), ()),
    "add_index": (("collection", "name", "fields"), ("unique", "order")),
    "drop_index": (("collection", "name"), ()),
    "sql": (("up",), ("down",)),
}


@dataclass(frozen=True, slots=True)
class Step:
    """One operation of a file and where it is written, for messages."""

    operation: Operation
    where: str


@dataclass(frozen=True, slots=True)
class MigrationFile:
    path: Path
    label: str  # "migrations/003_drop_slug.yaml", how messages name the file
    version: int
    name: str
    description: str
    steps: tuple[Step, ...]
    checksum: str

    @property
    def stem(self) -> str:
        return f"{self.version:03d}_{self.name}"


def checksum_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Reader:
    """Builds located MigrationErrors for one file."""

    def __init__(self, label: str) -> None:
        self.label = label

    def error(self, node: YamlNode | None, path: str, message: str) -> MigrationError:
        line = f":{node.line}" if node is not None else ""
        where = f": {path}" if path else ""
        return MigrationError(f"{self.label}{line}{where}: {message}")

    def where(self, node: YamlNode, path: str) -> str:
        return f"{self.label}:{node.line}: {path}"

    def mapping(self, node: YamlNode, path: str, example: str) -> YamlMapping:
        if not isinstance(node, YamlMapping):
            found = kind_name(node)
            raise self.error(node, path, f"expected a mapping, not {found} (write {example})")
        return node

    def string(self, node: YamlNode, path: str) -> str:
        if not isinstance(node, YamlScalar) or not isinstance(node.value, str) or not node.value:
            raise self.error(node, path, f"expected a non-empty string, not {kind_name(node)}")
        return node.value

    def name(self, node: YamlNode, path: str, what: str) -> str:
        text = self.string(node, path)
        if not NAME_PATTERN.match(text) or text.startswith("_alyx"):
            raise self.error(
                node, path, f"{text!r} is not a valid {what} name (^[a-z][a-z0-9_]*$, not _alyx...)"
            )
        return text

    def sql(self, node: YamlNode, path: str) -> str:
        text = self.string(node, path)
        try:
            split_statements(text)
        except ScriptError as e:
            raise self.error(node, path, str(e)) from e
        return text


def _arguments(r: _Reader, kind: str, node: YamlNode, path: str) -> dict[str, YamlNode]:
    required, optional = OPERATION_ARGUMENTS[kind]
    example = "{ " + ", ".join(f"{k}: ..." for k in required) + " }"
    body = r.mapping(node, path, example)
    for entry in body:
        if entry.name not in required + optional:
            known = required + optional
            guess = closest(entry.name, known)
            hint = f'did you mean "{guess}"? ' if guess else ""
            message = f'unknown argument "{entry.name}" ({hint}{kind} takes: {", ".join(known)})'
            raise r.error(entry.key, path, message)
    for key in required:
        if key not in body:
            raise r.error(body, path, f'missing "{key}"')
    return {entry.name: entry.value for entry in body}


def _field_type(r: _Reader, node: YamlNode, path: str) -> FieldType:
    text = r.string(node, path)
    types = [t.value for t in FieldType]
    if text not in types:
        raise r.error(node, path, f"unknown field type {text!r} (types: {', '.join(types)})")
    return FieldType(text)


def _defined(r: _Reader, args: dict[str, YamlNode], path: str) -> AddField:
    """The `collection`, `field`, `definition` and `using` of add_field / alter_field."""
    collection = r.name(args["collection"], f"{path}.collection", "collection")
    name_node = args["field"]
    r.name(name_node, f"{path}.field", "field")
    assert isinstance(name_node, YamlScalar)
    entry = YamlEntry(name_node, args["definition"])
    try:
        field = parse_field(SchemaSource(r.label), entry, f"{path}.definition")
    except SchemaError as e:
        raise MigrationError(str(e)) from e
    using = r.string(args["using"], f"{path}.using") if "using" in args else None
    return AddField(collection, field, using)


def _index(r: _Reader, args: dict[str, YamlNode], path: str) -> Index:
    fields_node = args["fields"]
    if not isinstance(fields_node, YamlSequence) or not fields_node.items:
        raise r.error(fields_node, f"{path}.fields", "expected a list of field names")
    fields = tuple(r.name(n, f"{path}.fields", "field") for n in fields_node)
    unique = False
    if "unique" in args:
        node = args["unique"]
        if not isinstance(node, YamlScalar) or not isinstance(node.value, bool):
            raise r.error(node, f"{path}.unique", "expected true or false")
        unique = node.value
    order = r.string(args["order"], f"{path}.order") if "order" in args else "asc"
    if order not in ("asc", "desc"):
        raise r.error(args["order"], f"{path}.order", "expected asc or desc")
    name = r.name(args["name"], f"{path}.name", "index")
    return Index(name, fields, unique, "desc" if order == "desc" else "asc")


def _operation(r: _Reader, kind: str, args: dict[str, YamlNode], path: str) -> Operation:
    def name(key: str, what: str) -> str:
        return r.name(args[key], f"{path}.{key}", what)

    if kind in ("add_field", "alter_field"):
        added = _defined(r, args, path)
        if kind == "alter_field":
            return AlterField(added.collection, added.field, added.using)
        return added
    if kind == "drop_field":
        return DropField(name("collection", "collection"), name("field", "field"))
    if kind == "rename_field":
        collection = name("collection", "collection")
        return RenameField(collection, name("from", "field"), name("to", "field"))
    if kind == "change_type":
        using = r.string(args["using"], f"{path}.using") if "using" in args else None
        new_type = _field_type(r, args["type"], f"{path}.type")
        return ChangeType(name("collection", "collection"), name("field", "field"), new_type, using)
    if kind == "drop_collection":
        return DropCollection(name("collection", "collection"))
    if kind == "add_index":
        return AddIndex(name("collection", "collection"), _index(r, args, path))
    if kind == "drop_index":
        return DropIndex(name("collection", "collection"), name("name", "index"))
    if kind == "rename_collection":
        return RenameCollection(name("from", "collection"), name("to", "collection"))
    down = r.sql(args["down"], f"{path}.down") if "down" in args else None
    return Sql(r.sql(args["up"], f"{path}.up"), down)


def _step(r: _Reader, index: int, node: YamlNode) -> Step:
    path = f"operations[{index}]"
    example = "- drop_field: { collection: posts, field: slug }"
    item = r.mapping(node, path, example)
    if len(item) != 1:
        message = f"an operation is a mapping with one key, its kind (write {example})"
        raise r.error(item, path, message)
    (entry,) = item.entries
    kind = entry.name
    if kind not in OPERATION_ARGUMENTS:
        guess = closest(kind, OPERATION_ARGUMENTS)
        hint = f'did you mean "{guess}"? ' if guess else ""
        known = ", ".join(OPERATION_ARGUMENTS)
        raise r.error(entry.key, path, f'unknown operation "{kind}" ({hint}operations: {known})')
    args = _arguments(r, kind, entry.value, f"{path}.{kind}")
    operation = _operation(r, kind, args, f"{path}.{kind}")
    return Step(operation, r.where(entry.key, f"{path}.{kind}"))


def _top(r: _Reader, data: bytes) -> YamlMapping:
    try:
        text = data.decode("utf-8")
        root = parse_yaml(text)
    except UnicodeDecodeError as e:
        raise MigrationError(f"{r.label}: not UTF-8 text ({e.reason})") from e
    except YamlError as e:
        raise MigrationError(f"{r.label}:{e.line or 1}: invalid YAML: {e.message}") from e
    if root is None:
        raise MigrationError(f"{r.label}: the file is empty (it needs version, name, operations)")
    top = r.mapping(root, "", "version: 1, name: ..., operations: [...]")
    for entry in top:
        if entry.name not in _TOP_KEYS:
            raise r.error(entry.key, entry.name, f"unknown key (known: {', '.join(_TOP_KEYS)})")
    return top


def _header(r: _Reader, top: YamlMapping, version: int, name: str) -> str:
    entry = top.get("version")
    if entry is None:
        raise r.error(top, "version", f"missing (write version: {version})")
    value = entry.value.value if isinstance(entry.value, YamlScalar) else None
    if not isinstance(value, int) or isinstance(value, bool) or value != version:
        message = f"must be {version}, the number the file name starts with"
        raise r.error(entry.value, "version", message)
    named = top.get("name")
    if named is not None and r.string(named.value, "name") != name:
        raise r.error(named.value, "name", f"must be {name!r}, as in the file name")
    described = top.get("description")
    if described is None or (isinstance(described.value, YamlScalar) and described.value.value is None):
        return ""
    return r.string(described.value, "description")


def parse_migration(data: bytes, *, path: Path, label: str | None = None) -> MigrationFile:
    """Check the bytes of migration file `path` and build it; `label` names it in messages."""
    label = label or path.name
    match = FILENAME_PATTERN.match(path.name)
    if match is None:
        raise MigrationError(f"{label}: a migration file is named NNN_<name>.yaml (e.g. 003_drop_slug.yaml)")
    digits, name = match.group(1), match.group(2)
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(MAX_VERSION)):
        raise MigrationError(
            f"{label}: the version {digits} is too large (at most {MAX_VERSION}): "
            "rename the file to the number after the last migration, e.g. 003_<name>.yaml"
        )
    version = int(significant)
    r = _Reader(label)
    top = _top(r, data)
    description = _header(r, top, version, name)
    ops_entry = top.get("operations")
    if ops_entry is None:
        message = "missing (write operations: [] for a file that does nothing)"
        raise r.error(top, "operations", message)
    node = ops_entry.value
    if isinstance(node, YamlScalar) and node.value is None:
        items: tuple[YamlNode, ...] = ()
    elif isinstance(node, YamlSequence):
        items = node.items
    else:
        raise r.error(node, "operations", f"expected a list of operations, not {kind_name(node)}")
    steps = tuple(_step(r, i, item) for i, item in enumerate(items))
    return MigrationFile(path, label, version, name, description, steps, checksum_of(data))


def load_migration(path: Path) -> MigrationFile:
    label = f"{path.parent.name}/{path.name}"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MigrationError(f"{label}: cannot read: {e.strerror}") from e
    return parse_migration(data, path=path, label=label)


def load_migrations(directory: Path) -> list[MigrationFile]:
    """Every migration file of `directory` by version; a missing directory has none.

    Other files (README.md, .gitkeep) are ignored; a `.yaml` file with another name
    is refused, since it was most likely meant to be a migration.
    """
    if not directory.is_dir():
        return []
    files: list[MigrationFile] = []
    seen: dict[int, MigrationFile] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        migration = load_migration(path)
        if migration.version in seen:
            raise MigrationError(
                f"{migration.label} and {seen[migration.version].label} share version "
                f"{migration.version}: renumber one of them"
            )
        seen[migration.version] = migration
        files.append(migration)
    return sorted(files, key=lambda m: m.version)
