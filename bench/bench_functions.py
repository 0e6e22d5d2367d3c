"""Function invocation: warm pools against a fresh interpreter per call.

    python bench/bench_functions.py [--calls 1000]

For each runtime (Python, Node) on the process backend as this machine allows it
(bubblewrap and cgroup limits when present), a trivial function `(input) -> {n: input.n}`:

    bare start   `python -I -c pass` / `node -e 0`: the floor under any cold start
    cold start   first invocation with no warm worker: sandbox, interpreter, SDK and the
                 function's module loaded, then one request answered (median of 10)
    warm p50/p99 sequential invocations through FunctionService.invoke (input check,
                 token, pool, stdio round trip), no HTTP
    inv/s        invocations per second from 8 concurrent callers, max_instances 2
    fresh/call   the same request answered by a new executor process per call, what a
                 subprocess-per-call runtime does (sequential p50, and calls per second)

Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alyx_server.functions.backend import ProcessBackend
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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def service(folder: Path, sock: Path, limits: PoolLimits) -> FunctionService:
    found = discover_functions(folder, Defaults())
    backend = ProcessBackend(Runtimes.detect(data_dir("runtimes")), sock)
    svc = FunctionService(found, backend, limits, compile_rule=compile_function_rule)
    await svc.start()
    return svc


async def cold(folder: Path, sock: Path, name: str, times: int = 10) -> float:
    samples = []
    for _ in range(times):
        svc = await service(folder, sock, PoolLimits(min_warm=0, max_instances=1))
        start = time.perf_counter()
        await svc.invoke(name, {"n": 1}, None, REQUEST)
        samples.append((time.perf_counter() - start) * 1000)
        await svc.close()
    return statistics.median(samples)


async def warm(folder: Path, sock: Path, name: str, calls: int) -> tuple[float, float, float]:
    svc = await service(folder, sock, PoolLimits(min_warm=2, max_instances=2, max_queue=1000))
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


async def fresh(folder: Path, sock: Path, name: str, calls: int) -> tuple[float, float]:
    """A new (sandboxed, limited) executor per call: start, answer once, stop."""
    svc = await service(folder, sock, PoolLimits(min_warm=0, max_instances=1))
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


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "functions"
        folder.mkdir()
        for filename, text in SOURCES.values():
            (folder / filename).write_text(text)
            (folder / f"{Path(filename).stem}.yaml").write_text(MANIFEST)
        sock = Path(tmp) / "api.sock"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(sock))
        backend = ProcessBackend(Runtimes.detect(data_dir("runtimes")), sock)
        print(f"process backend: {backend.describe()}\n")
        print(
            "| runtime | bare interpreter start | cold start | warm p50 | warm p99 | warm inv/s "
            "| fresh/call p50 | fresh inv/s |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for runtime, (filename, _) in SOURCES.items():
            name = Path(filename).stem
            if runtime == "node" and backend.runtimes.node is None:
                continue
            runtimes = backend.runtimes
            bare = [runtimes.python, "-I", "-c", "pass"]
            if runtime == "node":
                bare = [str(runtimes.node), "-e", "0"]
            bare_ms = await bare_start(bare)
            cold_ms = await cold(folder, sock, name)
            p50, p99, rate = await warm(folder, sock, name, calls)
            fresh_p50, fresh_rate = await fresh(folder, sock, name, 30)
            print(
                f"| {runtime} | {bare_ms:.1f} ms | {cold_ms:.1f} ms | {p50:.2f} ms | {p99:.2f} ms "
                f"| {rate:,.0f} | {fresh_p50:.1f} ms | {fresh_rate:,.0f} |"
            )
        listener.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    asyncio.run(main(parser.parse_args().calls))
