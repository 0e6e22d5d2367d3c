"""What counting rate limits in the database adds to a login and a registration.

Runs the real application in this process on a loopback port (aiohttp's TestServer) and
times, one request at a time, `POST /api/auth/login` (a correct password: the limit's
write, a password check, the session's write) and `POST /api/auth/register`, with
`auth.rate_limit.login` / `register` off (no limiter write) and on (a limit high enough
never to refuse, so every attempt is counted). bcrypt runs at cost 4 by default so
that the password hash does not hide the difference; `--bcrypt-cost 12` shows a real
deployment's figure. Prints a Markdown table of medians and 95th percentiles; the
difference of the medians is what the limiter costs.

    .venv/bin/python bench/bench_rate_limits.py [--requests 300] [--bcrypt-cost 4]
        [--synchronous normal]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from alyx_server.app import create_app
from alyx_server.config import default_settings

SCHEMA = "version: 1\ncollections: {}\n"
PASSWORD = "correct horse battery"


async def measure(
    root: Path, limited: bool, requests: int, cost: int, synchronous: str
) -> dict[str, list[float]]:
    root.mkdir()
    (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    rate = "1000000/minute" if limited else "off"
    settings = default_settings(
        root, "serve",
        overrides={
            "auth.jwt.secret": "b" * 40, "auth.bcrypt_cost": cost, "database.synchronous": synchronous,
            "auth.rate_limit.login": rate, "auth.rate_limit.register": rate, "logging.level": "warning",
        },
    )  # fmt: skip
    server = TestServer(create_app(settings))
    await server.start_server()
    times: dict[str, list[float]] = {"register": [], "login": []}
    try:
        async with aiohttp.ClientSession(str(server.make_url(""))) as session:
            while True:  # start-up migrations first
                async with session.get("/health/ready") as answer:
                    if answer.status == 200:
                        break
                await asyncio.sleep(0.05)
            for i in range(requests):
                body = {"email": f"user{i}@example.com", "password": PASSWORD}
                start = time.perf_counter()
                async with session.post("/api/auth/register", json=body) as answer:
                    assert answer.status == 201, await answer.text()
                times["register"].append(time.perf_counter() - start)
            for i in range(requests):
                body = {"email": f"user{i}@example.com", "password": PASSWORD}
                start = time.perf_counter()
                async with session.post("/api/auth/login", json=body) as answer:
                    assert answer.status == 200, await answer.text()
                times["login"].append(time.perf_counter() - start)
    finally:
        await server.close()
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--bcrypt-cost", type=int, default=4)
    parser.add_argument("--synchronous", default="normal", choices=["normal", "full"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        off = await measure(Path(tmp) / "off", False, args.requests, args.bcrypt_cost, args.synchronous)
        on = await measure(Path(tmp) / "on", True, args.requests, args.bcrypt_cost, args.synchronous)
    print(f"bcrypt cost {args.bcrypt_cost}, synchronous={args.synchronous}, {args.requests} requests each\n")
    print("| request | limit off: median / p95 | limit on: median / p95 | added (median) |")
    print("|---|---|---|---|")
    for what in ("login", "register"):
        a, b = off[what], on[what]
        print(
            f"| {what} | {statistics.median(a) * 1e3:.2f} / {p95(a) * 1e3:.2f} ms "
            f"| {statistics.median(b) * 1e3:.2f} / {p95(b) * 1e3:.2f} ms "
            f"| {(statistics.median(b) - statistics.median(a)) * 1e3:+.2f} ms |"
        )


if __name__ == "__main__":
    asyncio.run(main())
