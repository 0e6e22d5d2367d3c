"""Read schema.yaml into a `Schema`, refusing anything invalid with a located message.

`load_schema(path)` and `parse_schema(text)` parse the YAML with positions
(`tools.yaml_lines`), check each field (`schema.validate`) and then what needs the whole
schema: one primary field per collection, reference targets, indexes and rules. Rule
sources are only checked to be non-empty strings; compiling them is the rules layer's job,
which finds where each was written in `Collection.rule_locations`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from alyx_server.errors import Location, SchemaError
from alyx_server.schema.ddl import field_index_name, unique_index_name
from alyx_server.schema.model import (
    ACTIONS,
    Collection,
    Field,
    FieldType,
    Index,
    Rules,
    Schema,
)
from alyx_server.schema.system_tables import USERS_TABLE
from alyx_server.schema.validate import (
    SchemaSource,
    check_name,
    did_you_mean,
    expect_mapping,
    parse_field,
    reject_unknown,
    validation_problem,
)
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

__all__ = ["SCHEMA_VERSION", "load_schema", "parse_schema"]

SCHEMA_VERSION = 1
_TOP_KEYS = ("version", "collections")
_COLLECTION_KEYS = ("fields", "indexes", "rules")
_INDEX_KEYS = ("name", "fields", "unique", "order")
_ID = "{ id: { type: uuid, primary: true, default: auto } }"
_START = "start the file with `version: 1` and a `collections:` mapping"


def load_schema(path: Path) -> Schema:
    """Read and check the schema file at `path` (usually `<project>/schema.yaml`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SchemaError(
            f"{path} does not exist",
            Location(str(path)),
            hint="create it (see docs/schema.md) or run `alyx init` to start a project",
        ) from e
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise SchemaError(
            f"{path} is not UTF-8 text (byte {e.start})",
            Location(str(path), line),
            hint="save the file as UTF-8",
        ) from e
    except OSError as e:
        message = f"cannot read {path}: {e}"
        raise SchemaError(message, Location(str(path)), hint="check the file's permissions") from e
    try:
        return parse_schema(text, filename=str(path))
    except RecursionError as e:
        # The YAML reader bounds nesting, so this is a defect; still one line, not a traceback.
        raise SchemaError(
            f"{path} is nested too deeply to read", Location(str(path)), hint="flatten its structure"
        ) from e


def parse_schema(text: str, *, filename: str = "schema.yaml") -> Schema:
    """Check schema.yaml text and build the `Schema`; `filename` is used in messages."""
    src = SchemaSource(filename)
    try:
        root = parse_yaml(text)
    except YamlError as e:
        raise SchemaError(
            f"invalid YAML: {e.message}",
            Location(filename, e.line, e.column),
            hint="fix the YAML syntax at this position",
        ) from e
    if root is None or (isinstance(root, YamlScalar) and root.value is None):
        raise src.error("the schema file is empty", None, None, _START)
    if not isinstance(root, YamlMapping):
        message = f"the top level of the schema must be a mapping, not {kind_name(root)}"
        raise src.error(message, root, None, _START)
    top = root
    reject_unknown(src, top, "", _TOP_KEYS, "top-level key")
    _check_version(src, top)
    collections = _collections(src, top.get("collections"))
    _check_index_names(src, collections)
    return Schema(collections=collections, version=SCHEMA_VERSION, source=filename)


def _check_version(src: SchemaSource, top: YamlMapping) -> None:
    entry = top.get("version")
    if entry is None:
        raise src.error("the schema has no version", top, "version", "add `version: 1` at the top")
    value = entry.value.value if isinstance(entry.value, YamlScalar) else None
    if isinstance(value, bool) or value != SCHEMA_VERSION:
        shown = entry.value.text if isinstance(entry.value, YamlScalar) else kind_name(entry.value)
        raise src.error(
            f"unsupported schema version {shown}",
            entry.value, "version", f"this Alyx reads version {SCHEMA_VERSION}: write `version: 1`",
        )  # fmt: skip


def _collections(src: SchemaSource, entry: YamlEntry | None) -> tuple[Collection, ...]:
    if entry is None or _is_null(entry.value):
        return ()
    example = "collections: { posts: { fields: ... } }"
    body = expect_mapping(src, entry.value, "collections", "collections", example)
    parsed = tuple(_collection(src, item) for item in body)
    for collection, item in zip(parsed, body, strict=True):
        _check_references(src, collection, parsed, item)
    return parsed


def _collection(src: SchemaSource, entry: YamlEntry) -> Collection:
    path = f"collections.{entry.name}"
    name = check_name(src, entry.key, path, "collection")
    if name.startswith("sqlite_"):
        raise src.error(
            f'the collection name "{name}" is reserved by SQLite', entry.key, path,
            "choose a name that does not start with sqlite_",
        )  # fmt: skip
    body = expect_mapping(src, entry.value, path, f'collection "{name}"', f"{{ fields: {_ID} }}")
    reject_unknown(src, body, path, _COLLECTION_KEYS, "collection key")
    fields_entry = body.get("fields")
    if fields_entry is None or _is_null(fields_entry.value):
        raise src.error(f'collection "{name}" has no fields', entry.key, path, f"add fields: {_ID}")
    fields_body = expect_mapping(
        src, fields_entry.value, f"{path}.fields", "fields", "fields: { title: { type: string } }"
    )
    fields = tuple(_field(src, item, f"{path}.fields.{item.name}") for item in fields_body)
    _check_one_primary(src, name, fields, fields_body, entry.key, path)
    rules, rule_locations = _rules(src, body.get("rules"), f"{path}.rules")
    return Collection(
        name=name,
        fields=fields,
        indexes=_indexes(src, name, fields, body.get("indexes"), f"{path}.indexes"),
        rules=rules,
        location=src.location(entry.key, path),
        rule_locations=rule_locations,
    )


def _field(src: SchemaSource, entry: YamlEntry, path: str) -> Field:
    field = parse_field(src, entry, path)
    body = _mapping(entry.value)
    if field.primary:
        for option, wrong, fix in (
            ("nullable", field.nullable, "remove nullable: true"),
            ("internal", field.internal, "remove internal: true: the primary field is the id"),
        ):
            if wrong:
                message = f"a primary field cannot be {option}"
                raise src.error(message, _key(body, option), f"{path}.{option}", fix)
        if field.type in (FieldType.JSON, FieldType.BLOB):
            raise src.error(
                f"a {field.type.value} field cannot be primary", _value(body, "type"),
                f"{path}.type", "make the primary field uuid (with default: auto), int or string",
            )  # fmt: skip
    if field.default is not None and field.default.kind == "literal":
        problem = validation_problem(field.validation, field.default.value)
        if problem is not None:
            raise src.error(
                f"default {field.default.value!r} {problem}", _value(body, "default"),
                f"{path}.default", "change the default or the validation",
            )  # fmt: skip
    return field


def _check_one_primary(
    src: SchemaSource,
    name: str,
    fields: tuple[Field, ...],
    body: YamlMapping,
    at: YamlScalar,
    path: str,
) -> None:
    primaries = [f for f in fields if f.primary]
    if not primaries:
        raise src.error(
            f'collection "{name}" has no primary field', at, path,
            f"mark exactly one field primary: true, e.g. id: {_ID[7:]}",
        )  # fmt: skip
    if len(primaries) > 1:
        first, second = primaries[0], primaries[1]
        raise src.error(
            f'collection "{name}" has two primary fields: "{first.name}" and "{second.name}"',
            _key(_mapping(_value(body, second.name)), "primary"),
            f"{path}.fields.{second.name}.primary",
            "keep primary: true on one field only (use unique: true on the other)",
        )  # fmt: skip


def _check_references(
    src: SchemaSource, collection: Collection, schema: tuple[Collection, ...], entry: YamlEntry
) -> None:
    """Each `references:` must name `_alyx_users.id` or a primary/unique field of the same type."""
    for field in collection.fields:
        ref = field.references
        if ref is None:
            continue
        body = _field_body(entry, field.name)
        path = f"collections.{collection.name}.fields.{field.name}"
        node, ref_path = _value(body, "references"), f"{path}.references"
        target_type = _reference_target(src, ref.collection, ref.field, schema, node, ref_path)
        if field.type is not target_type:
            raise src.error(
                f'"{field.name}" is {field.type.value} but {ref.collection}.{ref.field}, which it '
                f"references, is {target_type.value}", _value(body, "type"), f"{path}.type",
                f"give {field.name} type: {target_type.value}",
            )  # fmt: skip


def _reference_target(
    src: SchemaSource,
    coll: str,
    target: str,
    schema: tuple[Collection, ...],
    node: YamlNode,
    path: str,
) -> FieldType:
    """The type of the referenced field, after checking that it may be referenced."""
    if coll.startswith("_alyx"):
        if (coll, target) != (USERS_TABLE, "id"):
            raise src.error(
                f"{coll}.{target} cannot be referenced: the only system field a collection may "
                f"reference is {USERS_TABLE}.id", node, path,
                f"write references: {USERS_TABLE}.id (or reference one of your collections)",
            )  # fmt: skip
        return FieldType.UUID
    names = [c.name for c in schema]
    collection = next((c for c in schema if c.name == coll), None)
    if collection is None:
        raise src.error(
            f'references names an unknown collection "{coll}"', node, path,
            f"{did_you_mean(coll, names)}collections: {', '.join(names)}, {USERS_TABLE}",
        )  # fmt: skip
    field, known = collection.field(target), collection.field_names
    if field is None:
        raise src.error(
            f'references names an unknown field "{target}" of collection "{coll}"', node, path,
            f"{did_you_mean(target, known)}fields: {', '.join(known)}",
        )  # fmt: skip
    if not (field.primary or field.unique):
        raise src.error(
            f"{coll}.{target} is neither primary nor unique, so it cannot be referenced",
            node, path,
            f"reference {coll}.{collection.primary.name} or add unique: true to {coll}.{target}",
        )  # fmt: skip
    return field.type


def _indexes(
    src: SchemaSource,
    collection: str,
    fields: tuple[Field, ...],
    entry: YamlEntry | None,
    path: str,
) -> tuple[Index, ...]:
    if entry is None or _is_null(entry.value):
        return ()
    if not isinstance(entry.value, YamlSequence):
        raise src.error(
            f"indexes must be a list, not {kind_name(entry.value)}", entry.value, path,
            "write indexes: [{ fields: [a, b] }]",
        )  # fmt: skip
    names = tuple(f.name for f in fields)
    return tuple(_index(src, collection, names, item, f"{path}[{i}]") for i, item in enumerate(entry.value))


def _index(
    src: SchemaSource, collection: str, field_names: tuple[str, ...], node: YamlNode, path: str
) -> Index:
    body = expect_mapping(src, node, path, "an index", "- { fields: [published, created_at] }")
    reject_unknown(src, body, path, _INDEX_KEYS, "index key")
    columns = _index_fields(src, field_names, body, path)
    name_entry = body.get("name")
    name = (
        f"idx_{collection}_{'_'.join(columns)}"
        if name_entry is None
        else _index_name(src, name_entry, f"{path}.name")
    )
    unique = body.get("unique")
    if unique is not None and not isinstance(_plain(unique.value), bool):
        message = "unique must be true or false"
        raise src.error(message, unique.value, f"{path}.unique", "write unique: true")
    order = body.get("order")
    if order is not None and _plain(order.value) not in ("asc", "desc"):
        raise src.error(
            f"unknown index order {_plain(order.value)!r}", order.value, f"{path}.order",
            "write order: asc or order: desc",
        )  # fmt: skip
    return Index(
        name=name,
        fields=columns,
        unique=bool(unique is not None and _plain(unique.value)),
        order="desc" if order is not None and _plain(order.value) == "desc" else "asc",
        location=src.location(node, path),
    )


def _index_name(src: SchemaSource, entry: YamlEntry, path: str) -> str:
    if not isinstance(entry.value, YamlScalar) or not isinstance(entry.value.value, str):
        raise src.error(
            f"an index name must be a string, not {kind_name(entry.value)}", entry.value, path,
            "write name: idx_posts_published or leave it out to have one generated",
        )  # fmt: skip
    name = check_name(src, entry.value, path, "index")
    if name.startswith("sqlite_"):
        raise src.error(
            f'the index name "{name}" is reserved by SQLite', entry.value, path,
            "choose a name that does not start with sqlite_",
        )  # fmt: skip
    return name


def _index_fields(
    src: SchemaSource, field_names: tuple[str, ...], body: YamlMapping, path: str
) -> tuple[str, ...]:
    entry = body.get("fields")
    if entry is None or not isinstance(entry.value, YamlSequence) or not entry.value.items:
        raise src.error(
            "an index needs fields: a non-empty list of field names",
            body if entry is None else entry.value, f"{path}.fields",
            "write fields: [published, created_at]",
        )  # fmt: skip
    columns: list[str] = []
    for i, item in enumerate(entry.value):
        value = _plain(item)
        if value not in field_names:
            raise src.error(
                f"the index names an unknown field {value!r}", item, f"{path}.fields[{i}]",
                f"{did_you_mean(str(value), field_names)}fields: {', '.join(field_names)}",
            )  # fmt: skip
        if value in columns:
            raise src.error(
                f"the index lists field {value!r} twice", item, f"{path}.fields[{i}]",
                "list each field once",
            )  # fmt: skip
        columns.append(str(value))
    return tuple(columns)


def _check_index_names(src: SchemaSource, collections: tuple[Collection, ...]) -> None:
    """Index names are unique in SQLite, shared with tables and with the indexes the DDL
    creates for `unique: true` and `index: true` fields."""
    implicit = dict(_implicit_indexes(collections))
    seen: dict[str, Index] = {}
    tables = {c.name for c in collections}
    for index in _all_indexes(collections):
        where = index.location
        if index.name in seen:
            raise SchemaError(
                f'duplicate index name "{index.name}" (first at {seen[index.name].location})',
                where, hint="index names must be unique across the whole schema: rename one",
            )  # fmt: skip
        if index.name in tables:
            raise SchemaError(
                f'the index name "{index.name}" is also a collection name', where,
                hint="SQLite keeps tables and indexes in one namespace: rename the index",
            )  # fmt: skip
        if index.name in implicit:
            raise SchemaError(
                f'the index name "{index.name}" is taken by the index Alyx creates for '
                f"{implicit[index.name]}", where,
                hint="give this index another name, or drop it if it repeats that one",
            )  # fmt: skip
        seen[index.name] = index


def _implicit_indexes(collections: tuple[Collection, ...]) -> Iterator[tuple[str, str]]:
    """(name, reason) of the single-field indexes `schema.ddl` adds for field options."""
    for c in collections:
        for f in c.fields:
            if f.unique and not f.primary:
                yield unique_index_name(c.name, f.name), f"unique: true on {c.name}.{f.name}"
            elif f.index and not f.primary:
                yield field_index_name(c.name, f.name), f"index: true on {c.name}.{f.name}"


def _all_indexes(collections: tuple[Collection, ...]) -> Iterator[Index]:
    for collection in collections:
        yield from collection.indexes


def _rules(src: SchemaSource, entry: YamlEntry | None, path: str) -> tuple[Rules, dict[str, Location]]:
    if entry is None or _is_null(entry.value):
        return Rules(), {}
    body = expect_mapping(src, entry.value, path, "rules", 'rules: { read: "true" }')
    reject_unknown(src, body, path, ACTIONS, "rule action")
    sources: dict[str, str] = {}
    locations: dict[str, Location] = {}
    for item in body:
        node, rule_path = item.value, f"{path}.{item.name}"
        if _is_null(node):
            continue
        if not isinstance(node, YamlScalar) or not isinstance(node.value, str):
            shown = node.text if isinstance(node, YamlScalar) else "..."
            raise src.error(
                f"a rule is a CEL expression written as a string, not {kind_name(node)}",
                node, rule_path, f'quote it: {item.name}: "{shown}"',
            )  # fmt: skip
        if not node.value.strip():
            raise src.error(
                "the rule is empty", node, rule_path,
                f'write a CEL expression (e.g. {item.name}: "auth != null"), or remove the key '
                "to allow only admins",
            )  # fmt: skip
        sources[item.name] = node.value
        locations[item.name] = Location(src.filename, node.content_line, node.content_column, rule_path)
    return Rules(**sources), locations


def _is_null(node: YamlNode) -> bool:
    return isinstance(node, YamlScalar) and node.value is None


def _plain(node: YamlNode) -> object:
    return node.value if isinstance(node, YamlScalar) else node.to_python()


def _field_body(collection: YamlEntry, field: str) -> YamlMapping:
    """The option mapping of a field already accepted by `_collection`."""
    fields = _value(_mapping(collection.value), "fields")
    return _mapping(_value(_mapping(fields), field))


def _mapping(node: YamlNode) -> YamlMapping:
    if not isinstance(node, YamlMapping):
        raise TypeError(f"expected a checked mapping at line {node.line}")
    return node


def _entry(body: YamlMapping, key: str) -> YamlEntry:
    entry = body.get(key)
    if entry is None:
        raise LookupError(key)
    return entry


def _key(body: YamlMapping, key: str) -> YamlScalar:
    return _entry(body, key).key


def _value(body: YamlMapping, key: str) -> YamlNode:
    return _entry(body, key).value
