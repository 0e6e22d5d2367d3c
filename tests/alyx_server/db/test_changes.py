"""The change feed: commit order, exactly once across the writer and the poller, pruning."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from alyx_server.db import ChangeEvent, Database, delete_doc, insert_doc, update_doc
from alyx_server.tools.timestamps import ManualClock, parse_timestamp
from tests.alyx_server.db.conftest import COUNTERS, POSTS, OpenDb, post


def _external_insert(path: Path, n: int) -> None:
    """A write by another process: plain sqlite3, the table triggers log the change."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("INSERT INTO counters (n) VALUES (?)", (n,))
    finally:
        conn.close()


def _change_ids(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT id FROM _alyx_changes ORDER BY id")]
    finally:
        conn.close()


async def test_events_follow_commit_order_with_fields(db: Database) -> None:
    seen: list[ChangeEvent] = []
    db.feed.subscribe(seen.append)
    doc = await db.write(lambda c: insert_doc(c, POSTS, post("a")))
    await db.write(lambda c: update_doc(c, POSTS, doc["id"], {"title": "New"}))
    await db.write(lambda c: delete_doc(c, POSTS, doc["id"]))
    assert [(e.op, e.collection, e.doc_id) for e in seen] == [
        ("INSERT", "posts", doc["id"]),
        ("UPDATE", "posts", doc["id"]),
        ("DELETE", "posts", doc["id"]),
    ]
    assert seen[0].changed_fields is None
    assert seen[1].changed_fields == ("title", "updated_at")
    assert [e.change_id for e in seen] == sorted(e.change_id for e in seen)


async def test_events_are_published_before_the_write_is_acknowledged(db: Database) -> None:
    seen: list[ChangeEvent] = []
    db.feed.subscribe(seen.append)
    doc = await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 1}))
    assert [e.doc_id for e in seen] == [doc["id"]]


async def test_failed_write_publishes_nothing(db: Database) -> None:
    seen: list[ChangeEvent] = []
    db.feed.subscribe(seen.append)

    def fails(conn: sqlite3.Connection) -> None:
        insert_doc(conn, COUNTERS, {"n": 1})
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        await db.write(fails)
    doc = await db.write(lambda c: insert_doc(c, POSTS, post("kept")))
    assert [(e.collection, e.doc_id) for e in seen] == [("posts", doc["id"])]


async def test_every_change_once_in_id_order_across_writer_and_poller(db: Database, db_path: Path) -> None:
    seen: list[ChangeEvent] = []
    db.feed.subscribe(seen.append)
    for i in range(10):
        await asyncio.to_thread(_external_insert, db_path, i)
        if i % 3 == 0:
            await db.poll_changes()
        await db.write(lambda c, i=i: insert_doc(c, COUNTERS, {"n": 100 + i}))
        await asyncio.gather(db.poll_changes(), db.poll_changes())
    await asyncio.to_thread(_external_insert, db_path, 99)
    await db.poll_changes()
    await asyncio.sleep(0)

    ids = [e.change_id for e in seen]
    assert ids == _change_ids(db_path)
    assert len(ids) == 21
    assert db.feed.published == 21


async def test_background_poller_publishes_other_processes_writes(open_db: OpenDb, db_path: Path) -> None:
    db = await open_db(poll_interval=0.01)
    events = db.feed.events()
    await asyncio.to_thread(_external_insert, db_path, 5)
    event = await asyncio.wait_for(anext(events), timeout=5)
    assert (event.collection, event.op, event.doc_id) == ("counters", "INSERT", 1)
    events.close()


async def test_changes_before_open_are_not_replayed(open_db: OpenDb, db_path: Path) -> None:
    _external_insert(db_path, 1)
    db = await open_db()
    seen: list[ChangeEvent] = []
    db.feed.subscribe(seen.append)
    assert await db.poll_changes() == 0
    await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 2}))
    assert [e.doc_id for e in seen] == [2]


async def test_a_failing_subscriber_does_not_stop_the_others(db: Database) -> None:
    seen: list[int] = []

    def broken(_event: ChangeEvent) -> None:
        raise RuntimeError("subscriber bug")

    db.feed.subscribe(broken)
    unsubscribe = db.feed.subscribe(lambda e: seen.append(e.change_id))
    await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 1}))
    unsubscribe()
    await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 2}))
    assert seen == [1]


async def test_prune_removes_rows_older_than_retention(open_db: OpenDb, db_path: Path) -> None:
    clock = ManualClock("2026-01-31T12:00:00.000Z")
    db = await open_db(clock=clock, changes_retention=3600)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.executemany(
        "INSERT INTO _alyx_changes (collection, operation, doc_id, ts) VALUES ('counters', 'INSERT', ?, ?)",
        [
            (1, "2026-01-31T10:00:00.000Z"),
            (2, "2026-01-31T10:59:59.999Z"),
            (3, "2026-01-31T11:30:00.000Z"),
        ],
    )
    conn.close()
    await db.poll_changes()

    assert await db.prune_changes() == 2
    assert len(_change_ids(db_path)) == 1
    clock.advance(3600)
    assert await db.prune_changes() == 1
    assert _change_ids(db_path) == []
    explicit = parse_timestamp("2030-01-01T00:00:00Z")
    await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 1}))
    assert await db.prune_changes(now=explicit - timedelta(days=365 * 10)) == 0
    assert await db.prune_changes(now=explicit) == 1


async def test_prune_keeps_unpublished_rows(open_db: OpenDb, db_path: Path) -> None:
    db = await open_db(clock=ManualClock("2030-01-01T00:00:00Z"), changes_retention=1)
    _external_insert(db_path, 1)
    assert await db.prune_changes() == 0
    await db.poll_changes()
    assert await db.prune_changes() == 1


async def test_ids_keep_growing_after_pruning(open_db: OpenDb, db_path: Path) -> None:
    db = await open_db(clock=ManualClock("2030-01-01T00:00:00Z"), changes_retention=1)
    seen: list[int] = []
    db.feed.subscribe(lambda e: seen.append(e.change_id))
    await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 1}))
    await db.prune_changes()
    await db.write(lambda c: insert_doc(c, COUNTERS, {"n": 2}))
    assert seen == [1, 2]
