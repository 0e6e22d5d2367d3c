"""The writer: group commit with a savepoint per write, transactions, exclusive jobs, close."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from alyx_server.db import Database, get_doc, insert_doc
from alyx_server.errors import Conflict
from tests.alyx_server.db.conftest import POSTS, OpenDb, post


def _count(path: Path, table: str = "posts") -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


async def _hold_writer(db: Database) -> tuple[threading.Event, asyncio.Future[None]]:
    """Keep the writer busy in an exclusive job until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold(_conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    job = asyncio.ensure_future(db.run_exclusive(hold))
    await asyncio.to_thread(started.wait, 10)
    return release, job


async def test_one_failing_write_does_not_fail_its_group(db: Database, db_path: Path) -> None:
    release, held = await _hold_writer(db)
    docs = [post(f"p{i}") for i in range(50)]
    docs[17] = post("p3")  # duplicate slug: a unique violation
    writes = [asyncio.ensure_future(db.write(lambda c, d=d: insert_doc(c, POSTS, d))) for d in docs]
    await asyncio.sleep(0)
    release.set()
    await held
    results = await asyncio.gather(*writes, return_exceptions=True)

    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], Conflict)
    assert failures[0].code == "UNIQUE_VIOLATION"
    assert failures[0].field == "slug"
    assert str(failures[0]) == "posts already has a document with this slug"
    assert _count(db_path) == 49
    stats = db.stats
    assert stats.writes == 50
    assert stats.groups < stats.writes
    assert stats.max_group_size == 50
    assert stats.failed_writes == 1


async def test_group_commit_off_runs_one_transaction_per_write(open_db: OpenDb) -> None:
    db = await open_db(group_commit=False)
    await asyncio.gather(*(db.write(lambda c, i=i: insert_doc(c, POSTS, post(f"s{i}"))) for i in range(20)))
    assert (db.stats.groups, db.stats.writes, db.stats.max_group_size) == (20, 20, 1)


async def test_write_result_is_returned_after_commit(db: Database, db_path: Path) -> None:
    doc = await db.write(lambda c: insert_doc(c, POSTS, post("hello")))
    other = sqlite3.connect(db_path)
    row = other.execute("SELECT slug FROM posts WHERE id = ?", (doc["id"],)).fetchone()
    other.close()
    assert row == ("hello",)


async def test_transaction_is_all_or_nothing(db: Database, db_path: Path) -> None:
    steps = [
        lambda c: insert_doc(c, POSTS, post("a")),
        lambda c: insert_doc(c, POSTS, post("b")),
        lambda c: insert_doc(c, POSTS, post("a")),
    ]
    with pytest.raises(Conflict) as caught:
        await db.transaction(steps)
    assert caught.value.__notes__ == ["operation 2 of the transaction failed; nothing was written"]
    assert _count(db_path) == 0

    results = await db.transaction(steps[:2])
    assert [r["slug"] for r in results] == ["a", "b"]
    assert _count(db_path) == 2


async def test_transaction_with_one_function(db: Database) -> None:
    def two(conn: sqlite3.Connection) -> int:
        insert_doc(conn, POSTS, post("x"))
        insert_doc(conn, POSTS, post("y"))
        return 2

    assert await db.transaction(two) == 2


async def test_failed_transaction_next_to_successful_writes(db: Database, db_path: Path) -> None:
    release, held = await _hold_writer(db)
    ok = asyncio.ensure_future(db.write(lambda c: insert_doc(c, POSTS, post("ok"))))
    bad = asyncio.ensure_future(
        db.transaction([lambda c: insert_doc(c, POSTS, post("t1")), lambda c: insert_doc(c, POSTS, {})])
    )
    await asyncio.sleep(0)
    release.set()
    await held
    await ok
    with pytest.raises(Exception, match="title is required"):
        await bad
    assert _count(db_path) == 1


async def test_run_exclusive_runs_alone_outside_a_transaction(db: Database, db_path: Path) -> None:
    def migrate(conn: sqlite3.Connection) -> bool:
        was_in_txn = conn.in_transaction
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE extra (x INTEGER)")
        conn.execute("INSERT INTO extra VALUES (1)")
        conn.execute("COMMIT")
        conn.execute("PRAGMA foreign_keys = ON")
        return was_in_txn

    before = asyncio.ensure_future(db.write(lambda c: insert_doc(c, POSTS, post("before"))))
    assert await db.run_exclusive(migrate) is False
    assert (await before)["slug"] == "before"
    assert _count(db_path, "extra") == 1
    assert db.stats.exclusive == 1


async def test_exclusive_job_that_leaves_a_transaction_open_is_rolled_back(db: Database) -> None:
    def sloppy(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE never (x)")

    with pytest.raises(RuntimeError, match="an exclusive job left its transaction open"):
        await db.run_exclusive(sloppy)
    tables = await db.read(lambda c: c.execute("SELECT name FROM sqlite_master").fetchall())
    assert ("never",) not in tables


async def test_close_commits_every_queued_write(open_db: OpenDb, db_path: Path) -> None:
    db = await open_db()
    release, held = await _hold_writer(db)
    writes = [
        asyncio.ensure_future(db.write(lambda c, i=i: insert_doc(c, POSTS, post(f"q{i}")))) for i in range(30)
    ]
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(db.close())
    await asyncio.sleep(0)
    release.set()
    await closing
    await held
    assert all(w.done() and not w.exception() for w in writes)
    assert _count(db_path) == 30
    with pytest.raises(RuntimeError, match="the database is closed"):
        await db.write(lambda c: None)


async def test_reads_see_acknowledged_writes(db: Database) -> None:
    doc = await db.write(lambda c: insert_doc(c, POSTS, post("seen")))
    assert db.read_now(lambda c: get_doc(c, POSTS, doc["id"])) == doc
    assert await db.read(lambda c: get_doc(c, POSTS, doc["id"])) == doc


async def test_read_now_only_on_the_loop_thread(db: Database) -> None:
    with pytest.raises(RuntimeError, match="read_now must be called on the event loop thread"):
        await asyncio.to_thread(db.read_now, lambda c: 1)


async def test_read_small_stays_on_the_loop_within_its_budget(db: Database) -> None:
    await db.write(lambda c: insert_doc(c, POSTS, post("small")))
    loop_thread = threading.get_ident()

    def count(conn: sqlite3.Connection) -> tuple[int, int]:
        return threading.get_ident(), conn.execute("SELECT count(*) FROM posts").fetchone()[0]

    assert await db.read_small(count) == (loop_thread, 1)
    assert db.loop_reads_moved == 0


async def test_read_small_moves_a_long_read_to_a_reader_thread(db: Database) -> None:
    loop_thread = threading.get_ident()
    calls: list[int] = []
    # A recursive CTE of 5,000 rows takes far more than 1,000 VM steps.
    long_sql = (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 5000) SELECT sum(i) FROM r"
    )

    def scan(conn: sqlite3.Connection) -> int:
        calls.append(threading.get_ident())
        conn.execute("BEGIN")
        value: int = conn.execute(long_sql).fetchone()[0]
        conn.execute("COMMIT")
        return value

    assert await db.read_small(scan, steps=1_000) == 5000 * 5001 // 2
    assert calls[0] == loop_thread and calls[1] != loop_thread and len(calls) == 2
    assert db.loop_reads_moved == 1
    # The interrupted attempt left neither a transaction nor the budget on the loop's
    # connection: the same scan now finishes there.
    assert db.read_now(lambda c: (c.in_transaction, c.execute(long_sql).fetchone()[0])) == (
        False,
        5000 * 5001 // 2,
    )


async def test_read_small_raises_real_errors_without_retrying(db: Database) -> None:
    calls: list[int] = []

    def broken(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("SELECT nope FROM posts")

    with pytest.raises(sqlite3.OperationalError, match="no such column"):
        await db.read_small(broken)
    assert calls == [1] and db.loop_reads_moved == 0


async def test_group_listener_sees_group_sizes(db: Database) -> None:
    sizes: list[int] = []
    db.add_group_listener(lambda size, seconds: sizes.append(size))
    await asyncio.gather(*(db.write(lambda c, i=i: insert_doc(c, POSTS, post(f"g{i}"))) for i in range(10)))
    assert sum(sizes) == 10


async def test_writes_submitted_in_one_loop_turn_commit_as_one_group(db: Database) -> None:
    # The loop thread pauses between the submissions (releasing the GIL, as a slow request
    # would): the writer still gets them together, once the turn is over.
    sizes: list[int] = []
    db.add_group_listener(lambda size, seconds: sizes.append(size))

    async def write(i: int) -> None:
        time.sleep(0.01)
        await db.write(lambda c: insert_doc(c, POSTS, post(f"t{i}")))

    await asyncio.gather(*(write(i) for i in range(5)))
    assert sizes == [5]


def _rows_in_file(db_path: Path) -> int | None:
    """Rows of posts in the database file itself, ignoring the write-ahead log.

    None while a checkpoint is copying pages into the file: an immutable connection takes
    no locks, so it can read a half-copied file, which SQLite reports as malformed.
    """
    immutable = sqlite3.connect(f"file:{db_path}?immutable=1", uri=True)
    try:
        return int(immutable.execute("SELECT count(*) FROM posts").fetchone()[0])
    except sqlite3.DatabaseError:
        return None
    finally:
        immutable.close()


async def test_checkpoints_run_off_the_writer_thread(db: Database, db_path: Path) -> None:
    checkpointer = db.checkpointer
    assert checkpointer is not None
    # Readers keep the default.
    assert db.read_now(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 1000
    for i in range(40):
        await db.write(lambda c, i=i: insert_doc(c, POSTS, post(f"cp-{i}")))
    # The thread is nudged by each commit and copies the log into the database file: a
    # connection that ignores the log (immutable) ends up seeing all 40 rows. Up to 10 s.
    in_file: int | None = 0
    for _ in range(1000):
        in_file = _rows_in_file(db_path)
        if in_file == 40:
            break
        await asyncio.sleep(0.01)
    assert in_file == 40
    assert checkpointer.runs >= 1
    # The writer itself never checkpointed.
    assert await db.write(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 0


async def test_a_writer_without_background_checkpoints_keeps_sqlites_own(open_db: OpenDb) -> None:
    db = await open_db(background_checkpoints=False)
    assert db.checkpointer is None
    await db.write(lambda c: insert_doc(c, POSTS, post("plain")))
    assert await db.write(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 1000


async def test_a_writer_whose_checkpointer_fell_behind_checkpoints_itself(
    db: Database, db_path: Path
) -> None:
    checkpointer = db.checkpointer
    assert checkpointer is not None
    await db.write(lambda c: insert_doc(c, POSTS, post("before")))
    checkpointer.close()  # no background thread from here on
    await db.write(lambda c: insert_doc(c, POSTS, post("held")))
    assert _rows_in_file(db_path) in (0, 1)  # still only in the log
    checkpointer.behind = True
    await db.write(lambda c: insert_doc(c, POSTS, post("after")))
    # The writer copies the log back itself right after acknowledging that commit (a
    # PASSIVE checkpoint: at least everything committed before it, which no reader can
    # still be missing; the newest frames may wait for the next round), then notes that
    # it is no longer behind: both happen on the writer thread after the write returned.
    for _ in range(500):
        if (_rows_in_file(db_path) or 0) >= 2 and not checkpointer.behind:
            break
        await asyncio.sleep(0.01)
    assert (_rows_in_file(db_path) or 0) >= 2
    assert checkpointer.behind is False


async def test_the_writer_keeps_savepoint_journals_in_memory(db: Database) -> None:
    assert await db.write(lambda c: c.execute("PRAGMA temp_store").fetchone()[0]) == 2  # MEMORY
    assert db.read_now(lambda c: c.execute("PRAGMA temp_store").fetchone()[0]) == 0  # readers: default
