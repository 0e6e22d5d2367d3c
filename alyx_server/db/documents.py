"""CRUD on collection tables, for use inside `Database.write` / `Database.read` functions.

Each function takes the connection it runs on, so several of them compose into one
transaction (`db.write(lambda conn: ...)`). Documents go in and come out as JSON values
(see `codec`); SQLite's constraint errors come back as Alyx errors naming the field:
UNIQUE -> Conflict UNIQUE_VIOLATION, FOREIGN KEY -> Conflict FOREIGN_KEY_VIOLATION,
NOT NULL -> ValidationError `required`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alyx_server.db.codec import CollectionCodec, codec_for
from alyx_server.db.constraints import ConstraintViolation, map_integrity_errors
from alyx_server.db.query import CHECKING, ListQuery, ListSQL, build_list_sql
from alyx_server.errors import AlyxError, Conflict, FieldIssue, NotFound, ValidationError
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import Collection
from alyx_server.schema.system_tables import CHANGES_TABLE
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock, now_timestamp

__all__ = [
    "ListResult",
    "delete_doc",
    "get_doc",
    "insert_doc",
    "list_docs",
    "update_doc",
]


@dataclass(frozen=True, slots=True)
class ListResult:
    """One page of documents; `total` is None when it was not asked for."""

    docs: list[dict[str, Any]]
    total: int | None
    limit: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"docs": self.docs, "limit": self.limit, "offset": self.offset}
        if self.total is not None:
            out["total"] = self.total
        return out


def _not_found(codec: CollectionCodec, doc_id: Any) -> NotFound:
    return NotFound(f"no document {doc_id!r} in {codec.name}")


def insert_doc(
    conn: sqlite3.Connection,
    collection: Collection,
    data: Mapping[str, Any],
    *,
    clock: Clock = SYSTEM_CLOCK,
    internal: bool = False,
) -> dict[str, Any]:
    """Create a document: defaults, validation, INSERT; returns the stored document.

    `internal=True` also returns `internal` fields (for server-side callers such as auth).
    """
    codec = codec_for(collection)
    values = codec.encode(codec.with_defaults(data, clock))
    issue = codec.client_id_issue(values)
    if issue is not None:
        raise ValidationError(f"invalid {codec.name} document: {issue.message}", [issue])
    if codec.pk.name in values:
        sql, names = codec.insert_sql, codec.insert_names
    else:
        sql, names = codec.insert_sql_no_pk, codec.insert_names_no_pk
    with map_integrity_errors(lambda violation: _translate(conn, codec, violation, values)):
        row = conn.execute(sql, tuple([values[n] for n in names])).fetchone()
    return codec.decode(row, internal=internal)


def update_doc(
    conn: sqlite3.Connection,
    collection: Collection,
    doc_id: Any,
    changes: Mapping[str, Any],
    *,
    clock: Clock = SYSTEM_CLOCK,
    internal: bool = False,
) -> dict[str, Any]:
    """Apply a partial update; NotFound if there is no such document.

    `onUpdate: now` fields are set here to the clock's time (RETURNING does not see what
    triggers do), whatever the changes say, unless the field is `clientWritable` and the
    changes set it. Changing the primary key is refused (`immutable`). Empty changes
    return the document untouched.
    """
    codec = codec_for(collection)
    key = codec.key(doc_id)
    pk = codec.pk.name
    if pk in changes:
        if codec.key(changes[pk]) != key:
            message = f"{pk} cannot be changed"
            raise ValidationError(
                f"invalid {codec.name} document: {message}", [FieldIssue(pk, "immutable", message)]
            )
        changes = {k: v for k, v in changes.items() if k != pk}
    values = codec.encode(changes, partial=True)
    if not values:
        doc = get_doc(conn, collection, doc_id, internal=internal)
        if doc is None:
            raise _not_found(codec, doc_id)
        return doc
    if codec.on_update:
        now = now_timestamp(clock)
        for name in codec.on_update:
            if name in codec.server_managed:
                values[name] = now
            else:
                values.setdefault(name, now)
    if key is None:
        raise _not_found(codec, doc_id)
    with map_integrity_errors(lambda violation: _translate(conn, codec, violation, values)):
        row = conn.execute(codec.update_sql(tuple(values)), (*values.values(), key)).fetchone()
    if row is None:
        raise _not_found(codec, doc_id)
    return codec.decode(row, internal=internal)


def delete_doc(conn: sqlite3.Connection, collection: Collection, doc_id: Any) -> None:
    """Delete a document: NotFound if absent, Conflict if a `restrict` reference holds it."""
    codec = codec_for(collection)
    key = codec.key(doc_id)
    if key is None:
        raise _not_found(codec, doc_id)
    with map_integrity_errors(lambda violation: _still_referenced(codec, doc_id, violation)):
        cursor = conn.execute(codec.delete_sql, (key,))
    if cursor.rowcount == 0:
        raise _not_found(codec, doc_id)


def get_doc(
    conn: sqlite3.Connection, collection: Collection, doc_id: Any, *, internal: bool = False
) -> dict[str, Any] | None:
    """One document by primary key, or None."""
    codec = codec_for(collection)
    key = codec.key(doc_id)
    if key is None:
        return None
    row = conn.execute(codec.select_sql, (key,)).fetchone()
    return None if row is None else codec.decode(row, internal=internal)


def list_docs(conn: sqlite3.Connection, query: ListQuery) -> ListResult:
    """Run a list query: one page of documents and, when asked, the total.

    Page and count read one snapshot. With Python checks, rows are filtered here and
    limit, offset and total count only the rows that pass.
    """
    plan = build_list_sql(query)
    own_txn = not conn.in_transaction
    if own_txn and plan.count is not None:
        conn.execute("BEGIN")
    try:
        if plan.checks:
            return _list_checked(conn, query, plan)
        codec = codec_for(query.collection)
        spec = codec.decoder_for(plan.columns)
        docs = []
        for row in conn.execute(plan.select, plan.params):
            doc = {}
            for pos, name, dec in spec:
                value = row[pos]
                doc[name] = value if dec is None else dec(value)
            docs.append(doc)
        total = None
        if plan.count is not None:
            total = _count(conn, plan.count, plan.count_params, remember=own_txn)
        return ListResult(docs, total, plan.limit, plan.offset)
    finally:
        if own_txn and conn.in_transaction:
            conn.execute("COMMIT")


# Every committed insert, update and delete of a collection row adds a row to the change
# log (triggers, in every process), and its AUTOINCREMENT counter never goes back.
_HIGH_WATER = f"SELECT seq FROM sqlite_sequence WHERE name = '{CHANGES_TABLE}'"
_MAX_TOTALS = 1024


def _count(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...], *, remember: bool) -> int:
    """`SELECT count(*) ...`, remembered per connection until the change log moves on.

    The total is the most expensive part of a list (a count of 1,000 index entries costs
    more than the page of 20). Read in the same transaction as the page, the change log's
    high-water mark names the committed state of every collection: the same mark means
    the same rows, so the same count. Only in a read transaction this function opened
    (`remember`): inside a caller's write transaction the mark can be rolled back.
    """
    totals: dict[tuple[str, tuple[Any, ...]], tuple[int, int]] | None = getattr(conn, "totals", None)
    if not remember or totals is None:
        return int(conn.execute(sql, params).fetchone()[0])
    try:
        row = conn.execute(_HIGH_WATER).fetchone()
    except sqlite3.OperationalError:  # a file without the change log
        row = None
    if row is None:
        return int(conn.execute(sql, params).fetchone()[0])
    mark = row[0]
    key = (sql, params)
    hit = totals.get(key)
    if hit is not None and hit[0] == mark:
        return hit[1]
    total = int(conn.execute(sql, params).fetchone()[0])
    if len(totals) >= _MAX_TOTALS:
        totals.clear()
    totals[key] = (mark, total)
    return total


def _list_checked(conn: sqlite3.Connection, query: ListQuery, plan: ListSQL) -> ListResult:
    codec = codec_for(query.collection)
    checks = plan.checks
    start, stop = plan.offset, plan.offset + plan.limit
    docs: list[dict[str, Any]] = []
    passed = 0
    # A check that reads other rows (a rule's lookups) reads them through this connection.
    token = CHECKING.set(conn)
    try:
        for row in conn.execute(plan.select, plan.params):
            doc = codec.decode(row, internal=True)
            if not all(check(doc) for check in checks):
                continue
            if start <= passed < stop:
                docs.append(codec.project(doc, plan.fields))
            passed += 1
            if passed >= stop and not query.with_total:
                break
    finally:
        CHECKING.reset(token)
    return ListResult(docs, passed if query.with_total else None, plan.limit, plan.offset)


# -- constraint errors -------------------------------------------------------------------
def _translate(
    conn: sqlite3.Connection,
    codec: CollectionCodec,
    violation: ConstraintViolation,
    values: Mapping[str, Any],
) -> AlyxError | None:
    """A failed write of a document: 409 for a unique value or a missing reference, 400
    for a required field; None (a bug, raised as it is) for anything else."""
    if violation.kind == "unique":
        names = violation.columns
        what = " and ".join(names) or "value"
        return Conflict(
            f"{codec.name} already has a document with this {what}",
            code="UNIQUE_VIOLATION",
            field=",".join(names) or None,
        )
    if violation.kind == "not_null" and violation.columns:
        name = violation.columns[0]
        message = f"{name} is required"
        return ValidationError(
            f"invalid {codec.name} document: {message}", [FieldIssue(name, "required", message)]
        )
    if violation.kind == "foreign_key":
        missing = _missing_reference(conn, codec, values)
        if missing is None:
            return Conflict(
                f"a reference of this {codec.name} document does not exist",
                code="FOREIGN_KEY_VIOLATION",
            )
        ref = codec.fields[missing].field.references
        assert ref is not None
        return Conflict(
            f"{missing} refers to a {ref.collection} document that does not exist",
            code="FOREIGN_KEY_VIOLATION",
            field=missing,
        )
    return None


def _still_referenced(
    codec: CollectionCodec, doc_id: Any, violation: ConstraintViolation
) -> AlyxError | None:
    if violation.kind != "foreign_key":
        return None
    return Conflict(
        f"cannot delete {codec.name} {doc_id!r}: other documents still reference it",
        code="FOREIGN_KEY_VIOLATION",
        field=codec.pk.name,
    )


def _missing_reference(
    conn: sqlite3.Connection, codec: CollectionCodec, values: Mapping[str, Any]
) -> str | None:
    """SQLite does not say which foreign key failed: look for the reference that is missing."""
    for name, value in values.items():
        ref = codec.fields[name].field.references
        if ref is None or value is None:
            continue
        sql = f"SELECT 1 FROM {quote(ref.collection)} WHERE {quote(ref.field)} = ? LIMIT 1"
        if conn.execute(sql, (value,)).fetchone() is None:
            return name
    return None
