"""The supervisor of `alyx serve --workers N` (the package docstring describes the design).

A plain loop over a selector, not asyncio: it waits on the workers' control channels and
on a pipe the signal handlers write to (`signal.set_wakeup_fd`), and starts no thread, so
every fork happens in a single-threaded process.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alyx_server.errors import AlyxError
from alyx_server.tools.processes import WORKER_ENV

__all__ = [
    "ACCEPT_BATCH",
    "MAX_START_FAILURES",
    "Supervisor",
    "Target",
    "WorkerChannel",
    "usable_cores",
    "worker_count",
]

log = logging.getLogger("alyx.workers")

ACCEPT_BATCH = 1
"""Connections a worker accepts per wake-up of its event loop (asyncio's default is the
listen backlog: the first worker to wake would take a whole burst)."""
MAX_START_FAILURES = 5
"""Failed starts in a row (exits before `ready`) after which the supervisor gives up."""
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 10.0
STAYED_UP = 30.0
"""Seconds after which a worker's exit no longer counts towards the back-off."""
STOP_GRACE = 60.0
"""Seconds the workers get to drain on SIGTERM before they are killed (their own drain
is bounded by app.SHUTDOWN_TIMEOUT, 30 s)."""

_READY = b"ready"
_STOP = b"stop"
_FAILED = b"failed "

Target = Callable[[int, "WorkerChannel"], int]
"""Runs in the forked worker with its index (1..N) and channel; returns its exit status."""


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; cgroup quotas aside)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(value: str) -> int:
    """`server.workers` as a number: `auto` is `usable_cores()`, or 1 in a process that
    `ALYX_WORKER` names as one worker of a set started by hand."""
    if value != "auto":
        return int(value)
    return 1 if os.environ.get(WORKER_ENV) else usable_cores()


class WorkerChannel:
    """The worker's end of its control channel to the supervisor."""

    def __init__(self, sock: socket.socket, *, leads: bool = False) -> None:
        self._sock = sock
        self.leads = leads
        """This worker runs the start-up migrations while the others wait (worker 1 at the
        first start): it listens at once and answers 503 meanwhile, as one process does.
        Any other worker listens only once it is ready, so no client meets its start-up."""

    def ready(self) -> None:
        """Listening, start-up migrations done: the supervisor may go on."""
        self._send(_READY)

    def failed(self, message: str) -> None:
        """Start-up failed with this one-line message (the worker then exits)."""
        self._send(_FAILED + message.encode()[:60_000])

    def watch(self, on_stop: Callable[[], None], on_lost: Callable[[], None]) -> None:
        """On the running event loop: call `on_stop` when the supervisor says `stop` (hand
        the clients over, then stop), `on_lost` once the supervisor is gone."""
        import asyncio

        loop = asyncio.get_running_loop()
        fd = self._sock.fileno()

        def readable() -> None:
            try:
                data = self._sock.recv(64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data == _STOP:
                on_stop()
            elif not data:
                loop.remove_reader(fd)
                on_lost()

        self._sock.setblocking(False)
        loop.add_reader(fd, readable)

    def _send(self, message: bytes) -> None:
        # A supervisor that is gone cannot be told; the worker stops on its own (watch).
        with contextlib.suppress(OSError):
            self._sock.send(message)


@dataclass(slots=True, eq=False)
class _Worker:
    slot: int
    pid: int
    channel: socket.socket
    started: float
    ready_at: float | None = None
    failure: str | None = None
    stopping: bool = False
    replaces: _Worker | None = None


def describe_exit(status: int) -> str:
    """`exited with status 1` or `was killed by SIGKILL`, from a wait status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    """Runs `count` workers until SIGTERM/SIGINT; `run()` returns the exit status.

    `target` is the worker's body (run in the forked child). `reload`, called on SIGHUP
    before the rolling restart, may raise AlyxError to refuse it (the workers keep running).
    `on_ready` is called once, when worker 1 is first ready (the server answers; the
    others are starting), as one process announces itself; `on_restart(slot)` each
    time a worker that exited on its own is started again; `on_exit(pid)` as each worker
    process is reaped. `listeners`, the sockets the workers share, are closed when the
    workers are told to stop: once the last worker has closed its copy, the port refuses
    new connections instead of queueing them for nobody.
    """

    def __init__(
        self,
        count: int,
        target: Target,
        *,
        reload: Callable[[], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        on_restart: Callable[[int], None] | None = None,
        on_exit: Callable[[int], None] | None = None,
        listeners: Sequence[socket.socket] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError("a supervisor needs at least one worker")
        self.count = count
        self._target = target
        self._reload = reload
        self._on_ready = on_ready
        self._on_restart = on_restart
        self._on_exit = on_exit
        self._listeners = listeners
        self._clock = clock
        self._live: dict[int, _Worker] = {}
        self._slots: dict[int, _Worker] = {}
        self._due: dict[int, float] = {}
        self._start_failures: dict[int, int] = {}
        self._quick_exits: dict[int, int] = {}
        self._announced = False
        self._signals: list[int] = []
        self._stopping = False
        self._stop_deadline: float | None = None
        self._error: str | None = None
        self._roll: list[int] = []
        self._roll_again = False
        self._roll_new: _Worker | None = None
        self._roll_old: _Worker | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until they have all stopped."""
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._note_signal) for sig in handled}
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            self._spawn(1)
            while self._live or not self._stopping:
                self._step()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for worker in self._live.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        if self._error is not None:
            raise AlyxError(self._error, code="WORKER_FAILED")
        return 0

    def _note_signal(self, number: int, _frame: object) -> None:
        self._signals.append(number)

    def _step(self) -> None:
        for key, _mask in self._selector.select(self._timeout()):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 512):
                        pass
            else:
                self._read(key.data)
        while self._signals:
            number = self._signals.pop(0)
            if number in (signal.SIGTERM, signal.SIGINT):
                log.info("stopping the workers (%s)", signal.Signals(number).name)
                self._stop()
            elif number == signal.SIGHUP:
                self._rolling_restart()
        self._reap()
        now = self._clock()
        for slot, due in list(self._due.items()):
            if due <= now and not self._stopping:
                del self._due[slot]
                self._spawn(slot)
        if self._stop_deadline is not None and now >= self._stop_deadline:
            for worker in self._live.values():
                log.error("worker %s (pid %d) did not stop in time; killing it", worker.slot, worker.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            self._stop_deadline = None

    def _timeout(self) -> float | None:
        deadlines = list(self._due.values())
        if self._stop_deadline is not None:
            deadlines.append(self._stop_deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - self._clock())

    # -- workers ----------------------------------------------------------------------

    def _spawn(self, slot: int, replaces: _Worker | None = None) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if threading.active_count() > 1:
            log.warning("forking worker %s while other threads run: %s", slot, threading.enumerate())
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:
            ours.close()
            self._run_child(slot, theirs, leads=slot == 1 and not self._announced)
        theirs.close()
        ours.setblocking(False)
        worker = _Worker(slot, pid, ours, self._clock(), replaces=replaces)
        self._live[pid] = worker
        if replaces is None:
            self._slots[slot] = worker
        self._selector.register(ours, selectors.EVENT_READ, worker)
        return worker

    def _run_child(self, slot: int, channel: socket.socket, *, leads: bool) -> None:
        """In the forked worker: drop the supervisor's state, run the target, exit."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            # SIGHUP is the supervisor's; a terminal hang-up reaches it and it restarts us.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            self._selector.close()
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            for other in self._live.values():
                other.channel.close()
            os.environ[WORKER_ENV] = str(slot)
            status = self._target(slot, WorkerChannel(channel, leads=leads))
        except SystemExit as e:
            status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        except BaseException as e:
            message = str(e) if isinstance(e, AlyxError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, AlyxError):
                log.exception("worker %s failed", slot)
            WorkerChannel(channel).failed(message)
        finally:
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(status)

    def _read(self, worker: _Worker) -> None:
        try:
            data = worker.channel.recv(65_536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(worker.channel)
            return
        if data == _READY:
            self._ready(worker)
        elif data.startswith(_FAILED):
            worker.failure = data[len(_FAILED) :].decode(errors="replace")

    def _ready(self, worker: _Worker) -> None:
        worker.ready_at = self._clock()
        log.info("worker %s (pid %d) ready", worker.slot, worker.pid)
        self._start_failures[worker.slot] = 0
        if self._stopping:
            self._signal(worker, signal.SIGTERM)
            return
        if worker is self._roll_new and worker.replaces is not None:
            old = worker.replaces
            worker.replaces = None
            self._slots[worker.slot] = worker
            self._roll_new = None
            if old.pid not in self._live:  # it died meanwhile (and was not restarted)
                self._next_roll()
                return
            log.info("stopping the worker %s it replaces (pid %d)", worker.slot, old.pid)
            self._roll_old = old
            old.stopping = True
            try:
                old.channel.send(_STOP)
            except OSError:
                self._signal(old, signal.SIGTERM)
            return
        if worker.slot == 1 and not self._announced and len(self._slots) == 1:
            if self._on_ready is not None:
                self._on_ready()
            for slot in range(2, self.count + 1):
                self._spawn(slot)
        if not self._announced and self._all_ready():
            self._announced = True
            log.info("all %d workers ready", self.count)
            if self._roll_again:
                self._rolling_restart()

    def _all_ready(self) -> bool:
        return len(self._slots) == self.count and all(w.ready_at is not None for w in self._slots.values())

    def _reap(self) -> None:
        while self._live:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._live.pop(pid, None)
            if worker is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(worker.channel)
            worker.channel.close()
            if self._on_exit is not None:
                try:
                    self._on_exit(pid)
                except Exception:
                    log.exception("after worker %s (pid %d) exited", worker.slot, pid)
            self._exited(worker, status)

    def _exited(self, worker: _Worker, status: int) -> None:
        how = describe_exit(status)
        if self._stopping or worker.stopping:
            if status != 0:
                log.warning("worker %s (pid %d) %s while stopping", worker.slot, worker.pid, how)
            if worker is self._roll_old:
                self._roll_old = None
                self._next_roll()
            return
        if worker.replaces is not None:
            # A rolling restart's new worker that never got ready: the old one keeps serving.
            self._roll_new = None
            self._roll.clear()
            log.error(
                "rolling restart stopped: the new worker %s %s before it was ready%s; "
                "pid %d keeps serving",
                worker.slot, how, f" ({worker.failure})" if worker.failure else "", worker.replaces.pid,
            )  # fmt: skip
            return
        if self._slots.get(worker.slot) is worker:
            del self._slots[worker.slot]
        if self._roll_new is not None and self._roll_new.replaces is worker:
            log.error("worker %s (pid %d) %s; its replacement is starting", worker.slot, worker.pid, how)
            if self._on_restart is not None:
                self._on_restart(worker.slot)
            return
        if worker.ready_at is None:
            failures = self._start_failures.get(worker.slot, 0) + 1
            self._start_failures[worker.slot] = failures
            first_start = not self._announced and worker.slot == 1
            if worker.failure is not None and first_start:
                self._fail(worker.failure)
                return
            if failures >= MAX_START_FAILURES:
                reason = worker.failure or how
                self._fail(f"worker {worker.slot} failed to start {failures} times in a row: {reason}")
                return
        up = self._clock() - worker.started
        quick = self._quick_exits.get(worker.slot, 0) + 1 if up < STAYED_UP else 1
        self._quick_exits[worker.slot] = quick
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (quick - 1))
        log.error(
            "worker %s (pid %d) %s%s; starting it again in %.1fs",
            worker.slot, worker.pid, how, f": {worker.failure}" if worker.failure else "", delay,
        )  # fmt: skip
        if self._on_restart is not None:
            try:
                self._on_restart(worker.slot)
            except Exception:
                log.exception("could not count the restart of worker %s", worker.slot)
        self._due[worker.slot] = self._clock() + delay

    def _signal(self, worker: _Worker, number: int) -> None:
        try:
            os.kill(worker.pid, number)
        except ProcessLookupError:
            pass
        except OSError as e:  # pragma: no cover - EPERM cannot happen to our own child
            if e.errno != errno.ESRCH:
                raise

    def _fail(self, message: str) -> None:
        self._error = message
        self._stop()

    def _stop(self) -> None:
        self._due.clear()
        self._roll.clear()
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = self._clock() + STOP_GRACE
            for sock in self._listeners:
                sock.close()
        for worker in self._live.values():
            self._signal(worker, signal.SIGTERM)

    # -- SIGHUP -----------------------------------------------------------------------

    def _rolling_restart(self) -> None:
        if self._stopping:
            return
        if not self._announced or self._roll or self._roll_new or self._roll_old:
            self._roll_again = True  # once the start or the roll under way is done
            return
        self._roll_again = False
        if self._reload is not None:
            try:
                self._reload()
            except AlyxError as e:
                log.error("SIGHUP: the workers keep running with the previous configuration: %s", e)
                return
        log.info("SIGHUP: restarting the workers one at a time")
        self._roll = sorted(self._slots)
        self._next_roll()

    def _next_roll(self) -> None:
        while self._roll and not self._stopping:
            slot = self._roll.pop(0)
            old = self._slots.get(slot)
            if old is None:
                continue  # waiting for a restart already: it starts with the new settings
            self._roll_new = self._spawn(slot, replaces=old)
            return
        if not self._stopping and self._roll_new is None and self._roll_old is None:
            log.info("rolling restart done")
            if self._roll_again:
                self._rolling_restart()
