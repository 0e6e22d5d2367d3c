"""The job queue's throughput and the webhook delivery latency, on the real server.

    python bench/bench_jobs.py [--jobs 3000] [--writes 200] [--instances 4]

    jobs/s        no-op job functions (Python and Node) enqueued all at once (concurrent
                  `JobQueue.enqueue` calls, which group-commit), timed from the first
                  enqueue until every row of `_alyx_jobs` is done: claims (one UPDATE per
                  name and pass), runs on the warm pool (`functions.pool.max_instances`
                  workers) and completions (one write each, group-committed)
    webhook p50/p95
                  one document written through `POST /api/collections/posts` at a time;
                  from just before the request to the moment a loopback aiohttp receiver
                  has the signed delivery (change feed -> dispatcher -> delivery row and
                  job -> runner -> signed POST)

The server runs in this process (aiohttp's test server on loopback, a real SQLite file in
a temporary folder, real function workers). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from alyx_server.api.jobs import JOBS
from alyx_server.app import create_app
from alyx_server.config import load_settings

SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""
NOOP_PY = (
    "from alyx_functions import define_function\nnoop = define_function(handler=lambda input, ctx: {})\n"
)
NOOP_NODE = (
    'import { defineFunction } from "@alyx/functions";\n'
    "export default defineFunction({ handler: () => ({}) });\n"
)
JOB_YAML = "job: { max_attempts: 3 }\n"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def project(root: Path, instances: int, hook_url: str) -> Path:
    (root / "functions").mkdir(parents=True)
    (root / "schema.yaml").write_text(SCHEMA)
    for name, source in (("noop_py.py", NOOP_PY), ("noop_node.mjs", NOOP_NODE)):
        (root / "functions" / name).write_text(source)
        (root / "functions" / (name.split(".")[0] + ".yaml")).write_text(JOB_YAML)
    (root / "alyx.yaml").write_text(
        f"""\
functions: {{ pool: {{ min_warm: {instances}, max_instances: {instances} }} }}
jobs: {{ poll_interval: 500ms }}
webhooks:
  allow_private_targets: true
  targets:
    - name: bench
      url: {hook_url}
      secret: {SECRET}
      events: [{{collection: posts, events: [create]}}]
"""
    )
    return root


async def throughput(client: TestClient[Any, Any], db_file: Path, name: str, count: int) -> float:
    queue = client.app[JOBS].queue
    assert queue is not None
    for _ in range(20):  # warm the pool and the path
        await queue.enqueue(name, {})
    await wait_done(db_file, name, 20)
    start = time.perf_counter()
    await asyncio.gather(*(queue.enqueue(name, {}) for _ in range(count)))
    await wait_done(db_file, name, count + 20)
    return count / (time.perf_counter() - start)


async def wait_done(db_file: Path, name: str, total: int) -> None:
    with sqlite3.connect(db_file) as conn:
        while True:
            (done,) = conn.execute(
                "SELECT count(*) FROM _alyx_jobs WHERE name = ? AND state = 'done'", (name,)
            ).fetchone()
            if done >= total:
                return
            await asyncio.sleep(0.005)


async def main(jobs: int, writes: int, instances: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        arrived.put_nowait(time.perf_counter())
        return web.Response(status=204)

    receiver_app = web.Application()
    receiver_app.router.add_post("/hook", receive)
    receiver = TestServer(receiver_app, host="127.0.0.1")
    await receiver.start_server()
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp) / "app", instances, f"http://127.0.0.1:{receiver.port}/hook")
        settings = load_settings(root, mode="dev")
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
        await client.start_server()
        try:
            db_file = settings.database.path
            rates = {name: await throughput(client, db_file, name, jobs) for name in ("noop_py", "noop_node")}
            samples = []
            for i in range(writes):
                start = time.perf_counter()
                response = await client.post("/api/collections/posts", json={"title": f"p{i}"})
                assert response.status == 201, await response.text()
                samples.append((await asyncio.wait_for(arrived.get(), 30) - start) * 1000)
        finally:
            await client.close()
            await receiver.close()
    print(f"| measure ({instances} instances per function) | value |")
    print("|---|---|")
    for name, rate in rates.items():
        print(f"| no-op job {name}, {jobs} jobs enqueue -> done | {rate:,.0f} jobs/s |")
    print(f"| webhook delivery, {writes} writes one at a time, p50 | {pct(samples, 0.5):.1f} ms |")
    print(f"| webhook delivery p95 | {pct(samples, 0.95):.1f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--instances", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.writes, args.instances))
