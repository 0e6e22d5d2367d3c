"""Where workers run. `ProcessBackend`: local processes, sandboxed with bubblewrap when it
is installed, limited by control groups when they are writable.

Without either, functions still run, and `isolation_warnings()` says clearly what is
missing, so the server can print it at start.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from alyx_server.functions.cgroups import CgroupLimits
from alyx_server.functions.manifest import FunctionSpec
from alyx_server.functions.sandbox import ProcessSandbox, Runtimes
from alyx_server.functions.worker import Worker

__all__ = ["DEFAULT_PIDS_LIMIT", "Backend", "ProcessBackend"]

# Enough for Node's threads (each counts) and a few child processes; a fork bomb stops here.
DEFAULT_PIDS_LIMIT = 64


class Backend(Protocol):
    name: str

    async def start_worker(self, spec: FunctionSpec, *, timeout: float) -> Worker: ...

    def isolation_warnings(self) -> list[str]: ...

    def describe(self) -> dict[str, object]: ...

    async def close(self) -> None: ...


class ProcessBackend:
    """Workers as local processes; see the module docstring."""

    name = "process"

    def __init__(
        self,
        runtimes: Runtimes,
        socket_path: Path,
        *,
        bwrap: str | bool | None = True,
        cgroups: CgroupLimits | bool | None = True,
        pids_limit: int = DEFAULT_PIDS_LIMIT,
    ) -> None:
        """`bwrap` and `cgroups`: True to detect, False/None to go without, or the thing itself."""
        self.runtimes = runtimes
        self.pids_limit = pids_limit
        found = shutil.which("bwrap") if bwrap is True else (bwrap or None)
        self.sandbox = ProcessSandbox(runtimes, socket_path, bwrap=found)
        self.cgroup_problem = ""
        if cgroups is True:
            self.cgroups, self.cgroup_problem = CgroupLimits.detect()
        else:
            self.cgroups = cgroups or None
            if self.cgroups is None:
                self.cgroup_problem = "control groups are turned off"

    def isolation_warnings(self) -> list[str]:
        out = []
        if self.sandbox.bwrap is None:
            out.append(
                "bubblewrap (bwrap) is not installed: functions run unsandboxed, as the server's "
                "user, and can read the project, the data directory and the JWT secret file "
                "(install it: apt-get install bubblewrap)"
            )
        if self.cgroups is None:
            out.append(
                f"no memory or process limits for functions ({self.cgroup_problem}); run the "
                "server as root or with a delegated cgroup, or use functions.backend: docker"
            )
        return out

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "sandbox": "bubblewrap" if self.sandbox.bwrap else "none",
            "limits": f"cgroup v{self.cgroups.version}" if self.cgroups else "none",
        }

    async def start_worker(self, spec: FunctionSpec, *, timeout: float) -> Worker:
        launch = self.sandbox.launch(spec)
        group = self.cgroups.create(spec.name, spec.memory, self.pids_limit) if self.cgroups else None
        try:
            return await Worker.start(spec.name, launch, cgroup=group, timeout=timeout)
        except BaseException:
            if group is not None:
                group.remove()
            raise

    async def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.close()
