"""What after-write hooks need beyond `_alyx_changes`: the document, the previous one, the user.

`_alyx_changes` keeps ids and changed field names only. A collection that some function
hooks (`on:` in its manifest) gets richer change triggers instead of the plain ones
(`schema/ddl.py`, same names): each appends its `_alyx_changes` row as before, then, in
the same trigger body, a `_alyx_change_docs` row keyed by that change's id
(`last_insert_rowid()` inside the trigger) with

    doc        the row after the write (NULL for a delete), a JSON array in field order
    previous   the row before it (NULL for a create)
    actor      `_alyx_actor.actor`: the user the writer set for this write (`with_actor`),
               NULL for writes from outside the API (the CLI, a sqlite3 shell)

Blobs are stored as hex, and an `onUpdate: now` field that the write leaves alone holds
the time its own trigger is about to set. A collection no function hooks keeps the plain
triggers, so it pays nothing. `install_capture` puts the right triggers in place; it runs
at start and whenever the database's schema version moves (a migration's rebuild or rename
recreates the plain triggers: until the next install, which a hook runner does within its
poll interval, changes have no captured documents and hooks read the current row).

Cost, on a hooked collection only: one more INSERT per written row (the two JSON arrays,
about the size of the row twice), and the two small UPDATEs of `_alyx_actor` per API write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import orjson

from alyx_server.db.codec import decode_row
from alyx_server.schema.ddl import NOW_SQL, change_trigger_names, quote, trigger_sql
from alyx_server.schema.model import Collection, FieldType
from alyx_server.schema.system_tables import ACTOR_TABLE, CHANGE_DOCS_TABLE

__all__ = ["capture_trigger_sql", "decode_captured", "install_capture", "with_actor"]

T = TypeVar("T")


def _row_json(collection: Collection, row: str, *, updating: bool = False) -> str:
    items: list[str] = []
    for f in collection.fields:
        col = f"{row}.{quote(f.name)}"
        if f.type is FieldType.BLOB:
            col = f"hex({col})"
        elif updating and f.on_update_now:
            col = f"CASE WHEN NEW.{quote(f.name)} IS OLD.{quote(f.name)} THEN {NOW_SQL} ELSE {col} END"
        items.append(col)
    return f"json_array({', '.join(items)})"


def capture_trigger_sql(collection: Collection) -> list[str]:
    """The three change triggers of a hooked collection (see the module docstring)."""
    plain = trigger_sql(collection)[:3]
    actor = f"(SELECT actor FROM {ACTOR_TABLE} WHERE id = 1)"
    values = (("NULL" if op == "ins" else _row_json(collection, "OLD")) for op in ("ins", "upd", "del"))
    docs = (_row_json(collection, "NEW"), _row_json(collection, "NEW", updating=True), "NULL")
    out: list[str] = []
    for sql, previous, doc in zip(plain, values, docs, strict=True):
        head, end = sql.rsplit(" END", 1)
        assert end == ""
        extra = (
            f"INSERT INTO {CHANGE_DOCS_TABLE} (change_id, doc, previous, actor) "
            f"VALUES (last_insert_rowid(), {doc}, {previous}, {actor});"
        )
        out.append(f"{head} {extra} END")
    return out


def install_capture(
    conn: sqlite3.Connection, collections: Iterable[Collection], hooked: Iterable[str]
) -> int:
    """Give hooked collections the capturing triggers and the others the plain ones.

    Runs in one transaction on a writer connection; returns how many triggers it replaced.
    """
    wanted = set(hooked)
    stored = {
        name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
    }
    replaced = 0
    for collection in collections:
        names = change_trigger_names(collection.name)
        if names[0] not in stored:
            continue  # not created yet (a migration will) or not a table of this database
        sqls = capture_trigger_sql(collection) if collection.name in wanted else trigger_sql(collection)[:3]
        for name, sql in zip(names, sqls, strict=True):
            if stored.get(name) == sql:
                continue
            conn.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")
            conn.execute(sql)
            replaced += 1
    return replaced


def actor_json(auth: Mapping[str, Any] | None) -> str | None:
    if auth is None:
        return None
    kept = {k: auth.get(k) for k in ("id", "email", "role") if auth.get(k) is not None}
    return orjson.dumps(kept).decode() if kept else None


def with_actor(
    step: Callable[[sqlite3.Connection], T], auth: Mapping[str, Any] | None
) -> Callable[[sqlite3.Connection], T]:
    """`step`, with `_alyx_actor` naming `auth` while it runs (inside the write transaction)."""
    actor = actor_json(auth)
    if actor is None:
        return step

    def run(conn: sqlite3.Connection) -> T:
        conn.execute(f"UPDATE {ACTOR_TABLE} SET actor = ? WHERE id = 1", (actor,))
        try:
            return step(conn)
        finally:
            conn.execute(f"UPDATE {ACTOR_TABLE} SET actor = NULL WHERE id = 1")

    return run


def decode_captured(collection: Collection, text: str | None) -> dict[str, Any] | None:
    """A captured row (JSON array in field order) as the API shows the document."""
    if text is None:
        return None
    values = orjson.loads(text)
    if not isinstance(values, list) or len(values) != len(collection.fields):
        return None  # captured before a column was added: the caller reads the current row
    row = [
        bytes.fromhex(v) if f.type is FieldType.BLOB and isinstance(v, str) else v
        for f, v in zip(collection.fields, values, strict=True)
    ]
    return decode_row(collection, row, internal=True)
