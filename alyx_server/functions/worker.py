"""One worker: a long-lived executor process serving one function, one request at a time.

The worker speaks the stdio protocol of SPEC §11 (see runtimes/python/executor.py).
Whatever goes wrong ends in one of three exceptions, and the pool replaces the worker:

    WorkerTimeout   no answer within the invocation's timeout: the worker is killed
    WorkerCrashed   the process exited or wrote something that is not an answer
                    (`out_of_memory` when its control group's memory limit stopped it)
    FunctionLoadFailed  the module did not load (message with file and line)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from alyx_server.functions.cgroups import WorkerCgroup, join_command
from alyx_server.functions.sandbox import Launch

__all__ = ["FunctionLoadFailed", "Worker", "WorkerCrashed", "WorkerTimeout"]

log = logging.getLogger("alyx.functions")

# An answer line may carry a large output; asyncio's default line limit is 64 KiB.
_LINE_LIMIT = 64 * 1024 * 1024


class WorkerTimeout(Exception):
    """The worker did not answer in time and was killed."""


class WorkerCrashed(Exception):
    """The worker died (or broke the protocol) during an invocation."""

    def __init__(self, message: str, *, out_of_memory: bool = False) -> None:
        super().__init__(message)
        self.out_of_memory = out_of_memory


class FunctionLoadFailed(Exception):
    """The function's module could not load; the message starts with file:line."""


class Worker:
    """A started executor; build with `await Worker.start(...)`."""

    def __init__(
        self,
        name: str,
        process: asyncio.subprocess.Process,
        launch: Launch,
        cgroup: WorkerCgroup | None,
        on_exit: Callable[[Worker], None] | None,
    ) -> None:
        self.name = name
        self.process = process
        self.launch = launch
        self.cgroup = cgroup
        self.on_exit = on_exit
        self.invocations = 0
        self.idle_since = time.monotonic()
        self.baseline_processes = 0
        # Whether the executor warmed up before its ready line (its invoke path run against
        # the internal API's ping): the first real call then costs what the next ones do.
        self.warmed = False
        self._stderr_task: asyncio.Task[None] | None = None
        self._dead = False

    @classmethod
    async def start(
        cls,
        name: str,
        launch: Launch,
        *,
        cgroup: WorkerCgroup | None,
        timeout: float,
        on_exit: Callable[[Worker], None] | None = None,
    ) -> Worker:
        """Start the executor and wait for its ready line (FunctionLoadFailed, WorkerCrashed)."""
        argv = join_command(cgroup.procs_files, launch.argv) if cgroup else launch.argv
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=launch.env,
            cwd=launch.cwd,
            start_new_session=True,
            limit=_LINE_LIMIT,
        )
        started = time.perf_counter()
        worker = cls(name, process, launch, cgroup, on_exit)
        worker._stderr_task = asyncio.get_running_loop().create_task(worker._drain_stderr())
        try:
            await worker._ready(timeout)
        except BaseException:
            await worker.kill()
            raise
        if cgroup is not None:
            worker.baseline_processes = len(cgroup.processes())
        cpu = process_tree_cpu(process.pid)
        log.info(
            "function %s: a worker started in %.0f ms (%s of CPU)",
            name, (time.perf_counter() - started) * 1000, "?" if cpu is None else f"{cpu * 1000:.0f} ms",
        )  # fmt: skip
        return worker

    async def _ready(self, timeout: float) -> None:
        try:
            line = await asyncio.wait_for(self._read_line(), timeout)
        except TimeoutError as e:
            raise WorkerCrashed(f"the {self.name} worker did not start within {timeout:g}s") from e
        message = self._parse(line)
        if message.get("type") != "ready":
            raise WorkerCrashed(f"the {self.name} worker did not start: unexpected {line[:200]!r}")
        error = message.get("error")
        if isinstance(error, dict):
            raise FunctionLoadFailed(self._load_message(error))
        self.warmed = message.get("warm") is True

    def _load_message(self, error: dict[str, Any]) -> str:
        file = self._host_path(str(error.get("file") or ""))
        line = error.get("line")
        where = f"{file}:{line}" if line else file
        text = str(error.get("message") or "the module failed to load")
        for host, inner in self.launch.mounts.items():
            text = text.replace(inner, host)
        return f"{where}: {text}"

    def _host_path(self, path: str) -> str:
        for host, inner in self.launch.mounts.items():
            if path == inner:
                return host
            if path.startswith(inner + "/"):
                return host + path[len(inner) :]
        return path

    async def _read_line(self) -> bytes:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise await self._death()
        return line

    def _parse(self, line: bytes) -> dict[str, Any]:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise WorkerCrashed(f"the {self.name} worker broke the protocol: {line[:200]!r}") from e
        if not isinstance(message, dict):
            raise WorkerCrashed(f"the {self.name} worker broke the protocol: {line[:200]!r}")
        return message

    async def _death(self) -> WorkerCrashed:
        """What happened to a worker whose output ended."""
        try:
            code = await asyncio.wait_for(self.process.wait(), 2.0)
        except TimeoutError:
            code = None
        if self.cgroup is not None and self.cgroup.oom_killed():
            message = f"function {self.name} ran out of memory and was stopped"
            return WorkerCrashed(message, out_of_memory=True)
        if code is not None and code < 0:
            return WorkerCrashed(f"function {self.name} crashed (signal {signal.Signals(-code).name})")
        return WorkerCrashed(f"function {self.name} crashed (exit status {code})")

    @property
    def alive(self) -> bool:
        return not self._dead and self.process.returncode is None

    async def _drain_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        with contextlib.suppress(ValueError, ConnectionError):
            async for raw in stream:
                log.info("function %s: %s", self.name, raw.decode("utf-8", "replace").rstrip())

    async def invoke(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer (WorkerTimeout, WorkerCrashed)."""
        stdin = self.process.stdin
        assert stdin is not None
        self.invocations += 1
        context = request.get("context")
        if isinstance(context, dict):
            context["alyx_url"] = self.launch.alyx_url
        try:
            stdin.write(orjson.dumps(request) + b"\n")
            await stdin.drain()
        except (ConnectionError, RuntimeError) as e:
            raise await self._death() from e
        try:
            line = await asyncio.wait_for(self._read_line(), timeout)
        except TimeoutError as e:
            await self.kill()
            raise WorkerTimeout(f"function {self.name} did not finish within {timeout:g}s") from e
        answer = self._parse(line)
        if answer.get("request_id") != request["request_id"]:
            raise WorkerCrashed(f"the {self.name} worker answered another request")
        return answer

    def leaked(self) -> bool:
        """Whether processes the function started are still running after its answer."""
        if self.cgroup is None:
            return False
        return len(self.cgroup.processes()) > self.baseline_processes

    async def kill(self) -> None:
        """Stop the worker and everything it started; idempotent."""
        if self._dead:
            return
        self._dead = True
        if self.cgroup is not None:
            self.cgroup.kill_all()
        # The worker leads its own process group (start_new_session), so killpg reaches
        # it and whatever it started. Not `process.kill()`: Popen polls before it signals,
        # and that poll can reap the child under asyncio's child watcher, which then logs
        # "Unknown child process pid N" and reports exit status 255.
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except PermissionError:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the group is gone: the worker has exited already
        await self.process.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._stderr_task, 1.0)
        if self.cgroup is not None:
            for _ in range(50):
                if not self.cgroup.processes():
                    break
                self.cgroup.kill_all()
                await asyncio.sleep(0.01)
            self.cgroup.remove()
        if self.on_exit is not None:
            self.on_exit(self)

    async def stop(self) -> None:
        """Close stdin so the executor exits by itself, then make sure it is gone."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 1.0)
        await self.kill()


def process_tree_cpu(pid: int) -> float | None:
    """Seconds of CPU the live processes from `pid` down have run (Linux's schedstat, every
    thread; not what exited processes ran), or None without /proc. A worker's start cost:
    the sandbox, the interpreter, the executor, the function's module and the warm-up."""
    total_ns = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                total_ns += int((task / "schedstat").read_text().split()[0])
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            if current == pid:
                return None  # no /proc here (or the worker is gone)
    return total_ns / 1e9
