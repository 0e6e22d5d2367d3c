"""Memory and process-count limits for function workers, through Linux control groups.

bubblewrap isolates but limits nothing, so each worker gets its own control group with a
memory limit (the manifest's `memory`) and a pids limit (a fork bomb stops there). Both
layouts are supported:

    v1  /sys/fs/cgroup/memory/<own group>/alyx-<pid>/<worker>   memory.limit_in_bytes
        /sys/fs/cgroup/pids/<own group>/alyx-<pid>/<worker>     pids.max
    v2  /sys/fs/cgroup/<own group or root>/alyx-<pid>/<worker>  memory.max, pids.max

`CgroupLimits.detect()` returns None with the reason when no usable hierarchy is
writable (not root, read-only /sys/fs/cgroup, controllers missing). A worker joins its
group before it starts (see `join_command`), so every process it forks is counted.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupLimits", "WorkerCgroup", "join_command"]

_ROOT = Path("/sys/fs/cgroup")
_JOIN = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'


def join_command(procs_files: list[Path], argv: list[str]) -> list[str]:
    """`argv` started through /bin/sh after writing its pid to each `cgroup.procs`."""
    if not procs_files:
        return argv
    return ["/bin/sh", "-c", _JOIN, "sh", *(str(p) for p in procs_files), "--", *argv]


def _own_group(controller: str) -> str:
    """This process's group path in `controller`'s hierarchy ("" for v2), or "/"."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            return path
    return "/"


def _write(path: Path, value: str) -> None:
    path.write_text(value)


@dataclass
class WorkerCgroup:
    """The group(s) of one worker: its limits, what it used, and a way to end it all."""

    dirs: tuple[Path, ...]
    version: int

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def processes(self) -> list[int]:
        """Process ids in the group (threads not counted)."""
        try:
            text = self.procs_files[0].read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def oom_killed(self) -> bool:
        """Whether the kernel stopped a process of this group for going over its memory."""
        memory = self.dirs[0]
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (memory / name).read_text()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return value.strip() != "0"
        # Kernels before 4.13 do not count OOM kills in v1: hitting the limit is the clue.
        with contextlib.suppress(OSError, ValueError):
            return int((memory / "memory.failcnt").read_text()) > 0
        return False

    def kill_all(self) -> None:
        """SIGKILL every process in the group (v2: cgroup.kill when the kernel has it)."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.dirs[0] / "cgroup.kill", "1")
                return
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Delete the group (it must be empty: call after the processes have exited)."""
        for d in self.dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


class CgroupLimits:
    """Creates one group per worker under a group of this server's own."""

    def __init__(self, version: int, bases: tuple[Path, ...]) -> None:
        self.version = version
        self.bases = bases
        self._count = 0

    @classmethod
    def detect(cls, root: Path = _ROOT) -> tuple[CgroupLimits | None, str]:
        """Usable limits, or None and the reason they are not."""
        name = f"alyx-{os.getpid()}"
        try:
            if (root / "cgroup.controllers").is_file():
                return cls._v2(root, name), ""
            if (root / "memory").is_dir() and (root / "pids").is_dir():
                return cls._v1(root, name), ""
        except OSError as e:
            return None, f"cannot create control groups under {root}: {e.strerror or e}"
        return None, f"no memory and pids controllers under {root}"

    @classmethod
    def _v1(cls, root: Path, name: str) -> CgroupLimits:
        bases = []
        for controller in ("memory", "pids"):
            own = root / controller / _own_group(controller).lstrip("/")
            base = own / name
            try:
                base.mkdir(exist_ok=True)
            except OSError:
                base = root / controller / name
                base.mkdir(exist_ok=True)
            bases.append(base)
        return cls(1, tuple(bases))

    @classmethod
    def _v2(cls, root: Path, name: str) -> CgroupLimits:
        controllers = (root / "cgroup.controllers").read_text().split()
        missing = [c for c in ("memory", "pids") if c not in controllers]
        if missing:
            raise OSError(0, f"the {' and '.join(missing)} controller is not enabled")
        # A group holding processes cannot give controllers to its children (v2's
        # no-internal-process rule), so the server's groups hang off the root.
        base = root / name
        with contextlib.suppress(OSError):
            _write(root / "cgroup.subtree_control", "+memory +pids")
        base.mkdir(exist_ok=True)
        _write(base / "cgroup.subtree_control", "+memory +pids")
        return cls(2, (base,))

    def create(self, label: str, memory: int, pids: int) -> WorkerCgroup:
        """A new group for one worker with its memory (bytes) and pids limits."""
        self._count += 1
        name = f"{label}-{self._count}"
        dirs = tuple(base / name for base in self.bases)
        for d in dirs:
            d.mkdir()
        group = WorkerCgroup(dirs, self.version)
        try:
            if self.version == 1:
                memory_dir, pids_dir = dirs
                _write(memory_dir / "memory.limit_in_bytes", str(memory))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    _write(memory_dir / "memory.memsw.limit_in_bytes", str(memory))
                _write(pids_dir / "pids.max", str(pids))
            else:
                _write(dirs[0] / "memory.max", str(memory))
                with contextlib.suppress(OSError):
                    _write(dirs[0] / "memory.swap.max", "0")
                _write(dirs[0] / "pids.max", str(pids))
        except OSError:
            group.remove()
            raise
        return group

    def close(self) -> None:
        """Remove the server's own groups (their workers must be gone)."""
        for base in self.bases:
            with contextlib.suppress(OSError):
                base.rmdir()
