"""Alyx with its default workers, Alyx with one worker and PocketBase, in one run on the same data.

    .venv/bin/python bench/bench_workers_vs_pocketbase.py [--duration 8] [--rounds 1]
        [--workers auto] [--no-bare] [--no-realtime] [--profile]

Set-up (everything under bench/.work/, replaced by the next run):

1. PocketBase 0.40.6 with the `posts` collection and the 10,000 posts of
   http_vs_pocketbase.py, and one account per connection in its `users` collection.
2. One Alyx project, loaded once through `alyx serve` (the same posts through
   `/api/batch`, the same accounts through `/api/auth/register`, bcrypt at the cost read
   from PocketBase's stored hash, auth rate limits off as PocketBase has none), then
   copied, so that both Alyx servers start from the same database file:
   - **Alyx, N workers**: `alyx serve --workers auto` (or `--workers N`). When this
     checkout's `alyx serve` has no `--workers` option, N independent `alyx serve`
     processes on the same project and SQLite file, each on its own port, and the load
     split between their ports;
   - **Alyx, 1 worker**: `alyx serve --workers 1` (or plain `alyx serve`).
3. With `--bare` (the default), a bare aiohttp + sqlite3 + orjson server with N processes
   on a copy of the same database file (bench/bare_aiohttp.py): the floor under any
   Python server here, measured for view, list and create.

Every target gets the same load: N load streams (N = the workers' count), each
`--connections / N` connections, running at once; stream i goes to the i-th port of a
target with several ports, else to its one port. Cases, each alternating the targets
inside a round, best of `--rounds` kept:

- **view**, **list** (20 of 10,000: filter, sort and total), **create**: `wrk -t1` per
  stream with the Lua scripts of http_vs_pocketbase.py; req/s summed over the streams,
  p50 weighted by each stream's requests, p99 the worst stream's;
- **refresh**: one asyncio process per stream (this script run with `--refresh-driver`),
  one account per connection, signing in once and then refreshing in a loop with what the
  previous answer gave (Alyx: the single-use refresh token, a durable write; PocketBase:
  `auth-refresh`, a read and a new JWT); percentiles over every refresh of every stream;
- **realtime**: bench_realtime.py's fan-out (1,000 subscribers of `author = 'rt'`, 100
  matching writes 50 ms apart, latency from the start of the write request to each
  receipt), the subscribers spread over the target's ports and the writes sent to them in
  turn (one port: the kernel spreads the connections over the workers).

Memory of each server is read at rest (after the load) and after every case: the sum of
VmRSS over the server's process tree (supervisor, workers, function workers) and the sum
of PSS from /proc/PID/smaps_rollup, which counts the pages forked workers share once.

With `--profile`, py-spy (`pip install py-spy`) records the one-worker Alyx server during
an extra, unmeasured run of each case, and the script prints where its samples go.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_auth_vs_pocketbase import USER_PASSWORD, _alyx_users, _pocketbase_users
from bench_realtime import fanout
from http_vs_pocketbase import (
    ALYX_SCHEMA,
    JWT_SECRET,
    LOOPBACK,
    LUA,
    RECORDS,
    WORK,
    Server,
    WrkResult,
    alyx_executable,
    count_posts,
    descendants,
    ensure_pocketbase,
    ensure_wrk,
    free_port,
    fresh_dir,
    launch_pocketbase,
    load_alyx,
    load_pocketbase,
    machine_line,
    parse_wrk,
    rss_kib,
    sample_docs,
    spawn,
    wait_ready,
)

__all__ = ["main"]

HTTP_CASES = ("view", "list", "create")
CASE_TITLES = {
    "view": "view one record by id",
    "list": "list 20 of 10,000: filter + sort + total",
    "create": "create one record",
    "refresh": "auth refresh",
    "realtime": "realtime p95, write to receipt (ms)",
}
# Alyx with workers against PocketBase: the targets (throughput ratios at least,
# latency and memory ratios at most).
TARGETS = {"view": 1.5, "list": 2.0, "create": 1.3, "refresh": 1.0, "realtime": 0.5, "memory": 1.0}


# ---------------------------------------------------------------- servers


@dataclass
class Target:
    """One server under test: its processes, ports and routes, and what was measured on it."""

    label: str
    servers: list[Server]
    kind: str  # "alyx", "pocketbase" or "bare"
    ids_file: Path
    cases: tuple[str, ...]
    emails: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def bases(self) -> list[str]:
        return [server.base_url for server in self.servers]

    @property
    def routes(self) -> str:
        return "/api/collections/posts/records" if self.kind == "pocketbase" else "/api/collections/posts"

    @property
    def list_path(self) -> str:
        if self.kind == "pocketbase":
            return f"{self.routes}?filter=(author='u7')&sort=-n&perPage=20"
        return f"{self.routes}?filter=author:eq:u7&sort=-n&limit=20"

    def pids(self) -> list[int]:
        """Every live process of this target: each server and everything it started."""
        found: list[int] = []
        for server in self.servers:
            if server.process.poll() is None:
                found += [server.process.pid, *descendants(server.process.pid)]
        return found

    def note_memory(self, when: str) -> None:
        kib = [(rss_kib(pid), pss_kib(pid)) for pid in self.pids()]
        self.memory[when] = {
            "processes": len(kib),
            "rss_mib": sum(rss for rss, _ in kib) / 1024,
            "pss_mib": sum(pss for _, pss in kib) / 1024,
        }

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def pss_kib(pid: int) -> int:
    """Proportional set size of one process in KiB (shared pages split among their users)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """User + system CPU time of each live process, in clock ticks."""
    found: dict[int, int] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = int(fields[11]) + int(fields[12])
    return found


def busiest(pids: list[int]) -> int:
    """The process that has used the most CPU time: the worker that serves, not its supervisor."""
    ticks = cpu_ticks(pids)
    return max(pids, key=lambda pid: ticks.get(pid, -1))


def workers_option_available() -> bool:
    """True when this checkout's `alyx serve` takes `--workers`."""
    argv = [str(alyx_executable()), "serve", "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return "--workers" in done.stdout


def worker_count(requested: str) -> int:
    """`auto`: the cores this process may use; else the number given."""
    if requested == "auto":
        return len(os.sched_getaffinity(0))
    return max(1, int(requested))


def alyx_config(cost: int) -> str:
    return (
        f"auth:\n  bcrypt_cost: {cost}\n"
        "  rate_limit:\n    login: 'off'\n    register: 'off'\n    reset: 'off'\n"
    )


def spawn_alyx(label: str, project: Path, extra: Sequence[str] = (), **env: str) -> Server:
    port = free_port()
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    argv = [str(alyx_executable()), "serve", "-p", str(port), *extra]
    return spawn(
        label,
        argv,
        project,
        project / f"serve-{slug}.log",
        f"http://{LOOPBACK}:{port}",
        ALYX_AUTH_JWT_SECRET=JWT_SECRET,
        **env,
    )


def ready(servers: list[Server], path: str) -> None:
    try:
        for server in servers:
            asyncio.run(wait_ready(server, path))
    except BaseException:
        for server in servers:
            server.stop()
        raise


def seed_alyx(docs: list[dict[str, Any]], users: int, cost: int) -> tuple[Path, list[str], list[str]]:
    """The loaded Alyx project (posts and accounts), its post ids and account emails; the
    server that loaded it is stopped, so the project can be copied."""
    project = fresh_dir(WORK / "alyx-seed")
    (project / "alyx.yaml").write_text(alyx_config(cost))
    (project / "schema.yaml").write_text(ALYX_SCHEMA)
    server = spawn_alyx("Alyx seed", project)
    ready([server], "/health/ready")
    try:
        ids = asyncio.run(load_alyx(server.base_url, docs))
        total = asyncio.run(count_posts(f"{server.base_url}/api/collections/posts?limit=1", "total"))
        emails = asyncio.run(_alyx_users(server.base_url, users))
    finally:
        server.stop()
    if total < RECORDS or len(ids) < RECORDS:
        raise RuntimeError(f"Alyx: {len(ids)} ids, total {total}, after loading {RECORDS}")
    (project / "ids.txt").write_text("\n".join(ids) + "\n")
    return project, ids, emails


def copy_project(seed: Path, name: str) -> Path:
    project = fresh_dir(WORK / name)
    shutil.rmtree(project)
    shutil.copytree(seed, project, ignore=shutil.ignore_patterns("serve-*.log"))
    return project


def start_alyx_workers(seed: Path, emails: list[str], workers: int, supervised: bool) -> Target:
    project = copy_project(seed, "alyx-workers")
    label = f"Alyx, {workers} workers"
    if supervised:
        servers = [spawn_alyx(label, project, ["--workers", str(workers)])]
    else:
        servers = [spawn_alyx(f"{label} ({i})", project) for i in range(1, workers + 1)]
    ready(servers, "/health/ready")
    return Target(label, servers, "alyx", project / "ids.txt", (*HTTP_CASES, "refresh", "realtime"), emails)


def start_alyx_one(seed: Path, emails: list[str], supervised: bool) -> Target:
    project = copy_project(seed, "alyx-one")
    label = "Alyx, 1 worker"
    server = spawn_alyx(label, project, ["--workers", "1"] if supervised else [])
    ready([server], "/health/ready")
    return Target(label, [server], "alyx", project / "ids.txt", (*HTTP_CASES, "refresh", "realtime"), emails)


def start_pocketbase(exe: Path, docs: list[dict[str, Any]], users: int) -> tuple[Target, int]:
    """PocketBase with the posts and `users` accounts; and the bcrypt cost it stored."""
    server, base, data = launch_pocketbase(exe, "pocketbase-workers")
    try:
        ids = asyncio.run(load_pocketbase(base, docs))
        emails = asyncio.run(_pocketbase_users(base, users))
    except BaseException:
        server.stop()
        raise
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(data / "data.db")) as conn:
        cost = int(conn.execute("SELECT password FROM users LIMIT 1").fetchone()[0].split("$")[2])
    ids_file = data.parent / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    cases = (*HTTP_CASES, "refresh", "realtime")
    return Target("PocketBase", [server], "pocketbase", ids_file, cases, emails), cost


def start_bare(seed: Path, workers: int) -> Target:
    project = copy_project(seed, "bare")
    database = next((project / "data").glob("*.db"))
    port = free_port()
    argv = [sys.executable, str(Path(__file__).with_name("bare_aiohttp.py")), "--db", str(database),
            "--port", str(port), "--workers", str(workers)]  # fmt: skip
    server = spawn("bare", argv, project, project / "serve.log", f"http://{LOOPBACK}:{port}")
    ready([server], "/health/ready")
    return Target(f"bare aiohttp, {workers} processes", [server], "bare", project / "ids.txt", HTTP_CASES)


# ---------------------------------------------------------------- load


@dataclass
class Result:
    """One case on one target, over every stream of the run."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int
    load: float = 0.0
    p95_ms: float = 0.0

    def line(self) -> str:
        if self.p95_ms:
            return (
                f"{self.requests:>9,} delivered  p50 {self.p50_ms:7.2f} ms  p95 {self.p95_ms:7.2f} ms"
                f"  p99 {self.p99_ms:7.2f} ms  {self.requests_per_s:,.0f} msgs/s  load {self.load:.1f}"
            )
        return (
            f"{self.requests_per_s:>9,.0f} req/s  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms"
            f"  failures {self.failures}  load {self.load:.1f}"
        )


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def wrk_argv(wrk: str, target: Target, case: str, base: str, connections: int, seconds: float) -> list[str]:
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s"]
    if case == "view":
        return [*argv, "-s", str(LUA / "view.lua"), base, "--", target.routes + "/", str(target.ids_file)]
    if case == "create":
        return [*argv, "-s", str(LUA / "create.lua"), base + target.routes]
    return [*argv, base + target.list_path]


def run_wrk_streams(wrk: str, target: Target, case: str, streams: int, conns: int, seconds: float) -> Result:
    """`streams` wrk processes at once; their figures combined."""
    bases = target.bases
    procs = [
        subprocess.Popen(
            wrk_argv(wrk, target, case, bases[i % len(bases)], c, seconds),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i, c in enumerate(split(conns, streams))
    ]
    parsed: list[WrkResult] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk against {target.label} exited with {proc.returncode}:\n{out}")
        parsed.append(parse_wrk(out))
    requests = sum(r.requests for r in parsed)
    return Result(
        requests_per_s=sum(r.requests_per_s for r in parsed),
        p50_ms=sum(r.p50_ms * r.requests for r in parsed) / max(requests, 1),
        p99_ms=max(r.p99_ms for r in parsed),
        requests=requests,
        failures=sum(r.failures for r in parsed),
        load=os.getloadavg()[0],
    )


async def refresh_stream(
    kind: str, base: str, emails: list[str], seconds: float, warmup: float
) -> dict[str, Any]:
    """One load process's share of the refresh case: one task per account, every account
    signed in first (bcrypt, not counted), then refreshing in a loop."""
    latencies: list[float] = []
    failures = 0
    login_path = "/api/auth/login" if kind == "alyx" else "/api/collections/users/auth-with-password"

    def token_of(answer: dict[str, Any]) -> str:
        return str(answer["tokens"]["refresh_token"] if kind == "alyx" else answer["token"])

    async def sign_in(session: aiohttp.ClientSession, email: str) -> str:
        body = {"email": email} if kind == "alyx" else {"identity": email}
        async with session.post(base + login_path, json={**body, "password": USER_PASSWORD}) as r:
            answer = await r.json()
            if r.status != 200:
                raise RuntimeError(f"login for {email} answered {r.status}: {answer}")
        return token_of(answer)

    async def refresh_loop(session: aiohttp.ClientSession, token: str, counted_from: float) -> None:
        nonlocal failures
        stop_at = counted_from + seconds
        while (now := time.perf_counter()) < stop_at:
            if kind == "alyx":
                request = session.post(base + "/api/auth/refresh", json={"refresh_token": token})
            else:
                request = session.post(
                    base + "/api/collections/users/auth-refresh", headers={"Authorization": token}
                )
            async with request as r:
                answer = await r.json()
                status = r.status
            if status == 200:
                token = token_of(answer)
            if now >= counted_from:
                if status == 200:
                    latencies.append((time.perf_counter() - now) * 1000)
                else:
                    failures += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(emails))) as session:
        tokens = await asyncio.gather(*(sign_in(session, email) for email in emails))
        counted_from = time.perf_counter() + warmup
        await asyncio.gather(*(refresh_loop(session, token, counted_from) for token in tokens))
    return {"latencies": latencies, "failures": failures}


def run_refresh_streams(target: Target, streams: int, seconds: float, warmup: float) -> Result:
    """`streams` load processes at once, the accounts dealt among them."""
    bases = target.bases
    procs = []
    for i in range(streams):
        spec = {"kind": "alyx" if target.kind == "alyx" else "pocketbase", "base": bases[i % len(bases)],
                "emails": target.emails[i::streams], "seconds": seconds, "warmup": warmup}  # fmt: skip
        argv = [sys.executable, __file__, "--refresh-driver", json.dumps(spec)]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    latencies: list[float] = []
    failures = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + warmup + 300)
        if proc.returncode != 0:
            raise RuntimeError(f"refresh load against {target.label} exited with {proc.returncode}")
        part = json.loads(out)
        latencies += part["latencies"]
        failures += part["failures"]
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else 0.0

    return Result(len(latencies) / seconds, pct(0.5), pct(0.99), len(latencies), failures, os.getloadavg()[0])


def run_realtime(target: Target, args: argparse.Namespace) -> Result:
    ns = argparse.Namespace(clients=args.clients, writes=args.writes, gap_ms=args.gap_ms)
    label = "PocketBase" if target.kind == "pocketbase" else "Alyx"
    rt = asyncio.run(fanout(label, target.bases[0], target.routes, ns, bases=target.bases))
    failures = rt["expected"] - rt["delivered"]
    return Result(
        rt["msgs_per_s"],
        rt["p50_ms"],
        rt["p99_ms"],
        rt["delivered"],
        failures,
        os.getloadavg()[0],
        rt["p95_ms"],
    )


# ---------------------------------------------------------------- profile


class Profiler:
    """py-spy recording one process during an unmeasured run: the samples of the thread that holds
    the GIL (Python work, not waits), as raw collapsed stacks."""

    def __init__(self, pid: int, out: Path) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists() and shutil.which(exe) is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out = out
        argv = [exe, "record", "--pid", str(pid), "--rate", "250", "--gil", "--nonblocking",
                "--format", "raw", "--output", str(out)]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)

    def stop(self) -> Counter[str]:
        self.proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
        self.proc.wait(timeout=60)
        stacks: Counter[str] = Counter()
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            # The refresh run's sign-ins (bcrypt) precede the measured loop: left out.
            if stack and "auth/passwords.py" not in stack:
                stacks[stack] += int(count)
        return stacks


# Where a sample is charged: the innermost frame that matches, searched from the leaf.
BUCKETS = (
    ("SQLite (sqlite3 calls)", re.compile(r"\((sqlite3|_sqlite3)|\bexecute|fetchone|fetchall|executemany")),
    (
        "socket writes",
        re.compile(r"\b(write|writelines|_write_ready|sendmsg|send) \(.*(selector_events|transports)"),
    ),
    ("access log", re.compile(r"alyx_server/logs|logging/")),
    ("metrics", re.compile(r"alyx_server/metrics|prometheus_client")),
    ("JSON encode/decode", re.compile(r"orjson|json/")),
    ("auth (tokens, hashing)", re.compile(r"alyx_server/auth/|jwt/|hashlib|hmac")),
    ("rules", re.compile(r"alyx_server/rules/")),
    ("writer and group commit", re.compile(r"alyx_server/db/writer")),
    ("Alyx database layer", re.compile(r"alyx_server/db/")),
    ("Alyx API handlers and middleware", re.compile(r"alyx_server/")),
    ("aiohttp (parsing, routing, responses)", re.compile(r"aiohttp/")),
    ("event loop (asyncio, selectors)", re.compile(r"asyncio/|selectors")),
)


def profile_summary(stacks: Counter[str]) -> list[tuple[str, float]]:
    """Share of the samples per bucket, charged to the innermost matching frame."""
    totals: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        bucket = "other"
        for frame in reversed(frames):
            hit = next((name for name, pattern in BUCKETS if pattern.search(frame)), None)
            if hit is not None:
                bucket = hit
                break
        totals[bucket] += count
    whole = sum(totals.values()) or 1
    return [(name, count / whole) for name, count in totals.most_common()]


def top_frames(stacks: Counter[str], count: int = 12) -> list[tuple[str, float]]:
    leaves: Counter[str] = Counter()
    for stack, n in stacks.items():
        leaves[stack.rsplit(";", 1)[-1]] += n
    whole = sum(leaves.values()) or 1
    return [(frame, n / whole) for frame, n in leaves.most_common(count)]


# ---------------------------------------------------------------- report


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("nan")


def verdict(case: str, value: float) -> str:
    goal = TARGETS[case]
    lower_better = case in ("realtime", "memory")
    met = value <= goal if lower_better else value >= goal
    return f"{'≤' if lower_better else '≥'} {goal}x {'met' if met else 'MISSED'}"


def report(targets: list[Target], workers: Target, one: Target, peer: Target) -> str:
    labels = [t.label for t in targets]
    header = ["case", *labels, f"{workers.label} / PocketBase", "target", f"{one.label} / PocketBase"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case, title in CASE_TITLES.items():
        if any(case not in t.results for t in (workers, one, peer)):
            continue
        cells = []
        for t in targets:
            r: Result | None = t.results.get(case)
            if r is None:
                cells.append("—")
            elif case == "realtime":
                cells.append(f"{r.p95_ms:,.1f} ms ({r.requests:,} delivered)")
            else:
                fail = f", {r.failures} failed" if r.failures else ""
                cells.append(f"{r.requests_per_s:,.0f}/s (p50 {r.p50_ms:.1f}, p99 {r.p99_ms:.1f} ms{fail})")
        if case == "realtime":
            w, o, p = (t.results[case].p95_ms for t in (workers, one, peer))
        else:
            w, o, p = (t.results[case].requests_per_s for t in (workers, one, peer))
        mine = ratio(w, p)
        lines.append(
            f"| {title} | "
            + " | ".join(cells)
            + f" | {mine:.2f}x | {verdict(case, mine)} | {ratio(o, p):.2f}x |"
        )
    for when in ("at rest", "after the run"):
        for key, name in (("rss_mib", "RSS"), ("pss_mib", "PSS")):
            cells = []
            for t in targets:
                m = t.memory.get(when)
                cells.append(f"{m[key]:.0f} MiB ({m['processes']:.0f} proc.)" if m else "—")
            w, o, p = (t.memory[when][key] for t in (workers, one, peer))
            mine = ratio(w, p)
            goal = verdict("memory", mine) if when == "after the run" else ""
            lines.append(
                f"| {name} {when} | " + " | ".join(cells) + f" | {mine:.2f}x | {goal} | {ratio(o, p):.2f}x |"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8, help="measured seconds per run (8)")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each run (2)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per case and target, best kept (1)")
    parser.add_argument("--connections", type=int, default=50, help="connections over all streams (50)")
    parser.add_argument("--workers", default="auto", help="Alyx's workers: auto (the usable cores) or N")
    parser.add_argument("--clients", type=int, default=1000, help="realtime subscribers (1,000)")
    parser.add_argument("--writes", type=int, default=100, help="realtime writes (100)")
    parser.add_argument("--gap-ms", type=int, default=50, help="between realtime writes (50)")
    parser.add_argument("--cases", default="view,list,create,refresh,realtime", help="comma-separated")
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare aiohttp server")
    parser.add_argument("--profile", action="store_true", help="py-spy the one-worker Alyx per case")
    parser.add_argument("--refresh-driver", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(case: str, target: Target, wrk: str, streams: int, args: argparse.Namespace) -> Result:
    if case in HTTP_CASES:
        if args.warmup > 0:
            run_wrk_streams(wrk, target, case, streams, args.connections, args.warmup)
        return run_wrk_streams(wrk, target, case, streams, args.connections, args.duration)
    if case == "refresh":
        return run_refresh_streams(target, streams, args.duration, args.warmup)
    return run_realtime(target, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.refresh_driver:
        spec = json.loads(args.refresh_driver)
        figures = asyncio.run(
            refresh_stream(spec["kind"], spec["base"], spec["emails"], spec["seconds"], spec["warmup"])
        )
        print(json.dumps(figures))
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    workers = worker_count(args.workers)
    supervised = workers_option_available()
    cases = [c for c in args.cases.split(",") if c]
    wrk, pocketbase = ensure_wrk(), ensure_pocketbase()
    docs = sample_docs()
    profiles: dict[str, Counter[str]] = {}
    with ExitStack() as running:
        peer, cost = start_pocketbase(pocketbase, docs, args.connections)
        running.callback(peer.stop)
        seed, _, emails = seed_alyx(docs, args.connections, cost)
        many = start_alyx_workers(seed, emails, workers, supervised)
        running.callback(many.stop)
        one = start_alyx_one(seed, emails, supervised)
        running.callback(one.stop)
        targets = [many, one, peer]
        if args.bare:
            bare = start_bare(seed, workers)
            running.callback(bare.stop)
            targets.append(bare)
        how = "alyx serve --workers" if supervised else "independent `alyx serve` processes, one port each"
        print(f"Alyx workers: {workers} ({how}); bcrypt cost {cost}; load average {os.getloadavg()[0]:.2f}")
        for t in targets:
            t.note_memory("at rest")
        for case in cases:
            for _ in range(args.rounds):
                for t in targets:
                    if case not in t.cases:
                        continue
                    before = cpu_ticks(t.pids())
                    result = measure(case, t, wrk, workers, args)
                    spent = cpu_ticks(t.pids())
                    split_cpu = " ".join(
                        f"{(spent[pid] - before.get(pid, 0)) / TICKS:.1f}" for pid in sorted(spent)
                    )
                    print(
                        f"  {t.label:<30} {case:<8} {result.line()}  CPU s by process {split_cpu}", flush=True
                    )
                    best = t.results.get(case)
                    better = (
                        best is None
                        or (case == "realtime" and result.p95_ms < best.p95_ms)
                        or (case != "realtime" and result.requests_per_s > best.requests_per_s)
                    )
                    if better:
                        t.results[case] = result
            if args.profile and case in one.cases:
                profiler = Profiler(busiest(one.pids()), WORK / f"profile-{case}.txt")
                try:
                    measure(case, one, wrk, workers, args)
                finally:
                    profiles[case] = profiler.stop()
        for t in targets:
            t.note_memory("after the run")
    print(f"\n{machine_line_for(args, workers, supervised)}\n")
    print(report(targets, many, one, peer))
    if args.bare:
        print(bare_table(bare, many, peer))
    for case, stacks in profiles.items():
        print(f"\nprofile of {one.label}, {case} ({sum(stacks.values())} samples):")
        for name, share in profile_summary(stacks):
            print(f"  {share:6.1%}  {name}")
        print("  leaf frames:")
        for frame, share in top_frames(stacks):
            print(f"  {share:6.1%}  {frame}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = WORK / f"workers-results-{stamp}.json"
    saved = {
        t.label: {"results": {c: asdict(r) for c, r in t.results.items()}, "memory": t.memory}
        for t in targets
    }
    out.write_text(
        json.dumps({"machine": machine_line_for(args, workers, supervised), "targets": saved}, indent=2)
    )
    print(f"\nfigures saved to {out}")
    return 0


def bare_table(bare: Target, many: Target, peer: Target) -> str:
    lines = [
        "",
        f"| case | {bare.label} | {many.label} | PocketBase | Alyx / bare | bare / PocketBase |",
        "|---|---|---|---|---|---|",
    ]
    for case in HTTP_CASES:
        if case not in bare.results:
            continue
        b, a, p = (t.results[case].requests_per_s for t in (bare, many, peer))
        lines.append(
            f"| {case} | {b:,.0f}/s | {a:,.0f}/s | {p:,.0f}/s | {ratio(a, b):.2f}x | {ratio(b, p):.2f}x |"
        )
    return "\n".join(lines)


def machine_line_for(args: argparse.Namespace, workers: int, supervised: bool) -> str:
    ns = argparse.Namespace(
        threads=1,
        connections=args.connections,
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
    )
    base = machine_line(ns).split("; wrk")[0]
    how = "alyx serve --workers" if supervised else "independent processes, one port each"
    return (
        f"{base}; Alyx {workers} workers ({how}); {workers} load streams of "
        f"{args.connections // workers} connections each against every server, {args.duration:g} s "
        f"after {args.warmup:g} s warm-up, best of {args.rounds}; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
