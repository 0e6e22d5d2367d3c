"""Go: exported names with initialisms (`author_id` -> `AuthorID`), pointers for nullable
fields, a named string or integer type with constants for each enum, `FileMetadata` (or a
slice of them) for file fields."""

from __future__ import annotations

import json
import re
from typing import Any

from alyx_cli.codegen.language import Language
from alyx_cli.codegen.model import FieldSpec
from alyx_server.schema.model import FieldType

__all__ = ["GO"]

_BASE = {
    FieldType.UUID: "string",
    FieldType.STRING: "string",
    FieldType.TEXT: "string",
    FieldType.TIMESTAMP: "string",
    FieldType.BLOB: "[]byte",
    FieldType.INT: "int64",
    FieldType.FLOAT: "float64",
    FieldType.BOOL: "bool",
    FieldType.JSON: "any",
    FieldType.FILE: "FileMetadata",
}
# Types whose zero value already encodes JSON null (a multiple file field is a slice).
_NILABLE = frozenset({FieldType.BLOB, FieldType.JSON})
_INITIALISMS = frozenset(
    {"id", "url", "uri", "api", "http", "https", "json", "uuid", "ip", "sql", "html", "db"}
)


def exported(name: str) -> str:
    """`author_id` -> `AuthorID`, `clear-completed` -> `ClearCompleted`, `2fa` -> `X2fa`."""
    parts = [p for p in re.split(r"[_\-]+", name) if p]
    out = "".join(p.upper() if p in _INITIALISMS else p[:1].upper() + p[1:] for p in parts)
    return out if out[:1].isalpha() else "X" + out


_ENUM_BASES = frozenset({
    FieldType.UUID, FieldType.STRING, FieldType.TEXT, FieldType.TIMESTAMP, FieldType.INT, FieldType.FLOAT,
})  # fmt: skip


def enum_type(f: FieldSpec, owner: str) -> str:
    return owner + exported(f.name)


def has_enum_type(f: FieldSpec) -> bool:
    """Enums of text and numbers get a named type with constants; others keep their type."""
    return bool(f.enum) and f.type in _ENUM_BASES


def value_type(f: FieldSpec, owner: str) -> str:
    """The field's Go type, null excluded; `owner` prefixes enum type names."""
    if has_enum_type(f):
        return enum_type(f, owner)
    if f.multiple:
        return "[]" + _BASE[f.type]
    return _BASE[f.type]


def key_type(f: FieldSpec) -> str:
    """The primary key's Go type: int64 for integer keys, string for the others."""
    return "int64" if f.type is FieldType.INT else "string"


def field_type(f: FieldSpec, owner: str) -> str:
    """The field's type in a stored doc: a pointer when null is possible."""
    base = value_type(f, owner)
    if f.nullable and f.type not in _NILABLE and not f.multiple:
        return "*" + base
    return base


def input_type(f: FieldSpec, owner: str) -> str:
    """The field's type in create and update input: a file field can only be cleared
    (`Null[NoFile]()`); files go through Collection.Upload."""
    return "NoFile" if f.is_file else value_type(f, owner)


def enum_base(f: FieldSpec) -> str:
    return _BASE[f.type]


def enum_constants(f: FieldSpec, owner: str) -> list[tuple[str, str]]:
    """(constant name, Go literal) for each enum value, names made unique."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    prefix = enum_type(f, owner)
    for value in f.enum or ():
        name = prefix + (exported(re.sub(r"[^A-Za-z0-9]+", "_", str(value)).strip("_").lower() or "empty"))
        base = name
        n = 2
        while name in seen:
            name, n = f"{base}{n}", n + 1
        seen.add(name)
        out.append((name, literal(value)))
    return out


def literal(value: Any) -> str:
    """A JSON scalar as a Go literal (a JSON string is a valid Go interpreted string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


ALIGN_MARK = "@@"


def align(text: str) -> str:
    """Align the `@@`-separated cells of consecutive lines as gofmt does (its tabwriter:
    a column block is a run of lines that have a cell after that column)."""
    rows = [line.split(ALIGN_MARK) for line in text.split("\n")]
    widest = max((len(r) for r in rows), default=0)
    for col in range(widest - 1):
        i = 0
        while i < len(rows):
            if len(rows[i]) <= col + 1:
                i += 1
                continue
            end = i
            while end < len(rows) and len(rows[end]) > col + 1:
                end += 1
            width = max(len(rows[r][col].rstrip()) for r in range(i, end))
            for r in range(i, end):
                rows[r][col] = rows[r][col].rstrip().ljust(width) + " "
            i = end
    return "\n".join("".join(r) for r in rows)


GO = Language(
    name="go",
    folder="go",
    comment="//",
    filters={
        "go_name": exported,
        "go_type": field_type,
        "go_value": value_type,
        "go_input": input_type,
        "go_enum_base": enum_base,
        "go_has_enum_type": has_enum_type,
        "go_key_type": key_type,
        "go_enum_constants": enum_constants,
        "go_literal": literal,
        "go_align": align,
    },
)
