"""`Checkpointer`: copies the write-ahead log back into the database file on its own thread.

With SQLite's automatic checkpoint, the connection whose commit takes the log past 1,000
pages copies every page back and syncs the file before its commit returns: on the one
writer thread that stalls every queued write behind it (a refresh-token rotation took
259 µs with automatic checkpoints against 168 µs without, measured alone; see
docs/benchmarks.md). The writer's connection has the automatic checkpoint turned off,
and after each committed group it nudges this thread, which runs a PASSIVE checkpoint
(it never blocks writers or readers; what readers still need stays in the log and is
copied on the next round, which comes without a new commit) at most every `pause`
seconds, so a page written many times is copied once.

If the log still grows past `max_frames` (the thread fell behind, or readers kept it
from finishing), `behind` turns True and the writer checkpoints itself, as SQLite would.
No library runs SQLite checkpoints in the background for Python; this is the small
loop SQLite's documentation describes for `wal_autocheckpoint=0`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from alyx_server.db.connection import Synchronous, open_connection

__all__ = ["Checkpointer"]

log = logging.getLogger("alyx.db")


class Checkpointer:
    """A thread that runs `PRAGMA wal_checkpoint(PASSIVE)` when nudged; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Synchronous = "normal",
        pause: float = 0.1,
        max_frames: int = 20_000,
    ) -> None:
        self._path = path
        self._synchronous: Synchronous = synchronous
        self._pause = pause
        self._max_frames = max_frames
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alyx-checkpoint", daemon=True)
        self.runs = 0
        self.frames_in_log = 0
        self.behind = False

    def start(self) -> None:
        self._thread.start()

    def nudge(self) -> None:
        """A group was committed (called on the writer thread)."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread (the last connection to close checkpoints what is left)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        conn = open_connection(self._path, synchronous=self._synchronous)
        try:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            while not self._stopping.is_set():
                self._wake.wait()
                self._wake.clear()
                if self._stopping.is_set():
                    break
                self.checkpoint(conn)
                # Let commits gather: a page written by many groups is copied once.
                self._stopping.wait(self._pause)
                if self.frames_in_log:
                    # A reader still needed some frames: go again without waiting for a commit.
                    self._wake.set()
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:
            log.warning("background checkpoint of %s failed: %s", self._path, e)
            return
        self.runs += 1
        # -1 for both when the database is not in WAL mode.
        self.frames_in_log = max(0, int(frames) - max(0, int(copied)))
        self.behind = int(frames) > self._max_frames
