"""The cost of one view by id inside one process: no socket, no load generator, no other process.

    .venv/bin/python bench/view_in_process.py --project bench/.work/alyx-seed [--requests 5000]
        [--reps 5] [--bare]

The project is one that bench_workers_vs_pocketbase.py seeded (its `posts` and the
`ids.txt` beside alyx.yaml); it is copied to a temporary directory first. The script
builds the application as `alyx serve` does (`create_app`, the served dispatch of
api/pipeline.direct_dispatch, the collector tuned), or with `--bare` the application of
bench/bare_aiohttp.py on a copy of the same database file, and feeds HTTP/1.1 GET
requests for random ids (seeded) into aiohttp's protocol over an in-memory transport,
one at a time, each answered before the next. It prints the process's CPU time per
request, best of `--reps` runs.

On a busy machine CPU time still moves by several percent from run to run. For changes
smaller than that, count instructions instead: run the script under
`valgrind --tool=callgrind` (with PYTHONMALLOC=malloc) twice, with `--reps 1` and two
values of `--requests`, and divide the difference of the two totals by the difference
of the requests; start-up cancels out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["main"]

JWT_SECRET = "bench-only-secret-0123456789abcdefghijklmnop"


class MemoryTransport(asyncio.Transport):
    """A connection's transport that drops what is written and counts the writes."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: asyncio.Future[None] | None = None
        self._closing = False

    def write(self, data: Any) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(None)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"")

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8090)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _alyx_runner(project: Path) -> web.AppRunner:
    from alyx_server.api.pipeline import direct_dispatch
    from alyx_server.api.runtime import RUNTIME
    from alyx_server.app import create_app, tune_collector
    from alyx_server.config import load_settings
    from alyx_server.logs import configure_logging

    settings = load_settings(project, mode="serve", overrides={})
    configure_logging(settings.logging, stream=open(os.devnull, "w"))  # noqa: SIM115 (process-long)
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    assert runner.server is not None
    direct_dispatch(app, runner.server)
    while app[RUNTIME].phase != "ready":
        await asyncio.sleep(0.05)
    tune_collector()
    return runner


async def _bare_runner(project: Path) -> web.AppRunner:
    sys.path.insert(0, str(Path(__file__).parent))
    import bare_aiohttp

    database = next((project / "data").glob("*.db"))
    runner = web.AppRunner(bare_aiohttp.make_app(str(database)), handle_signals=False, access_log=None)
    await runner.setup()
    return runner


async def measure(project: Path, requests: int, reps: int, warmup: int, bare: bool) -> list[float]:
    """CPU microseconds per request of each run."""
    runner = await (_bare_runner(project) if bare else _alyx_runner(project))
    assert runner.server is not None
    protocol = runner.server()
    transport = MemoryTransport()
    protocol.connection_made(transport)
    loop = asyncio.get_running_loop()
    ids = [line for line in (project / "ids.txt").read_text().split() if line]
    rng = random.Random(1)
    messages = [
        f"GET /api/collections/posts/{rng.choice(ids)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for _ in range(1000)
    ]

    async def run(count: int) -> None:
        for i in range(count):
            transport.answered = loop.create_future()
            protocol.data_received(messages[i % len(messages)])
            await transport.answered

    results = []
    try:
        await run(warmup)
        for _ in range(reps):
            started = time.process_time()
            await run(requests)
            results.append((time.process_time() - started) / requests * 1e6)
    finally:
        protocol.connection_lost(None)
        await runner.cleanup()
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--project", type=Path, required=True, help="a seeded project (bench/.work/alyx-seed)"
    )
    parser.add_argument("--requests", type=int, default=5000, help="requests per run (5,000)")
    parser.add_argument("--reps", type=int, default=5, help="runs, best kept (5)")
    parser.add_argument("--warmup", type=int, default=2000, help="unmeasured requests first (2,000)")
    parser.add_argument("--bare", action="store_true", help="bench/bare_aiohttp.py's application instead")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("ALYX_AUTH_JWT_SECRET", JWT_SECRET)
    with tempfile.TemporaryDirectory(prefix="alyx-view-") as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(args.project, project, ignore=shutil.ignore_patterns("serve-*.log"))
        os.chdir(project)
        results = asyncio.run(measure(project, args.requests, args.reps, args.warmup, args.bare))
    label = "bare aiohttp" if args.bare else "Alyx"
    runs = " ".join(f"{r:.1f}" for r in results)
    print(f"{label}: {min(results):.1f} µs of CPU per view, best of {len(results)} ({runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
