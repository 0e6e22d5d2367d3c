"""`FileLock`: an exclusive lock that the processes of one machine take on a file (flock).

The kernel keeps the lock with the open file: it is released when the holder closes it
or dies, even by `kill -9`, so a lock is never left behind by a crash. A process
waiting in `acquire()` sleeps in the kernel and wakes as soon as the lock is free (no
polling), and the wait does not hold Python's GIL. Each `FileLock` opens its own
descriptor, so two `FileLock`s on one path exclude each other within one process too.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["FileLock"]


class FileLock:
    """An exclusive flock on `path` (created if missing); not reentrant, one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.held = False

    def acquire(self) -> None:
        """Wait until the lock is ours."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.held = True

    def try_acquire(self) -> bool:
        """Take the lock if it is free now; whether it is ours."""
        if self.held:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.held = True
        return True

    def release(self) -> None:
        if self.held:
            self.held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the lock (if held) and the descriptor."""
        if self._fd >= 0:
            self.held = False
            os.close(self._fd)
            self._fd = -1
