"""Function invocation: warm pools against a fresh interpreter per call.

    python bench/bench_functions.py [--calls 1000]

For each runtime (Python, Node) on the process backend as this machine allows it
(bubblewrap and cgroup limits when present), and on the docker backend when DOCKER_HOST
is set (an engine with the base images of .ci/docker-up.sh), a trivial function
`(input) -> {n: input.n}`:

    bare start   `python -I -c pass` / `node -e 0`: the floor under any cold start (docker:
                 the same in a new container of the runtime image, created, started,
                 waited for and removed)
    cold start   first invocation with no warm worker: sandbox, interpreter, SDK and the
                 function's module loaded, then one request answered (median of 10)
    warm p50/p99 sequential invocations through FunctionService.invoke (input check,
                 token, pool, stdio round trip), no HTTP
    inv/s        invocations per second from 8 concurrent callers, max_instances 2
    fresh/call   the same request answered by a new executor process (or container) per
                 call, what a subprocess-per-call runtime does (sequential p50, and calls
                 per second)

Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alyx_server.functions.backend import Backend, ProcessBackend
from alyx_server.functions.manifest import Defaults, discover_functions
from alyx_server.functions.pool import PoolLimits
from alyx_server.functions.rules import compile_function_rule
from alyx_server.functions.sandbox import Runtimes
from alyx_server.functions.service import FunctionService
from alyx_server.resources import data_dir
from alyx_server.rules import RequestInfo

SOURCES = {
    "python": ("trivial_py.py", "from alyx_functions import define_function\n"
               "f = define_function(handler=lambda input, ctx: {'n': input['n']})\n"),
    "node": ("trivial_node.mjs", 'import { defineFunction } from "@alyx/functions";\n'
             "export default defineFunction({ handler: (input) => ({ n: input.n }) });\n"),
}  # fmt: skip
MANIFEST = "input: { n: { type: int } }\nrule: 'true'\n"
REQUEST = RequestInfo("POST", "127.0.0.1", datetime.now(UTC), {})
BackendFactory = Callable[[Path], Backend]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def process_backend(sock: Path) -> Backend:
    return ProcessBackend(Runtimes.detect(data_dir("runtimes")), sock)


def docker_backend(sock: Path) -> Backend:
    from alyx_server.functions.docker_backend import DockerBackend

    return DockerBackend(Runtimes.detect(data_dir("runtimes")), sock)


async def service(folder: Path, sock: Path, limits: PoolLimits, make: BackendFactory) -> FunctionService:
    found = discover_functions(folder, Defaults())
    backend = make(sock)
    svc = FunctionService(found, backend, limits, compile_rule=compile_function_rule)
    await svc.start()
    return svc


async def cold(folder: Path, sock: Path, name: str, make: BackendFactory, times: int = 10) -> float:
    samples = []
    for _ in range(times):
        svc = await service(folder, sock, PoolLimits(min_warm=0, max_instances=1), make)
        start = time.perf_counter()
        await svc.invoke(name, {"n": 1}, None, REQUEST)
        samples.append((time.perf_counter() - start) * 1000)
        await svc.close()
    return statistics.median(samples)


async def warm(
    folder: Path, sock: Path, name: str, calls: int, make: BackendFactory
) -> tuple[float, float, float]:
    svc = await service(folder, sock, PoolLimits(min_warm=2, max_instances=2, max_queue=1000), make)
    for i in range(50):
        await svc.invoke(name, {"n": i}, None, REQUEST)
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        await svc.invoke(name, {"n": i}, None, REQUEST)
        samples.append((time.perf_counter() - start) * 1000)

    async def caller(count: int) -> None:
        for i in range(count):
            await svc.invoke(name, {"n": i}, None, REQUEST)

    start = time.perf_counter()
    await asyncio.gather(*(caller(calls // 8) for _ in range(8)))
    rate = (calls // 8) * 8 / (time.perf_counter() - start)
    await svc.close()
    return pct(samples, 0.5), pct(samples, 0.99), rate


async def fresh(folder: Path, sock: Path, name: str, calls: int, make: BackendFactory) -> tuple[float, float]:
    """A new (sandboxed, limited) executor per call: start, answer once, stop."""
    svc = await service(folder, sock, PoolLimits(min_warm=0, max_instances=1), make)
    spec = svc.specs[name]
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        worker = await svc.backend.start_worker(spec, timeout=15)
        request = {"request_id": str(i), "function": name, "input": {"n": i}, "context": {}}
        await worker.invoke(request, 15)
        await worker.stop()
        samples.append((time.perf_counter() - start) * 1000)
    await svc.close()
    return statistics.median(samples), 1000 / statistics.mean(samples)


async def bare_start(argv: list[str], times: int = 10) -> float:
    """The interpreter alone, started and stopped: the floor under any cold start."""
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(*argv)
        await process.wait()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def bare_container(runtime: str, times: int = 10) -> float:
    """A container of the runtime image running the bare interpreter, created to removed."""
    from alyx_server.functions.docker_backend import connect_engine
    from alyx_server.functions.docker_images import RuntimeImages

    client = connect_engine()
    image = await RuntimeImages(client, data_dir("runtimes")).tag(runtime)
    argv = ["python3", "-I", "-c", "pass"] if runtime == "python" else ["node", "-e", "0"]

    def once() -> float:
        start = time.perf_counter()
        container = client.containers.create(image, argv, network_disabled=True, read_only=True)
        container.start()
        container.wait()
        container.remove(force=True)
        return (time.perf_counter() - start) * 1000

    samples = [await asyncio.to_thread(once) for _ in range(times)]
    client.close()
    return statistics.median(samples)


async def row(folder: Path, sock: Path, backend: str, runtime: str, calls: int) -> str:
    name = Path(SOURCES[runtime][0]).stem
    make = docker_backend if backend == "docker" else process_backend
    # Containers start slower: fewer cold and fresh samples keep the run short.
    times, fresh_calls = (5, 10) if backend == "docker" else (10, 30)
    if backend == "docker":
        bare_ms = await bare_container(runtime, times)
    else:
        runtimes = Runtimes.detect(data_dir("runtimes"))
        bare = [runtimes.python, "-I", "-c", "pass"]
        if runtime == "node":
            bare = [str(runtimes.node), "-e", "0"]
        bare_ms = await bare_start(bare)
    cold_ms = await cold(folder, sock, name, make, times)
    p50, p99, rate = await warm(folder, sock, name, calls, make)
    fresh_p50, fresh_rate = await fresh(folder, sock, name, fresh_calls, make)
    return (
        f"| {backend} | {runtime} | {bare_ms:.1f} ms | {cold_ms:.1f} ms | {p50:.2f} ms | {p99:.2f} ms "
        f"| {rate:,.0f} | {fresh_p50:.1f} ms | {fresh_rate:,.0f} |"
    )


async def main(calls: int, backends: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "functions"
        folder.mkdir()
        for filename, text in SOURCES.values():
            (folder / filename).write_text(text)
            (folder / f"{Path(filename).stem}.yaml").write_text(MANIFEST)
        sock = Path(tmp) / "api.sock"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(sock))
        for backend in backends:
            made = (docker_backend if backend == "docker" else process_backend)(sock)
            print(f"{backend} backend: {made.describe()}")
            for warning in made.isolation_warnings():
                print(f"  warning: {warning}")
            await made.close()
        print(
            "\n| backend | runtime | bare start | cold start | warm p50 | warm p99 | warm inv/s "
            "| fresh/call p50 | fresh inv/s |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        node = Runtimes.detect(data_dir("runtimes")).node
        for backend in backends:
            for runtime in SOURCES:
                if backend == "process" and runtime == "node" and node is None:
                    continue
                print(await row(folder, sock, backend, runtime, calls), flush=True)
        listener.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument(
        "--backend",
        choices=["process", "docker"],
        action="append",
        help="backends to measure (default: process, and docker when DOCKER_HOST is set)",
    )
    args = parser.parse_args()
    # Each service start repeats the backend's isolation warnings; the header shows them once.
    logging.getLogger("alyx.functions").setLevel(logging.ERROR)
    chosen = args.backend or ["process", *(["docker"] if os.environ.get("DOCKER_HOST") else [])]
    asyncio.run(main(args.calls, chosen))
