"""Server CPU time per request with asyncio's event loop and with uvloop, side by side.

    .venv/bin/python bench/bench_event_loop.py [--cases view,create,list,refresh]
        [--rounds 4] [--duration 5] [--project bench/.work/alyx-seed]
    .venv/bin/python bench/bench_event_loop.py --callgrind [--requests 3000] [--connections 10]

Needs uvloop in the virtual environment (`.venv/bin/pip install uvloop`; Alyx itself does
not depend on it) and a project seeded by bench_workers_vs_pocketbase.py (its posts, its
`ids.txt` and the accounts `user0@example.com` ... `user49@example.com`).

Four servers run at once, each on its own copy of the project: `alyx serve --workers 2`
and bench/bare_aiohttp.py with 2 processes, each once on asyncio's loop and once on
uvloop. uvloop is made the loop of every process of a server by a `sitecustomize.py`
(written under bench/.work/uvloop-site/) on its PYTHONPATH, which sets uvloop's event
loop policy, so the code under test is the same in both.

Each round runs each case once on every server (the order reversed every other round,
so that a quieter or busier moment does not always favour the same one): view, list and
create through wrk (2 streams of 25 connections, bench/lua as in the workers
comparison, 1 s unmeasured first), refresh through one aiohttp client process (50
accounts signed in first, not counted, then refreshing in a loop). The figure is the
server process tree's utime + stime from /proc divided by the requests completed: on a
machine shared with other work it moves much less than requests per second. For create,
the group-commit groups per write (from `/metrics`, `alyx_db_write_batch_size_count`)
are printed too.

With `--callgrind`, instructions per view instead of CPU time, which other work on the
machine does not move: one process each (`alyx serve --workers 1`, bare_aiohttp.py with
one process) under `valgrind --tool=callgrind --instr-atstart=no` with
PYTHONMALLOC=malloc, 200 unmeasured views, then counting switched on
(`callgrind_control -i on`) for exactly `--requests` views of random ids over
`--connections` keep-alive connections, then off and dumped. Only user-space
instructions are counted (system calls are not), over every thread of the process.

uvloop also calls listen(2) itself on the socket it is given, so a worker's shared
socket gets the accept batch (1) as its kernel backlog (asyncio calls
`SharedListener.listen`, which does nothing). Connections made while the servers start
may wait for a retry of their SYN; the per-request figures are not affected.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_auth_vs_pocketbase import USER_PASSWORD
from bench_workers_vs_pocketbase import TICKS, Target, cpu_ticks, ready, run_wrk_streams, spawn_alyx
from http_vs_pocketbase import JWT_SECRET, LOOPBACK, WORK, alyx_executable, ensure_wrk, free_port, spawn

__all__ = ["main"]

SITE = WORK / "uvloop-site"
SITECUSTOMIZE = "import asyncio\n\nimport uvloop\n\nasyncio.set_event_loop_policy(uvloop.EventLoopPolicy())\n"
ACCOUNTS = 50
STREAMS = 2
CONNECTIONS = 50


def copy_of(seed: Path, name: str) -> Path:
    project = WORK / "event-loop" / name
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(seed, project, ignore=shutil.ignore_patterns("serve-*.log"))
    return project


def loop_env(uv: bool) -> dict[str, str]:
    return {"PYTHONPATH": str(SITE)} if uv else {}


def start(seed: Path, kind: str, uv: bool) -> Target:
    label = f"{kind}, {'uvloop' if uv else 'asyncio'}"
    project = copy_of(seed, f"{kind}-{'uvloop' if uv else 'asyncio'}")
    if kind == "alyx":
        server = spawn_alyx(label, project, ["--workers", "2"], **loop_env(uv))
        cases: tuple[str, ...] = ("view", "list", "create", "refresh")
    else:
        database = next((project / "data").glob("*.db"))
        port = free_port()
        argv = [sys.executable, str(Path(__file__).with_name("bare_aiohttp.py")), "--db", str(database),
                "--port", str(port), "--workers", "2"]  # fmt: skip
        server = spawn(
            label, argv, project, project / "serve.log", f"http://{LOOPBACK}:{port}", **loop_env(uv)
        )
        cases = ("view", "list", "create")
    ready([server], "/health/ready")
    emails = [f"user{i}@example.com" for i in range(ACCOUNTS)]
    return Target(label, [server], kind, project / "ids.txt", cases, emails)


def spent(target: Target, before: dict[int, int]) -> float:
    """CPU seconds the target's processes used since `before`."""
    after = cpu_ticks(target.pids())
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items()) / TICKS


async def refresh_load(target: Target, seconds: float) -> tuple[int, float]:
    """Refreshes completed in `seconds` by one task per account, and the server CPU they took."""
    base = target.bases[0]
    done = 0
    connector = aiohttp.TCPConnector(limit=ACCOUNTS)
    async with aiohttp.ClientSession(connector=connector, raise_for_status=True) as session:

        async def sign_in(email: str) -> str:
            body = {"email": email, "password": USER_PASSWORD}
            async with session.post(base + "/api/auth/login", json=body) as r:
                return str((await r.json())["tokens"]["refresh_token"])

        async def refresh_loop(token: str, stop_at: float) -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                async with session.post(base + "/api/auth/refresh", json={"refresh_token": token}) as r:
                    token = (await r.json())["tokens"]["refresh_token"]
                done += 1

        tokens = await asyncio.gather(*(sign_in(email) for email in target.emails))
        before = cpu_ticks(target.pids())
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(refresh_loop(token, stop_at) for token in tokens))
        return done, spent(target, before)


def write_groups(target: Target) -> float:
    """Group-commit transactions so far, summed over the workers (`/metrics`)."""
    with urllib.request.urlopen(target.bases[0] + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.findall(r"^alyx_db_write_batch_size_count(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    return sum(float(value) for value in found)


def measure(target: Target, case: str, wrk: str, seconds: float) -> tuple[float, int, str]:
    """CPU microseconds per request, requests completed, and a note."""
    if case == "refresh":
        requests, cpu = asyncio.run(refresh_load(target, seconds))
        return cpu / max(requests, 1) * 1e6, requests, ""
    run_wrk_streams(wrk, target, case, STREAMS, CONNECTIONS, 1.0)
    groups = write_groups(target) if case == "create" and target.kind == "alyx" else 0.0
    before = cpu_ticks(target.pids())
    result = run_wrk_streams(wrk, target, case, STREAMS, CONNECTIONS, seconds)
    cpu = spent(target, before)
    note = f"failures {result.failures}" if result.failures else ""
    if case == "create" and target.kind == "alyx":
        note += f"  groups/write {(write_groups(target) - groups) / max(result.requests, 1):.3f}"
    return cpu / max(result.requests, 1) * 1e6, result.requests, note


async def exact_views(base: str, ids: list[str], requests: int, connections: int) -> None:
    """Exactly `requests` views of random ids (seeded) over `connections` connections."""
    rng = random.Random(7)
    left = requests
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, raise_for_status=True) as session:

        async def one_connection() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.get(f"{base}/api/collections/posts/{rng.choice(ids)}") as r:
                    await r.read()

        await asyncio.gather(*(one_connection() for _ in range(connections)))


def instructions_per_view(seed: Path, kind: str, uv: bool, requests: int, connections: int) -> float:
    """User-space instructions per view of one server process under callgrind."""
    name = f"callgrind-{kind}-{'uvloop' if uv else 'asyncio'}"
    project = copy_of(seed, name)
    port = free_port()
    if kind == "alyx":
        command = [str(alyx_executable()), "serve", "-p", str(port), "--workers", "1"]
    else:
        database = next((project / "data").glob("*.db"))
        command = [sys.executable, str(Path(__file__).with_name("bare_aiohttp.py")), "--db", str(database),
                   "--port", str(port)]  # fmt: skip
    out = project / "callgrind.out"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *command]
    env = {"PYTHONMALLOC": "malloc", "ALYX_AUTH_JWT_SECRET": JWT_SECRET, **loop_env(uv)}
    server = spawn(name, argv, project, project / "serve.log", f"http://{LOOPBACK}:{port}", **env)
    try:
        ready([server], "/health/ready")
        ids = (project / "ids.txt").read_text().split()
        asyncio.run(exact_views(server.base_url, ids, 200, connections))
        pid = str(server.process.pid)
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        asyncio.run(exact_views(server.base_url, ids, requests, connections))
        subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    finally:
        server.stop()
    total = 0
    for dump in project.glob("callgrind.out*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
    return total / requests


def callgrind_table(seed: Path, requests: int, connections: int) -> None:
    print(f"instructions per view, {requests:,} views over {connections} connections (callgrind)")
    print("\n| server | asyncio | uvloop | uvloop/asyncio |\n|---|---|---|---|")
    for kind in ("alyx", "bare"):
        plain = instructions_per_view(seed, kind, False, requests, connections)
        fast = instructions_per_view(seed, kind, True, requests, connections)
        print(f"| {kind} | {plain:,.0f} | {fast:,.0f} | {fast / plain:.2f} |", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default="view,create,list,refresh", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=4, help="runs per case and server (4)")
    parser.add_argument("--duration", type=float, default=5, help="measured seconds per run (5)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per view instead")
    parser.add_argument("--requests", type=int, default=3000, help="views counted with --callgrind (3,000)")
    parser.add_argument("--connections", type=int, default=10, help="connections with --callgrind (10)")
    parser.add_argument("--project", type=Path, default=WORK / "alyx-seed", help="the seeded project")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.project / "ids.txt").is_file():
        sys.exit(f"{args.project} has no ids.txt: run bench/bench_workers_vs_pocketbase.py once first")
    done = subprocess.run([sys.executable, "-c", "import uvloop"], check=False)
    if done.returncode != 0:
        sys.exit("uvloop is not installed: .venv/bin/pip install uvloop")
    SITE.mkdir(parents=True, exist_ok=True)
    (SITE / "sitecustomize.py").write_text(SITECUSTOMIZE)
    if args.callgrind:
        callgrind_table(args.project, args.requests, args.connections)
        return 0
    wrk = ensure_wrk()
    targets: list[Target] = []
    figures: dict[tuple[str, str], list[float]] = {}
    try:
        for kind in ("alyx", "bare"):
            for uv in (False, True):
                targets.append(start(args.project, kind, uv))
        print(f"load average {os.getloadavg()[0]:.1f}; CPU µs per request (server process tree)")
        for case in [c for c in args.cases.split(",") if c]:
            for round_number in range(args.rounds):
                order = targets if round_number % 2 == 0 else targets[::-1]
                for target in order:
                    if case not in target.cases:
                        continue
                    us, requests, note = measure(target, case, wrk, args.duration)
                    figures.setdefault((case, target.label), []).append(us)
                    load = os.getloadavg()[0]
                    print(f"  {case:<8} {target.label:<16} {us:7.1f} µs  {requests:>7,} requests"
                          f"  load {load:.1f}  {note}", flush=True)  # fmt: skip
    finally:
        for target in targets:
            target.stop()
    print("\n| case | server | asyncio µs (median) | uvloop µs (median) | uvloop/asyncio |")
    print("|---|---|---|---|---|")
    for case in [c for c in args.cases.split(",") if c]:
        for kind in ("alyx", "bare"):
            plain = figures.get((case, f"{kind}, asyncio"))
            fast = figures.get((case, f"{kind}, uvloop"))
            if plain and fast:
                a, b = statistics.median(plain), statistics.median(fast)
                print(f"| {case} | {kind} | {a:.0f} | {b:.0f} | {b / a:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
