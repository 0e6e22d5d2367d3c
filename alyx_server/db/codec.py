"""Documents in and out of SQLite: type conversion both ways and validation from the schema.

A document travels as JSON (bools, parsed json values, ISO timestamps, base64 blobs) and
is stored as SQLite values (INTEGER 0/1, TEXT, TEXT, BLOB). Each collection is compiled
once into a `CollectionCodec` holding per-field converters, validators and the SQL the
CRUD layer runs, so the hot path does no schema walking.

Validation reports every failing field at once, with the field codes of the REST API:
`required invalid_type min_length max_length min_value max_value pattern enum
format_email format_url format_uuid`, plus `unknown_field` for an input key the
collection does not have and `immutable` for an attempt to change the primary key.
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from alyx_server.db.validation import Check, InvalidValue, field_checks
from alyx_server.errors import FieldIssue, ValidationError
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import Collection, Field, FieldType
from alyx_server.tools.ids import is_uuid, new_id
from alyx_server.tools.timestamps import (
    SYSTEM_CLOCK,
    Clock,
    TimestampOutOfRange,
    format_timestamp,
    now_timestamp,
    parse_rfc3339,
)

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_CLIENT_ID",
    "CollectionCodec",
    "FieldCodec",
    "codec_for",
    "decode_row",
    "encode_doc",
    "int64",
    "with_defaults",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The largest id a client may choose for an automatic integer primary key (see client_id_issue).
MAX_CLIENT_ID = 2**53 - 1
# The largest magnitude up to which every whole number is exactly a float.
FLOAT_EXACT_MAX = 2**53
_EXAMPLE_UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
_TIMESTAMP_KIND = "an RFC 3339 timestamp with a zone, such as 2026-01-31T12:00:00.000Z"
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_STORED_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

Converter = Callable[[Any], Any]
# (position in the row, field name, decoder or None for values stored as they travel)
DecodeSpec = tuple[tuple[int, str, Converter | None], ...]


# -- JSON value -> SQLite value, per type -----------------------------------------------
def _text(name: str, kind: str) -> Converter:
    def convert(v: Any) -> Any:
        if not isinstance(v, str):
            raise InvalidValue("invalid_type", f"{name} must be {kind}")
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InvalidValue("invalid_type", f"{name} must be valid Unicode text") from e
        return v

    return convert


def _uuid(name: str) -> Converter:
    as_text = _text(name, "a UUID string")

    def convert(v: Any) -> Any:
        if not is_uuid(as_text(v)):
            raise InvalidValue("format_uuid", f"{name} must be a UUID such as {_EXAMPLE_UUID}")
        return v

    return convert


def int64(v: Any) -> int | None:
    """`v` as a 64-bit integer (SQLite's INTEGER), or None if it is not exactly one.

    A float counts when it is whole and within ±2**53: beyond that a JSON parser may
    already have rounded the number the client wrote (orjson reads -9223372036854775809
    as the float -2**63), so taking it would store another number than the one sent.
    """
    if isinstance(v, bool):
        return None
    if isinstance(v, float):
        if not v.is_integer() or abs(v) > FLOAT_EXACT_MAX:
            return None
        v = int(v)
    if not isinstance(v, int) or not INT64_MIN <= v <= INT64_MAX:
        return None
    return v


def _int(name: str) -> Converter:
    def convert(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidValue("invalid_type", f"{name} must be an integer")
        out = int64(v)
        if out is not None:
            return out
        if isinstance(v, float) and not v.is_integer():
            raise InvalidValue("invalid_type", f"{name} must be an integer, not {v!r}")
        if isinstance(v, float) and INT64_MIN <= v <= INT64_MAX:
            raise InvalidValue(
                "invalid_type", f"{name} must be written as an integer: {v!r} is a rounded number"
            )
        raise InvalidValue("invalid_type", f"{name} is outside the 64-bit integer range")

    return convert


def _float(name: str) -> Converter:
    def convert(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidValue("invalid_type", f"{name} must be a number")
        try:
            out = float(v)
        except OverflowError as e:
            raise InvalidValue("invalid_type", f"{name} is too large for a float") from e
        if not math.isfinite(out):
            raise InvalidValue("invalid_type", f"{name} must be a finite number")
        return out

    return convert


def _bool(name: str) -> Converter:
    def convert(v: Any) -> Any:
        if not isinstance(v, bool):
            raise InvalidValue("invalid_type", f"{name} must be true or false")
        return 1 if v else 0

    return convert


def _timestamp(name: str) -> Converter:
    def convert(v: Any) -> Any:
        if isinstance(v, datetime):
            return format_timestamp(v)
        try:
            if isinstance(v, str) and len(v) == 24 and _STORED_TS.fullmatch(v):
                # Already in the storage format (the common case): only check the date exists.
                datetime.fromisoformat(v[:-1])
                return v
            return format_timestamp(parse_rfc3339(v))
        except TimestampOutOfRange as e:
            raise InvalidValue("invalid_type", f"{name}: {e}") from e
        except (ValueError, TypeError) as e:
            raise InvalidValue("invalid_type", f"{name} must be {_TIMESTAMP_KIND}") from e

    return convert


def _json(name: str) -> Converter:
    def convert(v: Any) -> Any:
        try:
            return orjson.dumps(v).decode()
        except TypeError as e:
            raise InvalidValue("invalid_type", f"{name} must be a JSON value ({e})") from e

    return convert


def _blob(name: str) -> Converter:
    def convert(v: Any) -> Any:
        if isinstance(v, bytes | bytearray | memoryview):
            return bytes(v)
        if not isinstance(v, str):
            raise InvalidValue("invalid_type", f"{name} must be a base64 string")
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidValue("invalid_type", f"{name} must be a base64 string") from e

    return convert


def _file(name: str) -> Converter:
    # File metadata is never taken from client JSON (api/operations.check_input_keys refuses
    # it); the upload path gives the values it built from what it stored (storage/files.py).
    def convert(v: Any) -> Any:
        if not isinstance(v, dict | list):
            message = f"{name} is a file field: upload files with multipart/form-data"
            raise InvalidValue("invalid_type", message)
        return orjson.dumps(v).decode()

    return convert


_CONVERTERS: Mapping[FieldType, Callable[[str], Converter]] = {
    FieldType.UUID: _uuid,
    FieldType.STRING: lambda n: _text(n, "a string"),
    FieldType.TEXT: lambda n: _text(n, "a string"),
    FieldType.INT: _int,
    FieldType.FLOAT: _float,
    FieldType.BOOL: _bool,
    FieldType.TIMESTAMP: _timestamp,
    FieldType.JSON: _json,
    FieldType.BLOB: _blob,
    FieldType.FILE: _file,
}


# -- SQLite value -> JSON value ---------------------------------------------------------
def _decode_bool(v: Any) -> Any:
    return None if v is None else bool(v)


def _decode_json(v: Any) -> Any:
    return None if v is None else orjson.loads(v)


def _decode_blob(v: Any) -> Any:
    return None if v is None else base64.b64encode(v).decode("ascii")


_DECODERS: Mapping[FieldType, Converter] = {
    FieldType.BOOL: _decode_bool,
    FieldType.JSON: _decode_json,
    FieldType.BLOB: _decode_blob,
    FieldType.FILE: _decode_json,
}


@dataclass(frozen=True, slots=True)
class FieldCodec:
    """One field compiled: JSON -> SQLite conversion with its checks, and the way back."""

    field: Field
    convert: Converter
    checks: tuple[Check, ...]
    decode: Converter | None

    def encode(self, value: Any) -> Any:
        """The stored form of `value` (None stays NULL); raises InvalidValue."""
        if value is None:
            if not self.field.nullable:
                raise InvalidValue("required", f"{self.field.name} is required and cannot be null")
            return None
        stored = self.convert(value)
        for check in self.checks:
            check(value, stored)
        return stored


def _compile_field(f: Field) -> FieldCodec:
    return FieldCodec(f, _CONVERTERS[f.type](f.name), tuple(field_checks(f)), _DECODERS.get(f.type))


@dataclass(slots=True)
class CollectionCodec:
    """A collection compiled once: field codecs, decoding tables and CRUD SQL."""

    collection: Collection
    fields: dict[str, FieldCodec]
    pk: Field
    table: str
    columns_sql: str
    insert_sql: str
    insert_sql_no_pk: str
    insert_names: tuple[str, ...]
    insert_names_no_pk: tuple[str, ...]
    select_sql: str
    delete_sql: str
    # (position, name, decoder) of the fields a reader may see.
    public: DecodeSpec
    everything: DecodeSpec
    public_names: tuple[str, ...]
    on_update: tuple[str, ...]
    defaults: tuple[Field, ...]
    # Fields only the server writes (`default: now`, `onUpdate: now`, not clientWritable).
    server_managed: frozenset[str]
    _update_sql: dict[tuple[str, ...], str] = field(default_factory=dict)
    _decoders: dict[tuple[str, ...], DecodeSpec] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.collection.name

    def unknown_field_message(self, key: str) -> str:
        return f"unknown field {key!r}; fields of {self.name} are: {', '.join(self.public_names)}"

    def server_managed_issues(self, data: Mapping[str, Any]) -> list[FieldIssue]:
        """A `read_only` issue for each key of client input that only the server may write."""
        issues = []
        for key in data:
            if key in self.server_managed:
                f = self.fields[key].field
                how = "onUpdate: now" if f.on_update_now else "default: now"
                message = (
                    f"{key} is set by the server ({how}); leave it out of the request "
                    "(or mark the field clientWritable: true in schema.yaml)"
                )
                issues.append(FieldIssue(key, "read_only", message))
        return issues

    def client_id_issue(self, values: Mapping[str, Any]) -> FieldIssue | None:
        """Why a client-chosen automatic integer id is refused, or None.

        SQLite gives the next automatic id as the largest so far plus one, and a random
        free one once 2^63-1 is taken; a bound far below keeps them sequential (and exact
        in JavaScript, whose numbers are exact up to 2^53-1).
        """
        pk = self.pk
        if pk.type is not FieldType.INT or pk.default is None or pk.default.kind != "auto":
            return None
        value = values.get(pk.name)
        if not isinstance(value, int) or value <= MAX_CLIENT_ID:
            return None
        message = (
            f"{pk.name} must be at most {MAX_CLIENT_ID} (2^53-1) when given; "
            "leave it out to get the next automatic id"
        )
        return FieldIssue(pk.name, "max_value", message)

    def encode(self, data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
        """Validate and convert a JSON-level document; every problem in one ValidationError."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"a {self.name} document must be a JSON object")
        out: dict[str, Any] = {}
        issues: list[FieldIssue] = []
        fields = self.fields
        for key, value in data.items():
            fc = fields.get(key)
            if fc is None:
                issues.append(FieldIssue(str(key), "unknown_field", self.unknown_field_message(str(key))))
                continue
            try:
                out[key] = fc.encode(value)
            except InvalidValue as e:
                issues.append(FieldIssue(key, e.code, e.message))
        if not partial:
            for name, fc in fields.items():
                f = fc.field
                if name not in data and f.required_on_create:
                    if f.primary and f.type is FieldType.INT:
                        continue
                    issues.append(FieldIssue(name, "required", f"{name} is required"))
                elif name not in data and not (f.primary and f.type is FieldType.INT):
                    out.setdefault(name, None)
        if issues:
            listed = "; ".join(i.message for i in issues)
            raise ValidationError(f"invalid {self.name} document: {listed}", issues)
        return out

    def decode(self, row: Sequence[Any], *, internal: bool = False) -> dict[str, Any]:
        """A row in `columns_sql` order back to a JSON-level document."""
        out: dict[str, Any] = {}
        for pos, name, dec in self.everything if internal else self.public:
            value = row[pos]
            out[name] = value if dec is None else dec(value)
        return out

    def decoder_for(self, columns: tuple[str, ...]) -> DecodeSpec:
        """(position, name, decoder) for rows selecting `columns`, cached per column list."""
        spec = self._decoders.get(columns)
        if spec is None:
            spec = tuple((i, n, self.fields[n].decode) for i, n in enumerate(columns))
            if len(self._decoders) < 512:
                self._decoders[columns] = spec
        return spec

    def project(self, doc: dict[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
        """A decoded document cut down to `names`, or to its public fields when None."""
        wanted = self.public_names if names is None else names
        return {n: doc[n] for n in wanted}

    def with_defaults(self, data: Mapping[str, Any], clock: Clock) -> dict[str, Any]:
        """`data` plus the defaults of the fields it lacks, as JSON values."""
        doc = dict(data)
        now: str | None = None
        for f in self.defaults:
            if f.name in doc or f.default is None:
                continue
            if f.default.kind == "auto":
                if f.type is not FieldType.INT:
                    doc[f.name] = new_id()
            elif f.default.kind == "now":
                now = now or now_timestamp(clock)
                doc[f.name] = now
            else:
                doc[f.name] = copy.deepcopy(f.default.value)
        return doc

    def update_sql(self, names: tuple[str, ...]) -> str:
        """`UPDATE ... SET a = ?, b = ? WHERE pk = ? RETURNING ...`, cached per field set."""
        sql = self._update_sql.get(names)
        if sql is None:
            sets = ", ".join(f"{quote(n)} = ?" for n in names)
            sql = (
                f"UPDATE {self.table} SET {sets} WHERE {quote(self.pk.name)} = ? RETURNING {self.columns_sql}"
            )
            if len(self._update_sql) < 512:
                self._update_sql[names] = sql
        return sql

    def key(self, doc_id: Any) -> Any:
        """A document id as the primary key column holds it, or None if it cannot be one."""
        if self.pk.type is FieldType.INT:
            # An id beyond SQLite's 64-bit range names no document (never an overflow).
            if isinstance(doc_id, str):
                text = doc_id.strip()
                if not _INT_TEXT.fullmatch(text) or len(text) > 20:
                    return None
                doc_id = int(text)
            return int64(doc_id) if isinstance(doc_id, int) else None
        return doc_id if isinstance(doc_id, str) else str(doc_id)


def _compile(collection: Collection) -> CollectionCodec:
    fields = {f.name: _compile_field(f) for f in collection.fields}
    pk = collection.primary
    table = quote(collection.name)
    names = [f.name for f in collection.fields]
    cols = ", ".join(quote(n) for n in names)
    no_pk = [n for n in names if n != pk.name]

    def insert(ns: list[str]) -> str:
        marks = ", ".join("?" for _ in ns)
        names = ", ".join(quote(n) for n in ns)
        return f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING {cols}"

    everything = tuple((i, f.name, _DECODERS.get(f.type)) for i, f in enumerate(collection.fields))
    return CollectionCodec(
        collection=collection,
        fields=fields,
        pk=pk,
        table=table,
        columns_sql=cols,
        insert_sql=insert(names),
        insert_sql_no_pk=insert(no_pk),
        insert_names=tuple(names),
        insert_names_no_pk=tuple(no_pk),
        select_sql=f"SELECT {cols} FROM {table} WHERE {quote(pk.name)} = ?",
        delete_sql=f"DELETE FROM {table} WHERE {quote(pk.name)} = ?",
        public=tuple(e for e, f in zip(everything, collection.fields, strict=True) if not f.internal),
        everything=everything,
        public_names=tuple(f.name for f in collection.fields if not f.internal),
        on_update=tuple(f.name for f in collection.fields if f.on_update_now),
        defaults=tuple(f for f in collection.fields if f.default is not None),
        server_managed=frozenset(f.name for f in collection.fields if f.server_managed),
    )


# A memo of a pure function of an immutable value (collections are frozen); the entry
# keeps its collection alive, so an id is never reused while it is cached.
_MEMO: dict[int, tuple[Collection, CollectionCodec]] = {}


def codec_for(collection: Collection) -> CollectionCodec:
    """The compiled codec of `collection` (compiled on first use, then reused)."""
    entry = _MEMO.get(id(collection))
    if entry is not None and entry[0] is collection:
        return entry[1]
    codec = _compile(collection)
    if len(_MEMO) >= 1024:
        _MEMO.clear()
    _MEMO[id(collection)] = (collection, codec)
    return codec


def encode_doc(collection: Collection, data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Validate a JSON-level document and convert it to SQLite values (see module docstring).

    `partial=True` (updates) checks only the keys given; otherwise required fields must be
    present and absent optional fields become NULL.
    """
    return codec_for(collection).encode(data, partial=partial)


def decode_row(collection: Collection, row: Sequence[Any], *, internal: bool = False) -> dict[str, Any]:
    """A row holding every field in schema order, as a JSON-level document.

    `internal` fields are left out unless `internal=True` (server-side code such as auth).
    """
    return codec_for(collection).decode(row, internal=internal)


def with_defaults(
    collection: Collection, data: Mapping[str, Any], *, clock: Clock = SYSTEM_CLOCK
) -> dict[str, Any]:
    """`data` with defaults applied (new uuid for `auto`, the clock for `now`, literals).

    Done in Python rather than by SQLite so that a create rule sees the final document.
    """
    return codec_for(collection).with_defaults(data, clock)
