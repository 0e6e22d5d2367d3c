"""Property: applying the diff between two random schemas to a filled database either gives
exactly the target schema with every row kept (values converted where types changed), or is
refused with a message and, after the caller's rollback, leaves the database as it was.

Destructive changes are allowed here: this stands in for the migration files that would
carry them. An independent Python model of each conversion checks the converted values.
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from alyx_server.errors import MigrationError
from alyx_server.schema.ddl import quote
from alyx_server.schema.diff import creation_order, diff_schemas
from alyx_server.schema.model import (
    USERS_TABLE,
    Collection,
    Field,
    FieldType,
    Index,
    Rules,
    Schema,
    Validation,
)
from alyx_server.schema.transition import apply_diff, create_collection, foreign_key_problems
from tests.alyx_server.schema.strategies import field_types, json_values, schemas, texts
from tests.alyx_server.schema.test_transition import CHANGES_DDL, shape

T = FieldType
USERS = ("7d2c5c1e-8a8e-4c55-9a55-0c1e2f3a4b5c", "1f0e6a53-6c7e-4d43-8f2b-3b1f8e5c2d10")
_PRIMARY_TYPES = (T.UUID, T.INT, T.STRING)
# A refusal comes from the pre-check or from foreign_key_check, never from a raw SQLite error.
_REFUSALS = re.compile(
    r"^schema change refused: .*(cannot become|have NULL|has NULL|duplicate values|"
    r"share the default|reference a missing)|^\d+ rows? in \S+ reference a missing"
)
# Conversions with a refusal condition, drawn more often than chance would.
_NEAR_TYPES: dict[FieldType, tuple[FieldType, ...]] = {
    T.INT: (T.BOOL, T.FLOAT, T.STRING),
    T.FLOAT: (T.INT, T.BOOL, T.TEXT),
    T.BOOL: (T.INT, T.STRING),
    T.STRING: (T.INT, T.FLOAT, T.BOOL, T.UUID, T.JSON, T.TIMESTAMP),
    T.TEXT: (T.INT, T.JSON, T.UUID, T.TIMESTAMP),
    T.UUID: (T.STRING, T.INT),
    T.JSON: (T.INT, T.FLOAT, T.BOOL, T.TEXT),
    T.TIMESTAMP: (T.STRING, T.INT),
    T.BLOB: (T.TEXT,),
}


# -- schemas ------------------------------------------------------------------------------


@st.composite
def _changed_field(draw: st.DrawFn, f: Field) -> Field | None:
    """`f` kept, dropped, retyped or with other constraints (None: dropped)."""
    op = draw(st.sampled_from(["keep", "drop", "retype", "retype", "constraints"]))
    if op == "drop":
        return None
    if op == "retype":
        ftype = draw(field_types | st.sampled_from(_NEAR_TYPES[f.type]))
        if ftype == f.type:
            return f
        return replace(f, type=ftype, default=None, validation=Validation(), on_update_now=False)
    if op == "constraints":
        return replace(f, nullable=draw(st.booleans()), unique=draw(st.booleans()), index=draw(st.booleans()))
    return f


@st.composite
def _changed_collection(draw: st.DrawFn, c: Collection, donor: Collection | None) -> Collection:
    primary = c.primary
    if draw(st.integers(0, 4)) == 0:
        ptype = draw(st.sampled_from(_PRIMARY_TYPES))
        if ptype != primary.type:
            primary = replace(primary, type=ptype, default=None, unique=False, validation=Validation())
    fields: list[Field] = [primary]
    for f in c.fields:
        if not f.primary:
            changed = draw(_changed_field(f))
            if changed is not None:
                fields.append(changed)
    if donor is not None:
        taken = {f.name for f in fields}
        fields += [f for f in donor.fields if not f.primary and f.name not in taken]
    indexes = [i for i in c.indexes if draw(st.booleans())]
    if draw(st.booleans()):
        names = [f.name for f in fields]
        cols = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        indexes.append(Index(f"ix_{c.name}_9", tuple(cols), unique=draw(st.booleans())))
    rules = c.rules if draw(st.booleans()) else Rules(read="true")
    return replace(c, fields=tuple(fields), indexes=tuple(indexes), rules=rules)


def _valid(schema: Schema) -> Schema:
    """Drop what a change made invalid: references to missing or non-unique targets of
    another type, `set null` on a required field, index fields that no longer exist."""
    out = []
    for c in schema:
        fields = []
        for f in c.fields:
            ref = f.references
            if ref is not None:
                target = schema.get(ref.collection)
                tf = target.field(ref.field) if target is not None else None
                users = ref.collection == USERS_TABLE and f.type is T.UUID
                if not users and (tf is None or tf.type != f.type or not (tf.primary or tf.unique)):
                    f = replace(f, references=None)
                elif ref.on_delete == "set null" and not f.nullable:
                    f = replace(f, references=replace(ref, on_delete="restrict"))
            fields.append(f)
        indexes = []
        for i in c.indexes:
            cols = tuple(n for n in i.fields if c.field(n) is not None)
            if cols:
                indexes.append(replace(i, fields=cols))
        out.append(replace(c, fields=tuple(fields), indexes=tuple(indexes)))
    return Schema(tuple(out))


@st.composite
def schema_pairs(draw: st.DrawFn) -> tuple[Schema, Schema]:
    """An old schema and a new one made from it by random edits of every kind."""
    old = draw(schemas(max_collections=3).filter(lambda s: len(s.collections) > 0))
    donors = draw(schemas(max_collections=3))
    new: list[Collection] = []
    for c in old:
        op = draw(st.sampled_from(["keep", "change", "change", "change", "drop"]))
        if op == "keep":
            new.append(c)
        elif op == "change":
            donor = draw(st.none() | st.sampled_from(donors.collections)) if donors.collections else None
            new.append(draw(_changed_collection(c, donor)))
    new += [c for c in donors if c.name not in old]
    return old, _valid(Schema(tuple(new)))


# -- rows -----------------------------------------------------------------------------------

_timestamps = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2100, 1, 1)
).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z")
_uuids = st.uuids().map(str)
_texts = (
    texts
    | st.integers(-5, 300).map(str)
    | st.sampled_from(["true", "false", "0", "1", "1.5", "[1]", '{"a":1}', "042", "1e3"])
    | _uuids
    | _timestamps
)
_VALUES: dict[FieldType, st.SearchStrategy[Any]] = {
    T.UUID: _uuids,
    T.STRING: _texts,
    T.TEXT: _texts,
    T.INT: st.integers(-3, 3) | st.integers(-(2**63), 2**63 - 1),
    T.FLOAT: st.sampled_from([0.0, 1.0, 2.5, 0.1]) | st.floats(allow_nan=False, allow_infinity=False),
    T.BOOL: st.sampled_from([0, 1]),
    T.TIMESTAMP: _timestamps,
    T.JSON: json_values.map(json.dumps),
    T.BLOB: st.binary(max_size=8),
}


def _value(
    data: st.DataObject, f: Field, table: str, row: dict[str, Any], stored: dict[str, list[dict[str, Any]]]
) -> Any:
    """A value for `f`; a reference picks an existing target (or the row itself)."""
    ref = f.references
    if f.nullable and data.draw(st.integers(0, 3)) == 0:
        return None
    if ref is None:
        return data.draw(_VALUES[f.type])
    if ref.collection == USERS_TABLE:
        return data.draw(st.sampled_from(USERS))
    targets = [r[ref.field] for r in stored.get(ref.collection, [])]
    if ref.collection == table and ref.field in row:
        targets.append(row[ref.field])
    targets = [t for t in targets if t is not None]
    if not targets:
        return None
    return data.draw(st.sampled_from(targets))


def fill(data: st.DataObject, conn: sqlite3.Connection, schema: Schema) -> None:
    """Insert up to five rows per collection, each valid for the schema (FKs on)."""
    stored: dict[str, list[dict[str, Any]]] = {}
    for c in creation_order(schema):
        names = list(c.field_names)
        cols = ", ".join(quote(n) for n in names)
        marks = ", ".join("?" for _ in names)
        stored[c.name] = []
        for _ in range(data.draw(st.integers(1, 5))):
            row: dict[str, Any] = {}
            for f in c.fields:
                row[f.name] = _value(data, f, c.name, row, stored)
            try:
                conn.execute(f"INSERT INTO {quote(c.name)} ({cols}) VALUES ({marks})", list(row.values()))
            except sqlite3.IntegrityError:
                continue
            stored[c.name].append(row)


# -- the database -----------------------------------------------------------------------------


def open_db(path: Path, schema: Schema) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    for sql in CHANGES_DDL:
        conn.execute(sql)
    conn.execute(f"CREATE TABLE {USERS_TABLE} (id TEXT PRIMARY KEY NOT NULL)")
    conn.executemany(f"INSERT INTO {USERS_TABLE} VALUES (?)", [(u,) for u in USERS])
    for c in creation_order(schema):
        create_collection(conn, c)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def rows(conn: sqlite3.Connection, c: Collection) -> dict[Any, dict[str, Any]]:
    cols = ", ".join(quote(n) for n in c.field_names)
    out = {}
    for values in conn.execute(f"SELECT {cols} FROM {quote(c.name)}"):
        row = dict(zip(c.field_names, values, strict=True))
        out[row[c.primary.name]] = row
    return out


# -- an independent model of the conversions -----------------------------------------------


class Refused(Exception):
    """The Python model finds no lossless conversion for a value."""


_TEXTUAL = (T.UUID, T.STRING, T.TEXT)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def expected(old: FieldType, new: FieldType, v: Any) -> Any:
    """What a stored value of type `old` must become as `new`; floats as text are checked
    by value (SQLite, not Python, chooses their digits)."""
    if v is None or old == new:
        return v
    if old is T.BOOL:
        return _from_bool(new, v)
    if old is T.INT:
        return _from_int(new, v)
    if old is T.FLOAT:
        return _from_float(new, v)
    if old in _TEXTUAL:
        return _from_text(new, v)
    if old is T.JSON:
        return _from_json(new, v)
    if old is T.TIMESTAMP and new in (T.STRING, T.TEXT):
        return v
    raise Refused


def _from_bool(new: FieldType, v: int) -> Any:
    if new is T.INT:
        return v
    if new is T.FLOAT:
        return float(v)
    if new in (T.STRING, T.TEXT, T.JSON):
        return "true" if v else "false"
    raise Refused


def _from_int(new: FieldType, v: int) -> Any:
    if new is T.FLOAT and abs(v) <= 2**53:
        return float(v)
    if new is T.BOOL and v in (0, 1):
        return v
    if new in (T.STRING, T.TEXT, T.JSON):
        return str(v)
    raise Refused


def _from_float(new: FieldType, v: float) -> Any:
    if new is T.INT and v == int(v) and abs(v) < 9.2e18:
        return int(v)
    if new is T.BOOL and v in (0.0, 1.0):
        return int(v)
    if new in (T.STRING, T.TEXT, T.JSON):
        return ("float text", v)
    raise Refused


def _from_text(new: FieldType, v: str) -> Any:
    if new in _TEXTUAL and (new is not T.UUID or _UUID.match(v)):
        return v
    if new is T.INT and re.fullmatch(r"-?[0-9]+", v) and str(int(v)) == v and abs(int(v)) < 2**63:
        return int(v)
    if new is T.FLOAT and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?", v):
        return float(v)
    if new is T.BOOL and v in ("0", "1", "true", "false"):
        return 1 if v in ("1", "true") else 0
    if new is T.TIMESTAMP and _TIMESTAMP.match(v):
        datetime.datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%fZ")
        return v
    if new is T.JSON:
        try:
            json.loads(v)
        except ValueError as e:
            raise Refused from e
        return v
    if new is T.BLOB:
        return v.encode()
    raise Refused


def _from_json(new: FieldType, v: str) -> Any:
    parsed = json.loads(v)
    if new in (T.STRING, T.TEXT):
        return v
    if new is T.INT and isinstance(parsed, int) and not isinstance(parsed, bool):
        return parsed
    if new is T.FLOAT and isinstance(parsed, int | float) and not isinstance(parsed, bool):
        return float(parsed)
    if new is T.BOOL and isinstance(parsed, bool):
        return int(parsed)
    raise Refused


def same(stored: Any, want: Any) -> bool:
    if isinstance(want, tuple) and want[:1] == ("float text",):
        return isinstance(stored, str) and float(stored) == want[1]
    return bool(stored == want and type(stored) is type(want))


# -- the property -----------------------------------------------------------------------------


@given(pair=schema_pairs(), data=st.data())
def test_a_diff_keeps_every_row_or_changes_nothing(
    tmp_path: Path, pair: tuple[Schema, Schema], data: st.DataObject
) -> None:
    old, new = pair
    name = uuid.uuid4().hex
    conn = open_db(tmp_path / f"{name}.db", old)
    fill(data, conn, old)
    before_rows = {c.name: rows(conn, c) for c in old}
    before_dump = list(conn.iterdump())
    logged = conn.execute("SELECT COUNT(*) FROM _alyx_changes").fetchone()
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("BEGIN")
    try:
        apply_diff(conn, diff_schemas(old, new), allow_destructive=True)
        problems = foreign_key_problems(conn)
        if problems:
            raise MigrationError("; ".join(problems))
    except MigrationError as e:
        conn.execute("ROLLBACK")
        event("refused")
        assert _REFUSALS.search(str(e)), str(e)
        assert list(conn.iterdump()) == before_dump
        return
    conn.execute("COMMIT")
    event("applied")
    fresh = open_db(tmp_path / f"{name}.fresh.db", new)
    assert shape(conn) == shape(fresh)
    assert conn.execute("SELECT COUNT(*) FROM _alyx_changes").fetchone() == logged
    for c in new:
        before = old.get(c.name)
        if before is not None:
            check_rows(before, c, before_rows[c.name], rows(conn, c))


def check_rows(
    old: Collection, new: Collection, before: dict[Any, dict[str, Any]], after: dict[Any, Any]
) -> None:
    """Every old row is there under its (converted) key with its surviving values."""
    assert len(after) == len(before)
    pk_old, pk_new = old.primary, new.primary
    kept = [f for f in new.fields if old.field(f.name) is not None]
    for key, row in before.items():
        new_key = expected(pk_old.type, pk_new.type, key)
        new_key = float(new_key[1]) if isinstance(new_key, tuple) else new_key
        assert new_key in after, (new.name, key)
        for f in kept:
            source = old.field(f.name)
            assert source is not None
            want = expected(source.type, f.type, row[f.name])
            assert same(after[new_key][f.name], want), (new.name, f.name, row[f.name])


# Pairs whose SQL refuses more than the Python model: SQLite cannot tell every number
# literal from other text, so only its own canonical forms convert; and its printf does
# not round-trip every double at the far ends of the exponent range.
_STRICTER_IN_SQL = {(t, T.FLOAT) for t in _TEXTUAL} | {(T.FLOAT, t) for t in (T.STRING, T.TEXT, T.JSON)}


# File fields have no drawn values (a change to or from file converts only NULLs).
_DRAWN = [t for t in FieldType if t is not FieldType.FILE]


@pytest.mark.parametrize(("old", "new"), [(a, b) for a in _DRAWN for b in _DRAWN if a != b], ids=str)
@settings(max_examples=4)  # per pair, for 72 pairs
@given(data=st.data())
def test_a_type_change_converts_each_value_or_names_every_refused_row(
    tmp_path: Path, old: FieldType, new: FieldType, data: st.DataObject
) -> None:
    values = data.draw(st.lists(st.none() | _VALUES[old], min_size=1, max_size=6))
    key = Field("id", T.STRING, primary=True)
    before = Schema((Collection("things", (key, Field("v", old, nullable=True))),))
    after = Schema((Collection("things", (key, Field("v", new, nullable=True))),))
    conn = open_db(tmp_path / f"{uuid.uuid4().hex}.db", before)
    conn.executemany("INSERT INTO things VALUES (?, ?)", [(f"r{i}", v) for i, v in enumerate(values)])
    stored = dict(conn.execute("SELECT id, v FROM things").fetchall())
    wanted: dict[str, Any] = {}
    for key_value, v in stored.items():
        try:
            wanted[key_value] = expected(old, new, v)
        except Refused:
            continue
    refused = sorted(set(stored) - set(wanted))
    conn.execute("BEGIN")
    try:
        apply_diff(conn, diff_schemas(before, after), allow_destructive=True)
    except MigrationError as e:
        conn.execute("ROLLBACK")
        message = re.fullmatch(
            rf"schema change refused: (\d+) rows? in things\.v cannot become {new} "
            r"\(ids: ([^)]*)\)",
            str(e),
        )
        assert message is not None, str(e)
        ids = message.group(2).split(", ")
        if (old, new) in _STRICTER_IN_SQL:
            assert int(message.group(1)) >= len(refused)
        else:
            assert int(message.group(1)) == len(refused)
            assert ids == refused[:5] + (["..."] if len(refused) > 5 else [])
        return
    conn.execute("COMMIT")
    assert refused == []
    after_rows = dict(conn.execute("SELECT id, v FROM things").fetchall())
    for key_value, want in wanted.items():
        assert same(after_rows[key_value], want), (key_value, stored[key_value], want)
