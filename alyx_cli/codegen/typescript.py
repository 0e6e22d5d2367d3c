"""TypeScript: how fields are spelled (`string | null`, unions for enums, `unknown` for json,
`FileMetadata` or `FileMetadata[]` for files)."""

from __future__ import annotations

import json
import re
from typing import Any

from alyx_cli.codegen.language import Language
from alyx_cli.codegen.model import FieldSpec, pascal
from alyx_server.schema.model import FieldType

__all__ = ["TYPESCRIPT"]

_BASE = {
    FieldType.UUID: "string",
    FieldType.STRING: "string",
    FieldType.TEXT: "string",
    FieldType.TIMESTAMP: "string",
    FieldType.BLOB: "string",
    FieldType.INT: "number",
    FieldType.FLOAT: "number",
    FieldType.BOOL: "boolean",
    FieldType.JSON: "unknown",
    FieldType.FILE: "FileMetadata",
}


def literal(value: Any) -> str:
    """A JSON value as a TypeScript literal (strings double-quoted, as JSON writes them)."""
    return json.dumps(value, ensure_ascii=False)


def value_type(f: FieldSpec) -> str:
    """The type of the field's value, null excluded."""
    if f.enum:
        return " | ".join(literal(v) for v in f.enum)
    if f.multiple:
        return f"{_BASE[f.type]}[]"
    return _BASE[f.type]


def field_type(f: FieldSpec) -> str:
    """The type of the field in a doc: `| null` when the field is nullable (json already is)."""
    base = value_type(f)
    if f.nullable and f.type is not FieldType.JSON:
        return f"{base} | null"
    return base


def input_type(f: FieldSpec) -> str:
    """The field's type in create and update input: a file field can only be cleared."""
    return "null" if f.is_file else field_type(f)


def camel(name: str) -> str:
    """`clear_completed` -> `clearCompleted`."""
    p = pascal(name)
    return p[:1].lower() + p[1:]


def prop(name: str) -> str:
    """A property key: bare when it is an identifier, quoted otherwise."""
    return name if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", name) else literal(name)


TYPESCRIPT = Language(
    name="typescript",
    folder="typescript",
    comment="//",
    filters={
        "ts_type": field_type,
        "ts_input": input_type,
        "ts_value": value_type,
        "ts_literal": literal,
        "camel": camel,
        "prop": prop,
    },
)
