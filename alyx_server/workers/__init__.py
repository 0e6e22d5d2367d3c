"""`alyx serve --workers N`: one supervisor process and N worker processes on one port.

    supervisor   loads the settings, binds the listening sockets, then forks the workers.
                 It never imports the application (held there too, its modules would count
                 once more in the server's memory; docs/workers.md, "Memory"), never opens
                 the database and never starts a thread, so forking again later (a
                 restart, a rolling restart) is as safe as the first.
    worker i     ALYX_WORKER=i (tools/processes.py); imports the application, builds
                 `create_app(settings)` and serves the inherited listening socket with its
                 own event loop, database readers and writer, realtime hub and function
                 pools.

Every worker accepts from the same listening socket (not SO_REUSEPORT): a worker that stops
closes only its own copy, so the connections waiting in the kernel's accept queue are taken
by the others instead of being reset with it. Each worker accepts one connection per wake-up
(`ACCEPT_BATCH`), so a burst of new connections spreads over the workers instead of going to
whichever woke first.

The control channel is a socket pair per worker. The worker sends `ready` once it listens
and its start-up migrations are done, or `failed <message>` when its start-up fails (then
exits 1). The supervisor stops a worker with SIGTERM (the worker drains, as `alyx serve`
does alone); a worker whose channel closes (the supervisor was killed) stops itself.

Start-up: worker 1 starts alone and runs the start-up migrations, as a single process does;
the others start once it is ready, when there is nothing left to migrate, and every worker
but that first one accepts connections only once it is ready. A start-up failure
of worker 1 (a refused destructive change, a bad schema.yaml) stops `alyx serve` with its
one-line message and exit status 1, without restarting anything.

Restarts: a worker that exits on its own is logged with its exit status or signal, counted
(`alyx_worker_restarts_total` in /metrics) and started again after a back-off that doubles
from 0.1 s up to 10 s, reset once a worker stays up; `MAX_START_FAILURES` failed starts in a
row stop the server with the last failure's message.

Signals to the supervisor: SIGTERM or SIGINT stops every worker (each drains) and exits 0;
SIGHUP reads alyx.yaml again and restarts the workers one at a time: a new worker starts,
and only once it is ready does the old one stop, so no request fails.
"""

from __future__ import annotations

from alyx_server.workers.supervisor import (
    ACCEPT_BATCH,
    MAX_START_FAILURES,
    Supervisor,
    WorkerChannel,
    usable_cores,
    worker_count,
)

__all__ = [
    "ACCEPT_BATCH",
    "MAX_START_FAILURES",
    "Supervisor",
    "WorkerChannel",
    "usable_cores",
    "worker_count",
]
