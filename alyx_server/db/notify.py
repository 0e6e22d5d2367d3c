"""Commits announced to the other processes serving the same SQLite file.

Each process reads `_alyx_changes` from its own high-water mark (changes.py); what it
must learn from the others is *when* to read. Two signals, both in the database's run
directory (tools.processes.run_dir), cover the two needs:

    commits          a shared counter (8 bytes, memory-mapped by every process), bumped
                     under `flock` after each committed group that appended to the
                     change log (a group of refreshes logs nothing, see writer.py: no
                     other process has anything to catch up on after it, and it is not
                     announced). A request checks the counter before trusting a
                     cached account or session family (`Database.catch_up`):
                     one read of shared memory, about 0.2 µs. When it moved past what
                     this process has seen, the process reads the change log at once,
                     on the loop, before answering: a logout answered by one process is
                     refused by every other from the next request on, with no race.
    wake-<pid>.sock  each process's Unix datagram socket. After bumping the counter the
                     committing process sends one empty datagram to each sibling
                     (nonblocking; a full queue means a wake is already pending and the
                     send is dropped), and the sibling catches up as soon as its loop sees
                     it, so realtime subscribers get the change without waiting for the
                     poller. A socket whose process is gone refuses the datagram and is
                     removed.

The `alyx` CLI announces its writes the same way (`announce`), so `alyx admin
revoke-token` acts on running servers at once. Writers outside Alyx (a sqlite3 shell)
announce nothing: the change poller finds their changes within its interval.

A process that starts says hello (a one-byte datagram) to the others, whose writers then
read the run directory again before their next wake; they also read it every second,
and forget a sibling whose socket refuses. Cost to the writer thread, per committed
group: an `flock` pair around the counter and one `send` per sibling, a few
microseconds (docs/database.md has the figures). A PostgreSQL backend would
put LISTEN/NOTIFY behind the same two calls, `committed` and `unseen`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import mmap
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from alyx_server.tools.processes import run_dir

__all__ = ["COUNTER_FILE", "CommitSignal", "announce"]

log = logging.getLogger(__name__)

COUNTER_FILE = "commits"
_WAKE_PREFIX = "wake-"
_WAKE_SUFFIX = ".sock"
_COUNT = struct.Struct("=Q")
_NEVER = -1
_WAKE = b""
_HELLO = b"h"
RELIST_EVERY = 1.0
"""Seconds between readings of the run directory by a writer, besides each newcomer's hello."""


class _Counter:
    """The shared commit counter of one run directory, memory-mapped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _COUNT.size:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    if os.fstat(fd).st_size < _COUNT.size:
                        os.ftruncate(fd, _COUNT.size)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, _COUNT.size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.inode = os.fstat(fd).st_ino

    def value(self) -> int:
        value: int = _COUNT.unpack_from(self._map)[0]
        return value

    def bump(self) -> tuple[int, int]:
        """Add one, atomically across processes; returns (before, after)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            before: int = _COUNT.unpack_from(self._map)[0]
            _COUNT.pack_into(self._map, 0, before + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return before, before + 1

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def _wake_name(pid: int) -> str:
    return f"{_WAKE_PREFIX}{pid}{_WAKE_SUFFIX}"


def _is_wake_socket(name: str) -> bool:
    return name.startswith(_WAKE_PREFIX) and name.endswith(_WAKE_SUFFIX)


class _Siblings:
    """Datagram sockets connected to the other processes' wake sockets."""

    def __init__(self, folder: Path, own: str | None) -> None:
        self._folder = folder
        self._own = own
        self._peers: dict[str, socket.socket] = {}
        # Set (from another thread) when a newcomer said hello; read by the writer.
        self.stale = True
        self._next_list = 0.0
        self.sent = 0
        self.dropped = 0

    def due(self) -> bool:
        """Whether the list should be read again: a newcomer said hello, or a while passed."""
        return self.stale or time.monotonic() >= self._next_list

    def refresh(self) -> None:
        """List the run directory again: connect to newcomers, forget the departed."""
        self.stale = False
        self._next_list = time.monotonic() + RELIST_EVERY
        try:
            names = {n for n in os.listdir(self._folder) if _is_wake_socket(n) and n != self._own}
        except FileNotFoundError:
            names = set()
        for gone in set(self._peers) - names:
            self._peers.pop(gone).close()
        for name in names - set(self._peers):
            peer = self._connect(name)
            if peer is not None:
                self._peers[name] = peer

    def _connect(self, name: str) -> socket.socket | None:
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        peer.setblocking(False)
        try:
            peer.connect(str(self._folder / name))
        except (ConnectionRefusedError, FileNotFoundError):
            peer.close()
            # Nobody listens there: its process is gone.
            with contextlib.suppress(FileNotFoundError):
                (self._folder / name).unlink()
            return None
        except OSError:
            peer.close()
            log.warning("could not connect to the wake socket %s", self._folder / name, exc_info=True)
            return None
        return peer

    def wake(self, message: bytes = _WAKE) -> None:
        """One datagram to every sibling; never blocks."""
        stale: list[str] = []
        for name, peer in self._peers.items():
            try:
                peer.send(message)
                self.sent += 1
            except BlockingIOError:
                self.dropped += 1  # its queue is full: wakes are already pending
            except OSError as e:
                if e.errno in (errno.ECONNREFUSED, errno.ENOTCONN, errno.ECONNRESET):
                    stale.append(name)
                else:
                    log.warning("could not wake %s: %s", name, e)
        for name in stale:
            self._peers.pop(name).close()
            # The same path may already belong to a new process (a reused pid).
            again = self._connect(name)
            if again is not None:
                self._peers[name] = again
                with contextlib.suppress(OSError):
                    again.send(message)

    def close(self) -> None:
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()


class CommitSignal:
    """One process's side of the signals of a database; see the module docstring.

    `committed()` runs on the writer thread after each committed group; `unseen()` and
    `seen()` run on the loop thread; `listen(on_wake)` binds the wake socket and calls
    `on_wake()` on the loop whenever a sibling announced a commit.
    """

    def __init__(self, database: Path) -> None:
        self._database = database
        self.folder = run_dir(database)
        self._lock = threading.Lock()
        self._counter = _Counter(self.folder / COUNTER_FILE)
        # The counter value up to which every commit is published here (or is being
        # published by this process's own writer).
        self._seen = _NEVER
        self._socket: socket.socket | None = None
        self._socket_path = self.folder / _wake_name(os.getpid())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._siblings = _Siblings(self.folder, self._socket_path.name)
        self.wakes_received = 0

    # -- writer thread -----------------------------------------------------------------------
    def committed(self) -> None:
        """Announce a commit of this process: bump the counter, wake every sibling."""
        siblings = self._siblings
        if siblings.due():
            siblings.refresh()
            self._check_counter()
        before, after = self._counter.bump()
        with self._lock:
            if before == self._seen:
                self._seen = after  # only our own commit since: our writer publishes it
        self._siblings.wake()

    def _check_counter(self) -> None:
        """Reopen the counter if its file was replaced (a cleaned temporary folder)."""
        try:
            inode = os.stat(self._counter.path).st_ino
        except FileNotFoundError:
            inode = -1
        if inode == self._counter.inode:
            return
        counter = _Counter(self.folder / COUNTER_FILE)
        old, self._counter = self._counter, counter
        with self._lock:
            self._seen = _NEVER
        old.close()

    # -- loop thread ---------------------------------------------------------------------------
    def unseen(self) -> int | None:
        """The counter, when it moved past what this process has published; else None."""
        value = self._counter.value()
        return None if value == self._seen else value

    def seen(self, value: int) -> None:
        """Every commit counted up to `value` is now published here."""
        with self._lock:
            if value > self._seen:
                self._seen = value

    @property
    def stats(self) -> dict[str, int]:
        siblings = self._siblings
        return {
            "wakes_sent": siblings.sent,
            "wakes_dropped": siblings.dropped,
            "wakes_received": self.wakes_received,
        }

    def listen(self, loop: asyncio.AbstractEventLoop, on_wake: Callable[[], None]) -> None:
        """Bind this process's wake socket and call `on_wake()` on `loop` for each wake."""
        path = self._socket_path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by a dead process that had our pid
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            try:
                sock.bind(str(path))
            except FileNotFoundError:
                # The last process of the folder removed it as we opened the counter.
                run_dir(self._database)
                self._check_counter()
                sock.bind(str(path))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._socket, self._loop = sock, loop

        def readable() -> None:
            try:
                while True:
                    if sock.recv(64) == _HELLO:
                        self._siblings.stale = True
                    else:
                        self.wakes_received += 1
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                log.exception("reading the wake socket failed")
            try:
                on_wake()
            except Exception:
                log.exception("catching up after a wake failed; the poller will")

        loop.add_reader(sock.fileno(), readable)
        # Say hello, so that the others' writers wake this process from their next commit.
        hello = _Siblings(self.folder, path.name)
        try:
            hello.refresh()
            hello.wake(_HELLO)
        finally:
            hello.close()

    def close(self) -> None:
        """Stop listening and remove this process's socket."""
        sock, self._socket = self._socket, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()
        self._siblings.close()
        self._counter.close()


def announce(database: Path) -> int:
    """Announce a commit made outside a server (the CLI): bump the counter and wake every
    process serving `database`. Returns how many were woken; 0 when none runs."""
    folder = run_dir(database, create=False)
    if not (folder / COUNTER_FILE).exists():
        return 0
    counter = _Counter(folder / COUNTER_FILE)
    try:
        counter.bump()
    finally:
        counter.close()
    siblings = _Siblings(folder, None)
    try:
        siblings.refresh()
        siblings.wake()
        return siblings.sent
    finally:
        siblings.close()
