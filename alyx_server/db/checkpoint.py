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

Several processes on one file (`alyx serve --workers N`) have a Checkpointer each, and
one of them owns the checkpoints: the one holding the flock on `checkpoint.lock` in the
database's run directory (`owner` is True). The owner checkpoints when its own writer
commits and at least every `idle` seconds, for the other processes' commits. The others
never checkpoint: on each wake they try to take the lock (the kernel releases it when
its owner exits or is killed, so the next one to try takes over within `idle` seconds)
and otherwise look at the size of the log file. Writers set `journal_size_limit`, so
SQLite truncates the log to that size when it starts it over after a checkpoint; a
log file longer than `max_frames` frames is a log that really grew that long, and
their `behind` turns True: their writer checkpoints after its next commit, the same
fallback as the owner's. (They must not open the `-shm` file to read SQLite's own
count: closing any descriptor of a file drops every POSIX lock this process holds on
it, SQLite's write lock included; `os.stat` opens nothing.)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

from alyx_server.db.connection import Synchronous, open_connection
from alyx_server.tools.filelocks import FileLock
from alyx_server.tools.processes import run_dir, worker_name

__all__ = ["LOG_SIZE_LIMIT", "Checkpointer", "log_frames"]

log = logging.getLogger("alyx.db")

# Bytes SQLite keeps of the log file when it starts it over (`PRAGMA journal_size_limit`,
# set on writer connections): 4 MiB, about a thousand 4 KiB pages, SQLite's own
# automatic checkpoint size.
LOG_SIZE_LIMIT = 4 * 1024 * 1024
_WAL_HEADER, _FRAME_HEADER = 32, 24


def log_frames(database: Path, page_size: int) -> int:
    """Frames the log file of `database` has room for, from its size alone (0 if none)."""
    try:
        size = os.stat(f"{database}-wal").st_size
    except FileNotFoundError:
        return 0
    return max(0, size - _WAL_HEADER) // (page_size + _FRAME_HEADER)


class Checkpointer:
    """A thread that runs `PRAGMA wal_checkpoint(PASSIVE)` when nudged; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Synchronous = "normal",
        pause: float = 0.1,
        max_frames: int = 20_000,
        idle: float = 1.0,
    ) -> None:
        self._path = path
        self._synchronous: Synchronous = synchronous
        self._pause = pause
        self._max_frames = max_frames
        self._idle = idle
        self._lock_path = run_dir(path) / "checkpoint.lock"
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alyx-checkpoint", daemon=True)
        self.runs = 0
        self.frames_in_log = 0
        self.behind = False
        self.owner = False

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
        lock = FileLock(self._lock_path)
        try:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute(f"PRAGMA journal_size_limit = {LOG_SIZE_LIMIT}")
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            while not self._stopping.is_set():
                self._wake.wait(self._idle)
                self._wake.clear()
                if self._stopping.is_set():
                    break
                if not self.owner and lock.try_acquire():
                    self.owner = True
                    log.debug("worker %s checkpoints %s", worker_name(), self._path.name)
                if self.owner:
                    self.checkpoint(conn)
                else:
                    self._measure(page_size)
                # Let commits gather: a page written by many groups is copied once.
                self._stopping.wait(self._pause)
                if self.owner and self.frames_in_log:
                    # A reader still needed some frames: go again without waiting for a commit.
                    self._wake.set()
        finally:
            self.owner = False
            lock.close()
            conn.close()

    def _measure(self, page_size: int) -> None:
        """Another process owns checkpoints: only see whether the log ran past `max_frames`."""
        try:
            frames = log_frames(self._path, page_size)
        except OSError as e:
            log.warning("reading the log size of %s failed: %s", self._path, e)
            return
        self.behind = frames > self._max_frames

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
