"""Who this server process is among the processes serving one database, and where they meet.

`alyx serve --workers N` runs N worker processes on one SQLite file; two `alyx serve`
processes started by hand on one project do the same. Each process has a name, from
`ALYX_WORKER` (the supervisor sets it to 1..N in each worker; a process started alone is
worker "1"), shown in the `X-Alyx-Worker` response header, the realtime `connected`
message, `/health`, the admin events and the logs.

The processes of one database find each other in its run directory: a private folder
(mode 0700) named after the database file's resolved path, under the system's temporary
folder, so that socket paths stay within the 107 bytes a Unix socket address allows
however deep the project is. Each process keeps its sockets there, named by its process
id; a socket whose process is gone refuses connections and is removed by whoever finds it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["WORKER_ENV", "run_dir", "worker_name"]

WORKER_ENV = "ALYX_WORKER"


def worker_name() -> str:
    """This process's worker name: `ALYX_WORKER`, or "1" for a process started alone."""
    return os.environ.get(WORKER_ENV) or "1"


def run_dir(database: Path, *, create: bool = True) -> Path:
    """The run directory shared by every process serving `database` (see the module docstring)."""
    key = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"alyx-{os.getuid()}-{key}"
    if create:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(
                f"{folder} must belong to this user with mode 0700 (it holds the server's "
                "sockets); remove it and start again"
            )
    return folder
