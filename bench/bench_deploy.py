"""`alyx deploy` of the blog project under a steady load: how long, and what the load sees.

    python bench/bench_deploy.py [--rounds 5] [--clients 4] [--warmup 3] [--workers auto]
                                 [--server-log FILE] [--samples FILE]

Sets up what a user would: a production server from `alyx init --server` run by
`alyx serve` (`--workers`, default auto: one worker per core), and the developer's
`alyx init -t blog` project deployed to it once (`alyx deploy --yes`). Then `--clients`
threads keep a steady load on the server, each in a loop: list the published posts,
create a post, publish it through the `publish` function. Every request's latency and
answer is recorded with its start time.

After `--warmup` seconds of warm-up (not counted) and `--warmup` more seconds of load
(the "before" window), each of `--rounds` deploys changes
functions/publish.mjs and adds a nullable field to posts, builds the bundle
(`build_bundle`, as the CLI does) and sends it: `POST /api/admin/deploy/prepare`, then
`POST /api/admin/deploy/execute`, timed from the first byte of prepare to execute's
answer. Between deploys the load runs on for as long as the last deploy took.

Prints one Markdown table: prepare + execute time per deploy (median and max), failed
requests during the deploys and overall (any exception or any status other than the one
a quiet server answers), the load's p50 and p99 latency in the "before" window and
during the deploys, with their ratio, and how many function executors (Node processes)
the server started per deploy: each costs tens of milliseconds of CPU, and unlike the
latency the count hardly depends on what else the machine runs. With them, from the
server's log ("a worker started in N ms (M ms of CPU)"), the CPU one start costs (median)
and the CPU of the starts that ended inside a deploy's window, per deploy: the work a
deploy adds on the cores the load runs on, which a busy machine changes far less than
the latency. Targets (issue 16): deploy < 2 s, 0 failed requests, p99 during at most 2x
before.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from alyx_server.deploy import build_bundle

DEADLINE = 60.0
PASSWORD = "correct horse battery staple"
APP_CONFIG = """\
auth:
  allow_registration: true
  rate_limit: { register: "off", login: "off" }
functions:
  pool: { min_warm: 1 }
"""


@dataclass
class Sample:
    start: float
    ms: float
    ok: bool
    what: str = ""


@dataclass
class Load:
    base: str
    stop: threading.Event = field(default_factory=threading.Event)
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, session: requests.Session, method: str, path: str, status: int, body: Any = None) -> Any:
        started = time.perf_counter()
        try:
            response = session.request(method, self.base + path, json=body, timeout=DEADLINE)
            ok = response.status_code == status
            answer = response.json() if ok else None
            reason = "" if ok else f"{method} {path}: {response.status_code} {response.text[:200]}"
        except requests.RequestException as e:
            ok, answer, reason = False, None, f"{method} {path}: {type(e).__name__}"
        with self.lock:
            self.samples.append(
                Sample(started, (time.perf_counter() - started) * 1000, ok, f"{method} {path[:24]}")
            )
            if reason:
                self.errors.append(reason)
        return answer


class ExecutorWatch:
    """Notes when each executor process under the server appears (polling /proc)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.first_seen: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        checked: set[int] = set()
        while not self.stop.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or int(entry) in checked:
                    continue
                pid = int(entry)
                checked.add(pid)
                if self._is_executor(pid):
                    self.first_seen[pid] = time.perf_counter()
            time.sleep(0.01)

    def _is_executor(self, pid: int) -> bool:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if Path(argv[0].decode(errors="replace")).name != "node" or not any(
            a.endswith(b"executor.mjs") for a in argv
        ):
            return False
        for _ in range(8):  # bubblewrap's two processes, the worker, the supervisor
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return False
            pid = int(stat.rsplit(")", 1)[1].split()[1])
            if pid == self.server_pid:
                return True
        return False


def client(load: Load, index: int) -> None:
    session = requests.Session()
    account = {"email": f"load{index}@example.com", "password": PASSWORD}
    signed = session.post(f"{load.base}/api/auth/register", json=account, timeout=DEADLINE).json()
    session.headers["Authorization"] = f"Bearer {signed['tokens']['access_token']}"
    user_id = signed["user"]["id"]
    while not load.stop.is_set():
        load.send(session, "GET", "/api/collections/posts?limit=20", 200)
        post = {"title": "t", "slug": f"p-{uuid.uuid4().hex}", "author_id": user_id}
        created = load.send(session, "POST", "/api/collections/posts", 201, post)
        if created is not None:
            load.send(session, "POST", "/api/functions/publish", 200, {"input": {"post_id": created["id"]}})


def alyx(cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alyx_cli", *args], cwd=cwd, input=stdin, env=env,
        capture_output=True, text=True, timeout=DEADLINE, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"alyx {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit("alyx serve exited")
        try:
            if requests.get(f"{base}/health/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit("alyx serve did not get ready")


def deploy_once(base: str, token: str, project: Path, round_: int, change: str) -> tuple[float, float]:
    """Change the function and add a field, then prepare + execute; (start, end) perf_counter."""
    if change in ("both", "function"):
        source = project / "functions" / "publish.mjs"
        text = source.read_text(encoding="utf-8")
        source.write_text(text + f"// round {round_}\n", encoding="utf-8")
    if change in ("both", "schema"):
        schema = project / "schema.yaml"
        anchor = "      tags:       { type: json, nullable: true }\n"
        text = schema.read_text(encoding="utf-8")
        schema.write_text(
            text.replace(anchor, anchor + f"      f_{round_}: {{ type: int, nullable: true }}\n")
        )
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    bundle = build_bundle(project)  # on the developer's machine: not part of the window
    started = time.perf_counter()
    headers = {"Content-Type": "application/gzip", "X-Bundle-SHA256": bundle.sha256}
    plan = session.post(
        f"{base}/api/admin/deploy/prepare", data=bundle.data, headers=headers, timeout=DEADLINE
    )
    if plan.status_code != 200:
        raise SystemExit(f"prepare: {plan.status_code} {plan.text}")
    body = {"plan_id": plan.json()["plan_id"], "bundle_sha256": bundle.sha256}
    done = session.post(f"{base}/api/admin/deploy/execute", json=body, timeout=DEADLINE)
    if done.status_code != 200:
        raise SystemExit(f"execute: {done.status_code} {done.text}")
    return started, time.perf_counter()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", default="auto", help="the server's worker processes (server.workers)")
    parser.add_argument(
        "--change", choices=("both", "function", "schema"), default="both",
        help="what each deploy changes (default: the function and a new field)",
    )  # fmt: skip
    parser.add_argument(
        "--server-log", type=Path, default=None,
        help="write the server's output (its log: each deploy's steps and their times) to this file",
    )  # fmt: skip
    parser.add_argument(
        "--samples", type=Path, default=None,
        help="write every request (wall-clock start, ms, route, ok) and the deploy windows as JSON",
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        alyx(root, "init", "app", "-t", "blog")
        port = _free_port()
        lines = alyx(
            root, "init", "--server", "server", "--admin", "ada@example.com", "--password-stdin",
            "--port", str(port), stdin=PASSWORD + "\n",
        ).splitlines()  # fmt: skip
        token = lines[1].removeprefix("ALYX_DEPLOY_TOKEN=")
        project = root / "app"
        (project / "alyx.yaml").write_text(APP_CONFIG, encoding="utf-8")
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALYX_")}
        server_log = args.server_log or root / "server.log"
        output = server_log.open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "alyx_cli", "serve", "-p", str(port), "--workers", args.workers],
            cwd=root / "server",
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_ready(base, server)
            watch = ExecutorWatch(server.pid)
            watch.thread.start()
            alyx(project, "deploy", "--yes", env={**env, "ALYX_DEPLOY_URL": base, "ALYX_DEPLOY_TOKEN": token})
            load = Load(base)
            threads = [
                threading.Thread(target=client, args=(load, i), daemon=True) for i in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            time.sleep(args.warmup)  # warm-up: the load settles; its samples are not counted
            before_start = time.perf_counter()
            time.sleep(args.warmup)
            before = (before_start, time.perf_counter())
            windows: list[tuple[float, float]] = []
            for i in range(args.rounds):
                windows.append(deploy_once(base, token, project, i, args.change))
                time.sleep(windows[-1][1] - windows[-1][0])
            load.stop.set()
            for thread in threads:
                thread.join(DEADLINE)
            watch.stop.set()
            watch.thread.join(DEADLINE)
        finally:
            server.terminate()
            server.wait(DEADLINE)
            output.close()
        offset = time.time() - time.perf_counter()  # perf_counter to the wall clock (the server's log)
        worker_starts = [(at - offset, cpu) for at, cpu in read_worker_starts(server_log)]
    report(load, before, windows, args, sorted(watch.first_seen.values()), worker_starts)
    if args.samples is not None:
        dump = {
            "before": [t + offset for t in before],
            "windows": [[t + offset for t in w] for w in windows],
            "samples": [[s.start + offset, round(s.ms, 2), s.what, s.ok] for s in load.samples],
        }
        args.samples.write_text(json.dumps(dump), encoding="utf-8")


def read_worker_starts(log: Path) -> list[tuple[float, float]]:
    """(wall-clock time, ms of CPU) of each function worker start the server logged."""
    found: list[tuple[float, float]] = []
    with log.open("rb") as lines:
        for raw in lines:
            if b"a worker started in" not in raw:
                continue
            entry = json.loads(raw)
            match = re.search(r"\((\d+) ms of CPU\)", entry["message"])
            if match:
                at = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
                found.append((at, float(match[1])))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(
    load: Load,
    before: tuple[float, float],
    windows: list[tuple[float, float]],
    args: Any,
    starts: list[float],
    worker_starts: list[tuple[float, float]],
) -> None:
    def inside(sample: Sample, window: tuple[float, float]) -> bool:
        return window[0] <= sample.start < window[1]

    quiet = [s for s in load.samples if inside(s, before)]
    during = [s for s in load.samples if any(inside(s, w) for w in windows)]
    deploy_ms = [(end - start) * 1000 for start, end in windows]
    p99_before, p99_during = percentile([s.ms for s in quiet], 0.99), percentile([s.ms for s in during], 0.99)
    failed_during = sum(not s.ok for s in during)
    failed = sum(not s.ok for s in load.samples)
    print(f"{args.rounds} deploys changing {args.change}, {args.clients} clients, ", end="")
    print(f"workers {args.workers}, ", end="")
    print(f"{len(load.samples)} requests in all")
    print("| measure | value | target |")
    print("|---|---:|---|")
    print(f"| prepare + execute, median | {statistics.median(deploy_ms):.0f} ms | < 2 s |")
    print(f"| prepare + execute, max | {max(deploy_ms):.0f} ms | < 2 s |")
    print(f"| failed requests during the deploys ({len(during)} sent) | {failed_during} | 0 |")
    print(f"| failed requests in the whole run | {failed} | 0 |")
    print(f"| p50 latency before / during | {percentile([s.ms for s in quiet], 0.5):.1f} / "
          f"{percentile([s.ms for s in during], 0.5):.1f} ms | |")  # fmt: skip
    print(f"| p99 latency before / during ({len(quiet)} / {len(during)} requests) | "
          f"{p99_before:.1f} / {p99_during:.1f} ms | |")  # fmt: skip
    print(f"| p99 during ÷ p99 before | {p99_during / p99_before:.2f}x | ≤ 2x |")
    for what in sorted({s.what for s in load.samples}):
        q = [s.ms for s in quiet if s.what == what]
        d = [s.ms for s in during if s.what == what]
        print(f"| {what} p99 before / during | {percentile(q, 0.99):.1f} / {percentile(d, 0.99):.1f} ms | |")
    # From the first deploy on: a pool may grow after a deploy's window, before the next.
    later = sum(t >= windows[0][0] for t in starts)
    in_window = sum(any(start <= t < end for start, end in windows) for t in starts)
    print(f"| executors started per deploy: in its window / in all | {in_window / len(windows):.1f} / "
          f"{later / len(windows):.1f} | |")  # fmt: skip
    cpu = [ms for _, ms in worker_starts]
    cpu_in = sum(ms for at, ms in worker_starts if any(start <= at < end for start, end in windows))
    if cpu:
        print(f"| CPU of one executor start, median (of {len(cpu)}) | {statistics.median(cpu):.0f} ms | |")
        per_deploy = cpu_in / len(windows)
        print(f"| CPU of executor starts in a deploy's window, per deploy | {per_deploy:.0f} ms | |")
    for error in load.errors[:10]:
        print(f"failed: {error}")


if __name__ == "__main__":
    main()
