"""Prometheus series of SPEC §12: one registry per application, or one set across processes.

Lower layers (db, realtime, functions) receive the `Metrics` object they need as a
parameter; the HTTP pipeline records requests; `/metrics` renders the registry.

A process started alone keeps its series in a private registry per application (no
process globals). The processes serving one database (`alyx serve --workers N`, or
several `alyx serve` started by hand on one project) share theirs instead through
prometheus-client's multiprocess mode: each process writes its values to memory-mapped
files in one directory, named by the `PROMETHEUS_MULTIPROC_DIR` environment variable,
and `/metrics` on any of them renders the sum over every file in it — counters and
histograms add up, the realtime gauges add the live processes' values (`livesum`).
The variable must be set before `prometheus_client` is first imported, which this
module does lazily for that reason: the supervisor calls `use_multiprocess()` before it
forks the workers, which inherit the variable and then import the application.
Processes started by hand join by having the variable in their environment; the
directory must be empty when the first of them starts (values left by an earlier run
would be added in).

Series names and labels are the same in both modes; in multiprocess mode counters
carry no `_created` sample.

The HTTP series are tallied in memory per request (a count, a sum and one bucket per
route, method and status) and added to the prometheus-client series once per pass of
the event loop, before `/metrics` renders and at exit: in multiprocess mode each added
value is a locked write to the memory-mapped file after a `getpid()` system call, and
three of them per request cost more than the rest of the request's bookkeeping
(docs/benchmarks.md). A scrape therefore sees another worker's requests once that
worker's event loop has finished the pass that answered them. The supervisor also counts worker restarts
(`alyx_worker_restarts{worker}`) and removes a dead worker's live gauges
(`worker_exited`); a process that exits normally removes its own.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
import weakref
from bisect import bisect_left
from pathlib import Path
from typing import Any

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROCESS_ENV",
    "Metrics",
    "multiprocess_directory",
    "record_worker_restart",
    "use_multiprocess",
    "worker_exited",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable naming the directory the processes of one server share."""

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# Process-wide state of multiprocess mode only (the files are per process by nature):
# the restart counter of the supervisor, and whether this process removes its live
# gauges at exit.
_process: dict[str, Any] = {}


_unflushed: weakref.WeakSet[Metrics] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """What the live `Metrics` objects still hold goes to their series (and files)."""
    for metrics in list(_unflushed):
        metrics.flush()


def use_multiprocess(directory: Path, *, empty: bool = False) -> None:
    """Put this process, and the processes it starts, in multiprocess mode in `directory`.

    Call it before anything imports `prometheus_client` (that is, before importing the
    application): the library picks its storage once, at import. Raises RuntimeError when
    it was already imported in another mode. The directory is created; `empty=True`
    removes the files an earlier run left in it (the supervisor passes it once, at start;
    a worker must not, its siblings' files are there).
    """
    directory = directory.resolve()
    if "prometheus_client" in sys.modules and multiprocess_directory() != directory:
        raise RuntimeError(
            "prometheus_client was imported before alyx_server.metrics.use_multiprocess(); "
            "call it before importing the application"
        )
    directory.mkdir(parents=True, exist_ok=True)
    if empty:
        for leftover in directory.glob("*.db"):
            leftover.unlink(missing_ok=True)
    os.environ[MULTIPROCESS_ENV] = str(directory)


def multiprocess_directory() -> Path | None:
    """The directory this process shares its series in, or None when it keeps its own."""
    value = os.environ.get(MULTIPROCESS_ENV)
    return Path(value).resolve() if value else None


def worker_exited(pid: int) -> None:
    """Forget the live gauges (realtime connections, subscriptions) of the exited process `pid`.

    The supervisor calls it when it reaps a worker; counters and histograms stay (totals
    never go back). Does nothing outside multiprocess mode.
    """
    directory = multiprocess_directory()
    if directory is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def record_worker_restart(worker: str) -> None:
    """Count one restart of `worker` (its name, "1".."N") in `alyx_worker_restarts`.

    Called by the supervisor, in multiprocess mode, so that every worker's `/metrics`
    shows it. Outside multiprocess mode the count stays in this process, unrendered.
    """
    counter = _process.get("restarts")
    if counter is None:
        from prometheus_client import Counter

        counter = _process["restarts"] = Counter(
            "alyx_worker_restarts", "Worker processes restarted after they died", ["worker"],
            registry=None,
        )  # fmt: skip
    counter.labels(worker).inc()


def _remove_own_live_gauges(directory: Path) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid(), str(directory))  # type: ignore[no-untyped-call]


class Metrics:
    """Every series Alyx exports, on a private registry or in the shared directory."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

        self.directory = multiprocess_directory()
        self.registry = CollectorRegistry(auto_describe=True)
        # In multiprocess mode the series live in the files; the registry only reads them.
        r: Any = self.registry
        if self.directory is not None:
            if values.ValueClass is values.MutexValue:
                raise RuntimeError(
                    f"{MULTIPROCESS_ENV} was set after prometheus_client was imported; "
                    "set it in the environment before the server starts"
                )
            from prometheus_client.multiprocess import MultiProcessCollector

            self.directory.mkdir(parents=True, exist_ok=True)
            MultiProcessCollector(self.registry, path=str(self.directory))  # type: ignore[no-untyped-call]
            r = None
            if not _process.get("cleanup"):
                _process["cleanup"] = True
                atexit.register(_remove_own_live_gauges, self.directory)
        self.http_requests = Counter(
            "alyx_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "alyx_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.realtime_connections = Gauge(
            "alyx_realtime_connections", "Open realtime WebSocket connections",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.realtime_subscriptions = Gauge(
            "alyx_realtime_subscriptions", "Live query subscriptions",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.realtime_messages = Counter(
            "alyx_realtime_messages_sent", "Realtime messages sent by type", ["type"], registry=r
        )
        self.function_invocations = Counter(
            "alyx_function_invocations",
            "Function invocations by function and outcome",
            ["function", "outcome"],
            registry=r,
        )
        self.function_duration = Histogram(
            "alyx_function_duration_seconds",
            "Function invocation duration",
            ["function"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.write_batch_size = Histogram(
            "alyx_db_write_batch_size", "Writes committed per group-commit transaction",
            buckets=_BATCH_BUCKETS, registry=r,
        )  # fmt: skip

        # Labelled children, looked up once per (route, method, status): `labels()` takes
        # a lock and builds a key on every call, too much for every request.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # Requests observed since the last flush: per key, [count, sum of seconds, and
        # one count per latency bucket, +Inf last].
        self._tally: dict[tuple[str, str, int], list[Any]] = {}
        self._flush_due = False
        _unflushed.add(self)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request (the pipeline's hook), added to the series by `flush`, which
        the event loop runs once it has finished its current pass."""
        key = (route, method, status)
        tally = self._tally.get(key)
        if tally is None:
            tally = self._tally[key] = [0, 0.0] + [0] * (len(_LATENCY_BUCKETS) + 1)
        tally[0] += 1
        tally[1] += seconds
        tally[2 + bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        if not self._flush_due:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_due = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Add the requests tallied since the last call to the series."""
        self._flush_due = False
        tally, self._tally = self._tally, {}
        for key, (count, seconds, *buckets) in tally.items():
            pair = self._children.get(key)
            if pair is None:
                route, method, status = key
                pair = self.http_requests.labels(route, method, str(status)), self.http_latency.labels(route)
                self._children[key] = pair
            requests, latency = pair
            requests.inc(count)
            # A histogram child takes one observation at a time: its sum and buckets (the
            # values `observe` increments) are added to directly.
            latency._sum.inc(seconds)
            for index, n in enumerate(buckets):
                if n:
                    latency._buckets[index].inc(n)

    def observe_write_group(self, size: int, seconds: float) -> None:
        """A group-commit listener (`Database.add_group_listener`): one committed group."""
        self.write_batch_size.observe(size)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        self.flush()
        return generate_latest(self.registry)
