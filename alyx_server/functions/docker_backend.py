"""The Docker backend: each worker is a container running the same executor over stdio.

A worker's container (image from `docker_images.RuntimeImages`) runs

    python3 -I -B /alyx/runtime/executor.py <name> /alyx/function/<file> unix:///alyx/api.sock
    node /alyx/runtime/executor.mjs <name> /alyx/function/<file> unix:///alyx/api.sock

with stdin open and attached (`docker run -i`): requests go in as lines on stdin and
answers come back on stdout, exactly as with the process backend, so the pool, the
timeouts and the crash handling are the same. The container gets

    /alyx/function     the function's folder (or its one file), read-only
    /alyx/api.sock     the internal API's Unix socket, bind-mounted
    /tmp               a private tmpfs; the rest of the root is read-only

no capabilities, no new privileges, the manifest's `memory` (no swap), a CPU share and a
pids limit, the server's user id (to reach the socket), an environment of only the
manifest's `env`, and no network (a private network namespace with nothing but its own
loopback) unless the manifest says `network: true`. No data directory, no project, no
secret is mounted.

With `network: true` the container joins the engine's `bridge` network, or, on an engine
started without one (`--bridge=none`), the host's network, which also reaches services
on the host's loopback; `isolation_warnings()` says so.

The engine is the one `DOCKER_HOST` names, or the default socket; it must run on this
machine, since the function folders and the socket are bind-mounted by path. A timeout
or a crash removes the container (`remove(force=True)`), and the pool starts a fresh
one. If the server dies, its attach connections close, the executors read end of input
and exit; `DockerBackend` removes such leftovers when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import uuid
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import requests.exceptions
from docker.context import ContextAPI
from docker.models.containers import Container
from docker.types import LogConfig, Mount

from alyx_server.errors import ConfigError
from alyx_server.functions.backend import DEFAULT_PIDS_LIMIT
from alyx_server.functions.cgroups import WorkerCgroup
from alyx_server.functions.docker_images import DEFAULT_BASE_IMAGES, ImageError, RuntimeImages
from alyx_server.functions.manifest import FunctionSpec
from alyx_server.functions.sandbox import SANDBOX_SOCKET, Launch, Runtimes
from alyx_server.functions.worker import Worker, WorkerCrashed

__all__ = ["ContainerWorker", "DockerBackend", "connect_engine", "engine_address"]

log = logging.getLogger("alyx.functions")

_LABEL = "alyx.function"
_DEFAULT_HOST = "unix:///var/run/docker.sock"
_BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
_LINE_LIMIT = 64 * 1024 * 1024
_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
# Stream ids of the attach protocol's frame headers (stdin is never framed).
_STDERR = 2


def engine_address() -> str:
    """Where the engine is: DOCKER_HOST, else the current Docker context (the default socket)."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host
    with contextlib.suppress(docker.errors.DockerException, OSError, ValueError):
        return ContextAPI.get_current_context().Host or _DEFAULT_HOST
    return _DEFAULT_HOST


def connect_engine(timeout: int = 30) -> docker.DockerClient:
    """A client of the engine at `engine_address()`; ConfigError when it does not answer."""
    host = engine_address()
    try:
        if host.startswith("unix://"):
            # Checked first: the SDK would leave the socket of a refused connection unclosed.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(timeout)
                probe.connect(host.removeprefix("unix://"))
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (OSError, docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise ConfigError(
            f"functions.backend: docker: the Docker engine at {host} does not answer ({e})",
            hint="start the engine, or set DOCKER_HOST to where it listens",
        ) from e
    return client


class _Attached:
    """A container's attach connection, shaped like the parts of a process a `Worker` uses.

    `stdin` writes raw bytes; the engine frames stdout and stderr (8-byte headers: stream
    id, 3 zero bytes, big-endian length), which a pump task splits into two readers.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stdin = writer
        self.stdout = asyncio.StreamReader(limit=_LINE_LIMIT)
        self.stderr = asyncio.StreamReader(limit=_LINE_LIMIT)
        self.returncode: int | None = None
        self.pid = 0
        self._reader = reader
        self.pump = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                header = await self._reader.readexactly(8)
                payload = await self._reader.readexactly(int.from_bytes(header[4:8], "big"))
                (self.stderr if header[0] == _STDERR else self.stdout).feed_data(payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.stdout.feed_eof()
            self.stderr.feed_eof()

    @property
    def ended(self) -> bool:
        return self.pump.done()

    async def close(self) -> None:
        self.stdin.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.stdin.wait_closed()
        with contextlib.suppress(asyncio.CancelledError):
            await self.pump


def _container_cgroup(pid: int) -> WorkerCgroup | None:
    """A read-only view of a local container's memory group (to count its processes)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            group = WorkerCgroup((Path("/sys/fs/cgroup/memory") / path.lstrip("/"),), 1)
        elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").is_file():
            group = WorkerCgroup((Path("/sys/fs/cgroup") / path.lstrip("/"),), 2)
        else:
            continue
        return group if pid in group.processes() else None
    return None


class ContainerWorker(Worker):
    """A `Worker` whose executor runs in a container; see the module docstring."""

    def __init__(
        self, name: str, attached: _Attached, launch: Launch, container: Container, backend: DockerBackend
    ) -> None:
        # The worker reads and writes `process.stdin/stdout/stderr`, which _Attached provides.
        super().__init__(name, cast(asyncio.subprocess.Process, attached), launch, None, None)
        self.attached = attached
        self.container = container
        self.backend = backend
        self._reaper: asyncio.Task[None] | None = None
        attached.pump.add_done_callback(self._output_ended)

    def _output_ended(self, _pump: object) -> None:
        """An executor that exited while idle leaves a stopped container: remove it soon.

        Not at once: a crash during an invocation first reads the container's exit state.
        """
        if not self._dead:
            self._reaper = asyncio.get_running_loop().create_task(self._remove_later())

    async def _remove_later(self) -> None:
        await asyncio.sleep(self.backend.exited_grace)
        self._reaper = None
        await self.kill()

    @property
    def alive(self) -> bool:
        return not self._dead and not self.attached.ended

    async def _death(self) -> WorkerCrashed:
        """What happened to a container whose output ended (exit status, out of memory)."""
        code, oom = await asyncio.to_thread(self.backend.exit_state, self.container)
        name = self.name
        if oom:
            return WorkerCrashed(f"function {name} ran out of memory and was stopped", out_of_memory=True)
        if code is not None and code > 128:
            with contextlib.suppress(ValueError):
                return WorkerCrashed(f"function {name} crashed (signal {signal.Signals(code - 128).name})")
        return WorkerCrashed(f"function {name} crashed (exit status {code})")

    async def kill(self) -> None:
        """Remove the container (SIGKILL to all its processes) and close the connection."""
        if self._dead:
            return
        self._dead = True
        if self._reaper is not None:
            self._reaper.cancel()
        await asyncio.to_thread(self.backend.remove, self.container)
        await self.attached.close()
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._stderr_task, 1.0)

    async def stop(self) -> None:
        """Idle workers keep nothing worth a graceful exit: remove the container."""
        await self.kill()


class DockerBackend:
    """Workers as containers of a Docker engine; see the module docstring."""

    name = "docker"

    def __init__(
        self,
        runtimes: Runtimes,
        socket_path: Path,
        *,
        client: docker.DockerClient | None = None,
        base_images: dict[str, str] | None = None,
        cpus: float = 1.0,
        pids_limit: int = DEFAULT_PIDS_LIMIT,
        tmp_size: str = "64m",
        exited_grace: float = 10.0,
    ) -> None:
        """Connects to the engine (ConfigError when it does not answer).

        `exited_grace`: how long the stopped container of an executor that exited is kept
        (a crash during an invocation reads its exit state) before it is removed.
        """
        self.client = client if client is not None else connect_engine()
        self.socket_path = socket_path
        self.images = RuntimeImages(self.client, runtimes.folder, base_images or DEFAULT_BASE_IMAGES)
        self.cpus = cpus
        self.pids_limit = pids_limit
        self.tmp_size = tmp_size
        self.exited_grace = exited_grace
        self.user = f"{os.getuid()}:{os.getgid()}"
        self.engine_version = str(self.client.version().get("Version", "?"))
        self.network_for_network = "bridge" if self.client.networks.list(names=["bridge"]) else "host"
        self._containers: dict[str, Container] = {}
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Containers of a server that died: their executors exited at end of input."""
        filters: dict[str, str | list[str] | bool] = {"label": _LABEL, "status": "exited"}
        for container in self.client.containers.list(all=True, filters=filters):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)

    def isolation_warnings(self) -> list[str]:
        if self.network_for_network == "bridge":
            return []
        return [
            "the Docker engine has no bridge network: functions with network: true share the "
            "host's network, including services listening on its loopback"
        ]

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "sandbox": "docker",
            "limits": "docker",
            "engine": self.engine_version,
            "network": self.network_for_network,
        }

    async def start_worker(self, spec: FunctionSpec, *, timeout: float) -> Worker:
        try:
            image = await self.images.tag(spec.runtime)
        except ImageError as e:
            raise WorkerCrashed(str(e)) from e
        launch = self._launch(spec)
        try:
            container = await asyncio.to_thread(self._create, spec, image, launch)
        except _ENGINE_ERRORS as e:
            raise WorkerCrashed(f"the container of function {spec.name} could not be created: {e}") from e
        self._containers[container.id or ""] = container
        worker: ContainerWorker | None = None
        try:
            attached = _Attached(*await asyncio.open_connection(sock=await self._attach(container)))
            worker = ContainerWorker(spec.name, attached, launch, container, self)
            worker._stderr_task = asyncio.get_running_loop().create_task(worker._drain_stderr())
            await asyncio.to_thread(container.start)
            await worker._ready(timeout)
            await self._watch_processes(worker)
        except BaseException as e:
            if worker is not None:
                await worker.kill()
            else:
                await asyncio.to_thread(self.remove, container)
            if isinstance(e, _ENGINE_ERRORS):
                raise WorkerCrashed(f"the container of function {spec.name} did not start: {e}") from e
            raise
        return worker

    async def _watch_processes(self, worker: ContainerWorker) -> None:
        """Count the container's processes, when its group is visible here (a local engine)."""
        pid = await asyncio.to_thread(self._pid, worker.container)
        worker.cgroup = _container_cgroup(pid) if pid else None
        if worker.cgroup is not None:
            worker.baseline_processes = len(worker.cgroup.processes())

    def _launch(self, spec: FunctionSpec) -> Launch:
        inner = f"/alyx/function/{spec.source.name}"
        url = f"unix://{SANDBOX_SOCKET}"
        if spec.runtime == "python":
            argv = ["python3", "-I", "-B", "/alyx/runtime/executor.py", spec.name, inner, url]
        else:
            argv = ["node", "/alyx/runtime/executor.mjs", spec.name, inner, url]
        mounts = {str(spec.folder): "/alyx/function"} if spec.folder else {str(spec.source): inner}
        env = {**_BASE_ENV, **spec.env}
        return Launch(argv, env, "/alyx/function", url, True, mounts)

    def _create(self, spec: FunctionSpec, image: str, launch: Launch) -> Container:
        mounts = [Mount(inner, host, type="bind", read_only=True) for host, inner in launch.mounts.items()]
        mounts.append(Mount(SANDBOX_SOCKET, str(self.socket_path), type="bind"))
        return self.client.containers.create(
            image,
            launch.argv,
            name=f"alyx-{spec.name}-{uuid.uuid4().hex[:12]}",
            labels={_LABEL: spec.name},
            stdin_open=True,
            environment=launch.env,
            working_dir=launch.cwd,
            user=self.user,
            mounts=mounts,
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmp_size}"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            **self._network(spec),
            mem_limit=spec.memory,
            memswap_limit=spec.memory,
            nano_cpus=int(self.cpus * 1e9),
            pids_limit=self.pids_limit,
            log_config=LogConfig(type="none"),
        )

    def _network(self, spec: FunctionSpec) -> dict[str, Any]:
        """No network at all (a private namespace with only loopback) unless the manifest asks.

        `network_disabled` rather than `network_mode="none"`: the same empty namespace, made
        by the runtime instead of the engine's network manager, which starts containers
        two to three times faster.
        """
        if spec.network:
            return {"network_mode": self.network_for_network}
        return {"network_disabled": True}

    async def _attach(self, container: Container) -> socket.socket:
        """Attach before start, so that no line of the executor is missed."""
        return await asyncio.to_thread(self._attach_socket, container.id or "")

    def _attach_socket(self, container_id: str) -> socket.socket:
        """The hijacked connection of `POST /containers/{id}/attach`, as a socket of our own."""
        api = self.client.api
        response = api.post(
            f"{api.base_url}/v{api.api_version}/containers/{container_id}/attach",
            params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1},
            headers={"Connection": "Upgrade", "Upgrade": "tcp"},
            stream=True,
        )
        try:
            if response.status_code not in (101, 200):
                raise WorkerCrashed(f"attaching to container {container_id[:12]} failed: {response.text}")
            connection = response.raw.connection
            raw = getattr(connection, "sock", None)
            if not isinstance(raw, socket.socket) or isinstance(raw, ssl.SSLSocket):
                raise ConfigError(
                    "functions.backend: docker: attaching to containers needs a unix:// or plain "
                    f"tcp:// DOCKER_HOST, not a {type(raw).__name__} connection"
                )
            own = raw.dup()
        finally:
            response.close()
        own.setblocking(False)
        return own

    def _pid(self, container: Container) -> int:
        with contextlib.suppress(docker.errors.APIError):
            container.reload()
            return int(container.attrs.get("State", {}).get("Pid") or 0)
        return 0

    def exit_state(self, container: Container) -> tuple[int | None, bool]:
        """The exit status of a container whose output ended, and whether memory stopped it."""
        with contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
            container.wait(timeout=2)
        try:
            container.reload()
        except docker.errors.APIError:
            return None, False
        state = container.attrs.get("State", {})
        running = bool(state.get("Running"))
        return (None if running else int(state.get("ExitCode", 0))), bool(state.get("OOMKilled"))

    def remove(self, container: Container) -> None:
        """Kill and delete a container; one already gone is fine."""
        self._containers.pop(container.id or "", None)
        with contextlib.suppress(docker.errors.NotFound):
            try:
                container.remove(force=True)
            except docker.errors.APIError as e:
                log.warning("could not remove container %s: %s", container.name, e)

    async def close(self) -> None:
        """Remove every container still there, then close the client."""
        await asyncio.gather(
            *(asyncio.to_thread(self.remove, c) for c in list(self._containers.values())),
            return_exceptions=True,
        )
        self.client.close()
