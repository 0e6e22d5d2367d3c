"""One field of schema.yaml: its options checked and turned into a `Field`.

Everything a single field can get wrong is found here (type, option names, validation
options, defaults, `references` syntax, option combinations); what needs the whole schema
(reference targets, primary keys, indexes) is checked by `schema.loader`. Every problem is
a `SchemaError` naming the file, line, column and key path, with a hint on how to fix it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson

from alyx_server.errors import Location, SchemaError
from alyx_server.schema.file_options import FILE_OPTIONS, parse_file_options
from alyx_server.schema.formats import FORMAT_CHECKS
from alyx_server.schema.model import Default, Field, FieldType, Reference, Validation
from alyx_server.schema.patterns import PatternError, compile_pattern
from alyx_server.tools.ids import is_uuid
from alyx_server.tools.suggest import closest
from alyx_server.tools.timestamps import format_timestamp, normalize_timestamp
from alyx_server.tools.yaml_lines import (
    YamlEntry,
    YamlMapping,
    YamlNode,
    YamlScalar,
    YamlSequence,
    kind_name,
)

__all__ = [
    "FIELD_OPTIONS",
    "NAME_PATTERN",
    "VALIDATION_OPTIONS",
    "SchemaSource",
    "canonical_timestamp",
    "check_name",
    "did_you_mean",
    "expect_mapping",
    "parse_field",
    "reject_unknown",
    "validation_problem",
    "value_problem",
]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
VALIDATION_OPTIONS = ("minLength", "maxLength", "min", "max", "pattern", "enum", "format")
FIELD_OPTIONS = (
    "type", "primary", "unique", "nullable", "index", "default", "references",
    "onDelete", "onUpdate", "internal", "clientWritable", "validate", *VALIDATION_OPTIONS,
    *FILE_OPTIONS,
)  # fmt: skip
_FLAGS = ("primary", "unique", "nullable", "index", "internal", "clientWritable")
_TEXT_TYPES = (FieldType.STRING, FieldType.TEXT)
_NUMBER_TYPES = (FieldType.INT, FieldType.FLOAT)
_ON_DELETE = ("restrict", "cascade", "set null")
_TYPE_LIST = ", ".join(t.value for t in FieldType)


@dataclass(frozen=True, slots=True)
class SchemaSource:
    """The file being read; builds located errors for it."""

    filename: str

    def location(self, node: YamlNode | None, path: str | None) -> Location:
        if node is None:
            return Location(self.filename, path=path)
        return Location(self.filename, node.line, node.column, path)

    def error(self, message: str, node: YamlNode | None, path: str | None, hint: str) -> SchemaError:
        return SchemaError(message, self.location(node, path), hint=hint)


def canonical_timestamp(value: object) -> str:
    """An ISO-8601 date or date-time (text, or the date/datetime YAML makes of it) in the
    storage format: UTC, milliseconds, `Z`. No time zone means UTC. ValueError otherwise."""
    if isinstance(value, datetime.datetime):
        return format_timestamp(value)
    if isinstance(value, datetime.date):
        return format_timestamp(datetime.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        return normalize_timestamp(value)
    raise ValueError(f"not a timestamp: {value!r}")


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _fits(ftype: FieldType, value: Any) -> bool:
    if ftype is FieldType.FILE:
        return False
    if ftype in (FieldType.STRING, FieldType.TEXT):
        return isinstance(value, str)
    if ftype is FieldType.UUID:
        return isinstance(value, str) and is_uuid(value)
    if ftype is FieldType.INT:
        # SQLite's INTEGER is 64-bit: a larger default would be stored as a rounded REAL.
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if ftype is FieldType.FLOAT:
        return _is_number(value)
    if ftype is FieldType.BOOL:
        return isinstance(value, bool)
    try:
        if ftype is FieldType.TIMESTAMP:
            canonical_timestamp(value)
        elif ftype is FieldType.JSON:
            json.dumps(value, allow_nan=False)
            orjson.dumps(value)  # what the database layer writes: no integers past 64 bits
        else:
            base64.b64decode(value, validate=True)
    except (ValueError, TypeError, binascii.Error):
        return False
    return True


_NOT_A = {
    FieldType.UUID: "is not a uuid",
    FieldType.STRING: "is not a string",
    FieldType.TEXT: "is not a string",
    FieldType.INT: "is not a whole number within the 64-bit range",
    FieldType.FLOAT: "is not a finite number",
    FieldType.BOOL: "is not true or false",
    FieldType.TIMESTAMP: "is not an ISO-8601 timestamp",
    FieldType.JSON: "cannot be stored as JSON (quote dates; no binary)",
    FieldType.BLOB: "is not a base64 string",
    FieldType.FILE: "cannot be a literal (files are uploaded)",
}


def value_problem(ftype: FieldType, value: Any) -> str | None:
    """Why `value` (as YAML or JSON gives it) is not a value of `ftype`, or None if it is."""
    return None if _fits(ftype, value) else _NOT_A[ftype]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`did you mean "x"? ` for the closest choice, or "" when nothing is close."""
    match = closest(word, choices)
    return f'did you mean "{match}"? ' if match else ""


def check_name(src: SchemaSource, key: YamlScalar, path: str, what: str) -> str:
    """A collection, field or index name: `^[a-z][a-z0-9_]*$`, `_alyx` reserved."""
    name = str(key.value)
    if name.startswith("_alyx"):
        raise src.error(
            f'the {what} name "{name}" is reserved: names starting with _alyx belong to '
            "Alyx's system tables",
            key, path, "choose another name",
        )  # fmt: skip
    if not NAME_PATTERN.match(name):
        suggestion = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
        tip = f'; try "{suggestion}"' if NAME_PATTERN.match(suggestion) else ""
        raise src.error(
            f'"{name}" is not a valid {what} name',
            key, path,
            "names start with a lower-case letter and use only a-z, 0-9 and _ "
            f"(^[a-z][a-z0-9_]*$){tip}",
        )  # fmt: skip
    return name


def expect_mapping(src: SchemaSource, node: YamlNode, path: str, what: str, example: str) -> YamlMapping:
    """`node` if it is a mapping, else an error showing `example`."""
    if not isinstance(node, YamlMapping):
        message = f"{what} must be a mapping, not {kind_name(node)}"
        raise src.error(message, node, path, f"write {example}")
    return node


def reject_unknown(
    src: SchemaSource, body: YamlMapping, path: str, known: tuple[str, ...], what: str
) -> None:
    """Refuse keys outside `known`, suggesting the closest known one."""
    for entry in body:
        if entry.name not in known:
            raise src.error(
                f'unknown {what} "{entry.name}"',
                entry.key, f"{path}.{entry.name}" if path else entry.name,
                f"{did_you_mean(entry.name, known)}known: {', '.join(known)}",
            )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Option:
    """One option of a field with the path it was written at (direct or under validate:)."""

    entry: YamlEntry
    path: str

    @property
    def node(self) -> YamlNode:
        return self.entry.value


def parse_field(src: SchemaSource, entry: YamlEntry, path: str) -> Field:
    """Check one `name: {type: ..., ...}` entry of a collection's `fields` and build it."""
    name = check_name(src, entry.key, path, "field")
    body = expect_mapping(src, entry.value, path, f'field "{name}"', "{ type: string }")
    options = _collect_options(src, body, path)
    ftype = _field_type(src, options.get("type"), body, path)
    file_options = None
    if ftype is FieldType.FILE:
        file_options = parse_file_options(src, options, path)
    else:
        _refuse_file_options(src, ftype, options)
    flags = {flag: _flag(src, options[flag]) for flag in _FLAGS if flag in options}
    validation = _validation(src, ftype, options)
    primary, nullable = flags.get("primary", False), flags.get("nullable", False)
    default = _default(src, ftype, options.get("default"), primary=primary, nullable=nullable)
    field = Field(
        name=name,
        type=ftype,
        primary=primary,
        unique=flags.get("unique", False),
        nullable=nullable,
        index=flags.get("index", False),
        default=default,
        references=_reference(src, options, nullable),
        on_update_now=_on_update(src, ftype, options.get("onUpdate")),
        internal=flags.get("internal", False),
        client_writable=flags.get("clientWritable", False),
        validation=validation,
        file=file_options,
        location=src.location(entry.key, path),
    )
    if field.client_writable and not field.server_sets:
        option = options["clientWritable"]
        raise src.error(
            "clientWritable applies only to a field the server sets (default: now or onUpdate: now)",
            option.node, option.path, "remove clientWritable: every other field is written by clients",
        )  # fmt: skip
    return field


def _refuse_file_options(src: SchemaSource, ftype: FieldType, options: Mapping[str, _Option]) -> None:
    for name in FILE_OPTIONS:
        if name in options:
            option = options[name]
            raise src.error(
                f'"{name}" applies only to file fields, not {ftype.value}',
                option.entry.key, option.path, f"remove {name} or change the type to file",
            )  # fmt: skip


def _collect_options(src: SchemaSource, body: YamlMapping, path: str) -> dict[str, _Option]:
    reject_unknown(src, body, path, FIELD_OPTIONS, "field option")
    options = {e.name: _Option(e, f"{path}.{e.name}") for e in body if e.name != "validate"}
    nested = body.get("validate")
    if nested is None or (isinstance(nested.value, YamlScalar) and nested.value.value is None):
        return options
    vpath = f"{path}.validate"
    block = expect_mapping(src, nested.value, vpath, "validate", "validate: { maxLength: 200 }")
    reject_unknown(src, block, vpath, VALIDATION_OPTIONS, "validation option")
    for e in block:
        if e.name in options:
            raise src.error(
                f'"{e.name}" is written twice: on the field '
                f"(line {options[e.name].entry.key.line}) and under validate:",
                e.key, f"{vpath}.{e.name}", "keep only one of them",
            )  # fmt: skip
        options[e.name] = _Option(e, f"{vpath}.{e.name}")
    return options


def _field_type(src: SchemaSource, option: _Option | None, body: YamlMapping, path: str) -> FieldType:
    if option is None:
        raise src.error("field has no type", body, path, f"add type: one of {_TYPE_LIST}")
    raw = option.node.value if isinstance(option.node, YamlScalar) else None
    if not isinstance(raw, str) or raw not in FieldType.__members__.values():
        shown = f'"{raw}"' if isinstance(raw, str) else kind_name(option.node)
        raise src.error(
            f"unknown field type {shown}",
            option.node, option.path,
            f"{did_you_mean(str(raw), (t.value for t in FieldType))}types: {_TYPE_LIST}",
        )  # fmt: skip
    return FieldType(raw)


def _scalar(option: _Option) -> Any:
    return option.node.value if isinstance(option.node, YamlScalar) else option.node.to_python()


def _flag(src: SchemaSource, option: _Option) -> bool:
    value = _scalar(option)
    if not isinstance(value, bool):
        raise src.error(
            f'"{option.entry.name}" must be true or false, not {kind_name(option.node)}',
            option.node, option.path, f"write {option.entry.name}: true",
        )  # fmt: skip
    return value


def _only_on(src: SchemaSource, option: _Option, ftype: FieldType, allowed: tuple[FieldType, ...]) -> None:
    if ftype not in allowed:
        names = " and ".join(t.value for t in allowed)
        raise src.error(
            f'"{option.entry.name}" applies only to {names} fields, not {ftype.value}',
            option.entry.key, option.path, f"remove {option.entry.name} or change the type",
        )  # fmt: skip


def _validation(src: SchemaSource, ftype: FieldType, options: Mapping[str, _Option]) -> Validation:
    lengths = {k: _length(src, ftype, options[k]) for k in ("minLength", "maxLength") if k in options}
    bounds = {k: _bound(src, ftype, options[k]) for k in ("min", "max") if k in options}
    _check_order(src, options, "minLength", "maxLength", lengths)
    _check_order(src, options, "min", "max", bounds)
    return Validation(
        min_length=lengths.get("minLength"),
        max_length=lengths.get("maxLength"),
        min=bounds.get("min"),
        max=bounds.get("max"),
        pattern=_pattern(src, ftype, options["pattern"]) if "pattern" in options else None,
        enum=_enum(src, ftype, options["enum"]) if "enum" in options else None,
        format=_format(src, ftype, options["format"]) if "format" in options else None,
    )


def _length(src: SchemaSource, ftype: FieldType, option: _Option) -> int:
    _only_on(src, option, ftype, _TEXT_TYPES)
    value = _scalar(option)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise src.error(
            f'"{option.entry.name}" must be a whole number of characters, 0 or more',
            option.node, option.path, f"write for example {option.entry.name}: 10",
        )  # fmt: skip
    return value


def _bound(src: SchemaSource, ftype: FieldType, option: _Option) -> int | float:
    _only_on(src, option, ftype, _NUMBER_TYPES)
    value = _scalar(option)
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not (whole if ftype is FieldType.INT else _is_number(value)):
        kind = "a whole number" if ftype is FieldType.INT else "a finite number"
        raise src.error(
            f'"{option.entry.name}" of an {ftype.value} field must be {kind}, '
            f"not {kind_name(option.node)}",
            option.node, option.path, f"write for example {option.entry.name}: 0",
        )  # fmt: skip
    return cast("int | float", value)


def _check_order(
    src: SchemaSource,
    options: Mapping[str, _Option],
    low: str,
    high: str,
    values: Mapping[str, Any],
) -> None:
    if low in values and high in values and values[low] > values[high]:
        option = options[high]
        raise src.error(
            f"{high} ({values[high]}) is smaller than {low} ({values[low]})",
            option.node, option.path, f"make {low} <= {high}",
        )  # fmt: skip


def _pattern(src: SchemaSource, ftype: FieldType, option: _Option) -> str:
    _only_on(src, option, ftype, _TEXT_TYPES)
    value = _scalar(option)
    if not isinstance(value, str):
        raise src.error(
            f"pattern must be a string, not {kind_name(option.node)}",
            option.node, option.path, "quote the regular expression",
        )  # fmt: skip
    try:
        compile_pattern(value)
    except PatternError as e:
        raise src.error(
            f"pattern is not a valid RE2 regular expression: {e}",
            option.node, option.path,
            "write an RE2 pattern (no backreferences or lookaround); "
            "in YAML, single quotes keep backslashes as is",
        ) from e  # fmt: skip
    return value


def _enum(src: SchemaSource, ftype: FieldType, option: _Option) -> tuple[Any, ...]:
    _only_on(src, option, ftype, (*_TEXT_TYPES, *_NUMBER_TYPES))
    node = option.node
    items = node.to_python() if not isinstance(node, YamlScalar) else None
    if not isinstance(items, list) or not items:
        raise src.error(
            "enum must be a non-empty list of allowed values",
            node, option.path, "write for example enum: [draft, published]",
        )  # fmt: skip
    for index, item in enumerate(items):
        problem = value_problem(ftype, item)
        at = node.items[index] if isinstance(node, YamlSequence) else node
        if problem is not None:
            raise src.error(
                f"enum value {item!r} {problem}", at, f"{option.path}[{index}]",
                "list only values of the field's type (quote numbers meant as strings)",
            )  # fmt: skip
        if item in items[:index]:
            raise src.error(
                f"enum value {item!r} is listed twice", at, f"{option.path}[{index}]",
                "list each value once",
            )  # fmt: skip
    return tuple(items)


def _format(src: SchemaSource, ftype: FieldType, option: _Option) -> Literal["email", "url", "uuid"]:
    _only_on(src, option, ftype, _TEXT_TYPES)
    value = _scalar(option)
    if value not in FORMAT_CHECKS:
        raise src.error(
            f"unknown format {value!r}",
            option.node, option.path,
            f"{did_you_mean(str(value), FORMAT_CHECKS)}formats: {', '.join(FORMAT_CHECKS)}",
        )  # fmt: skip
    return cast('Literal["email", "url", "uuid"]', value)


def _default(
    src: SchemaSource, ftype: FieldType, option: _Option | None, *, primary: bool, nullable: bool
) -> Default | None:
    if option is None:
        return None
    value = _scalar(option)
    if value == "auto":
        if ftype is FieldType.UUID or (ftype is FieldType.INT and primary):
            return Default("auto")
        what = "an int field that is not primary" if ftype is FieldType.INT else f"{ftype.value}"
        raise src.error(
            f"default: auto generates ids; it does not apply to {what}",
            option.node, option.path,
            "use it on a uuid field (random uuid4) or an int primary field (autoincrement)",
        )  # fmt: skip
    if value == "now":
        if ftype is FieldType.TIMESTAMP:
            return Default("now")
        raise src.error(
            f"default: now applies only to timestamp fields, not {ftype.value}",
            option.node, option.path, "change the type to timestamp or remove the default",
        )  # fmt: skip
    if value is None:
        if nullable:
            return None
        raise src.error(
            "default is null but the field is not nullable",
            option.node, option.path, "add nullable: true or give a default value",
        )  # fmt: skip
    return Default("literal", _literal(src, ftype, option, value))


def _literal(src: SchemaSource, ftype: FieldType, option: _Option, value: Any) -> Any:
    converters: dict[FieldType, Callable[[Any], Any]] = {
        FieldType.FLOAT: float,
        FieldType.TIMESTAMP: canonical_timestamp,
        FieldType.BLOB: lambda v: base64.b64encode(base64.b64decode(v, validate=True)).decode(),
    }
    problem = value_problem(ftype, value)
    if problem is None:
        return converters.get(ftype, lambda v: v)(value)
    example = {
        FieldType.TIMESTAMP: '"2026-01-31T12:00:00.000Z" (ISO-8601) or now',
        FieldType.UUID: '"0b7e2e4a-3c1d-4f7e-9a55-8a2f1f3c9d10" or auto',
        FieldType.BLOB: "a base64 string",
        FieldType.BOOL: "true or false",
    }.get(ftype, f"a value of type {ftype.value}")
    raise src.error(f"default {value!r} {problem}", option.node, option.path, f"write {example}")


def _reference(src: SchemaSource, options: Mapping[str, _Option], nullable: bool) -> Reference | None:
    on_delete = options.get("onDelete")
    option = options.get("references")
    if option is None:
        if on_delete is not None:
            raise src.error(
                "onDelete without references", on_delete.entry.key, on_delete.path,
                "add references: <collection>.<field> or remove onDelete",
            )  # fmt: skip
        return None
    value = _scalar(option)
    coll, _, target = value.partition(".") if isinstance(value, str) else ("", "", "")
    if not coll or not target or "." in target:
        raise src.error(
            f"references must be <collection>.<field>, not {value!r}",
            option.node, option.path, "write for example references: _alyx_users.id",
        )  # fmt: skip
    action = "restrict" if on_delete is None else _scalar(on_delete)
    if action not in _ON_DELETE:
        assert on_delete is not None
        raise src.error(
            f"unknown onDelete action {action!r}", on_delete.node, on_delete.path,
            f"{did_you_mean(str(action), _ON_DELETE)}actions: {', '.join(_ON_DELETE)}",
        )  # fmt: skip
    if action == "set null" and not nullable:
        assert on_delete is not None
        raise src.error(
            "onDelete: set null needs a nullable field", on_delete.node, on_delete.path,
            "add nullable: true or use cascade or restrict",
        )  # fmt: skip
    return Reference(coll, target, cast('Literal["restrict", "cascade", "set null"]', action))


def _on_update(src: SchemaSource, ftype: FieldType, option: _Option | None) -> bool:
    if option is None:
        return False
    if _scalar(option) != "now":
        raise src.error(
            f"onUpdate must be now, not {_scalar(option)!r}", option.node, option.path,
            "write onUpdate: now",
        )  # fmt: skip
    if ftype is not FieldType.TIMESTAMP:
        raise src.error(
            f"onUpdate: now applies only to timestamp fields, not {ftype.value}",
            option.node, option.path, "change the type to timestamp or remove onUpdate",
        )  # fmt: skip
    return True


def validation_problem(v: Validation, value: Any) -> str | None:
    """Why a value of the right type fails the field's validation, or None if it passes.

    `pattern` is RE2 and matches anywhere in the text unless anchored, as in JSON Schema.
    """
    lo_len, hi_len, pattern = v.min_length, v.max_length, v.pattern
    checks = (
        (lo_len is not None and len(value) < lo_len, f"is shorter than minLength {lo_len}"),
        (hi_len is not None and len(value) > hi_len, f"is longer than maxLength {hi_len}"),
        (v.min is not None and value < v.min, f"is below min {v.min}"),
        (v.max is not None and value > v.max, f"is above max {v.max}"),
        (pattern is not None and not compile_pattern(pattern).matches(value), f"does not match {pattern!r}"),
        (v.enum is not None and value not in v.enum, f"is not one of {list(v.enum or ())}"),
        (v.format is not None and not FORMAT_CHECKS[v.format](value), f"is not a valid {v.format}"),
    )
    return next((problem for failed, problem in checks if failed), None)
