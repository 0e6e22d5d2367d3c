"""Python: how fields are spelled (`str | None`, `Literal[...]` for enums, `Any` for json,
`FileMetadata` or `list[FileMetadata]` for files)."""

from __future__ import annotations

import keyword
import re
from typing import Any

from alyx_cli.codegen.language import Language
from alyx_cli.codegen.model import FieldSpec
from alyx_server.schema.model import FieldType

__all__ = ["PYTHON"]

_BASE = {
    FieldType.UUID: "str",
    FieldType.STRING: "str",
    FieldType.TEXT: "str",
    FieldType.TIMESTAMP: "str",
    FieldType.BLOB: "str",
    FieldType.INT: "int",
    FieldType.FLOAT: "float",
    FieldType.BOOL: "bool",
    FieldType.JSON: "Any",
    FieldType.FILE: "FileMetadata",
}


def literal(value: Any) -> str:
    """A JSON scalar as a Python literal."""
    return repr(value)


def value_type(f: FieldSpec) -> str:
    if f.enum:
        return "Literal[" + ", ".join(literal(v) for v in f.enum) + "]"
    if f.multiple:
        return f"list[{_BASE[f.type]}]"
    return _BASE[f.type]


def field_type(f: FieldSpec) -> str:
    base = value_type(f)
    if f.nullable and f.type is not FieldType.JSON:
        return f"{base} | None"
    return base


def input_type(f: FieldSpec) -> str:
    """The field's type in create and update input: a file field can only be cleared."""
    return "None" if f.is_file else field_type(f)


def identifier(name: str) -> str:
    """A Python identifier for `name`: keywords and dashes get mended (`class` -> `class_`)."""
    ident = name.replace("-", "_")
    return ident + "_" if keyword.iskeyword(ident) else ident


def snake(name: str) -> str:
    """A snake_case Python identifier (`sendWelcome` -> `send_welcome`), as `client.jobs` spells jobs."""
    return identifier(re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower())


def needs_functional(fields: tuple[FieldSpec, ...]) -> bool:
    """True when a TypedDict must use the functional syntax (a key is a Python keyword)."""
    return any(keyword.iskeyword(f.name) for f in fields)


PYTHON = Language(
    name="python",
    folder="python",
    comment="#",
    blank_lines=2,
    filters={
        "py_type": field_type,
        "py_input": input_type,
        "py_value": value_type,
        "py_literal": literal,
        "py_ident": identifier,
        "py_snake": snake,
        "py_functional": needs_functional,
    },
)
