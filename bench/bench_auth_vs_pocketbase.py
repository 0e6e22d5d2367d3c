"""Login and refresh, Alyx against PocketBase, same machine, same bcrypt cost, same load generator.

    .venv/bin/python bench/bench_auth_vs_pocketbase.py [--duration 10] [--connections 50] [--rounds 1]

Starts PocketBase (from PyPI, as `http_vs_pocketbase.py` does) and `alyx serve`, each on a
loopback port with its data under bench/.work/, and gives each one account per
connection. The bcrypt cost is read from the hash PocketBase stored for those accounts
and given to Alyx (`auth.bcrypt_cost`), so both do the same password work. Alyx's auth
rate limits are switched off (PocketBase has none by default); everything else is
either server's default.

Refresh tokens are single-use in Alyx, so wrk's fixed requests cannot drive refresh.
The load generator here is one asyncio process with one task per connection, used
for both servers: for login each task signs in with its own account in a loop; for
refresh each task signs in once, then refreshes in a loop, always presenting the token
the previous answer gave it (Alyx: `refresh_token` in the body; PocketBase: the auth
token in the Authorization header of `auth-refresh`). A non-2xx answer counts as a
failure, and the figures of a run with failures mean nothing until they are gone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_vs_pocketbase import (
    JWT_SECRET,
    LOOPBACK,
    PB_EMAIL,
    PB_PASSWORD,
    PB_VERSION,
    WORK,
    Server,
    alyx_executable,
    ensure_pocketbase,
    free_port,
    fresh_dir,
    launch_pocketbase,
    spawn,
    wait_ready,
)

__all__ = ["main"]

USER_PASSWORD = "bench-user-password-1"
ALYX_SCHEMA = "version: 1\ncollections: {}\n"


@dataclass
class RunResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int


@dataclass
class AuthTarget:
    """A server and how to sign in and refresh on it."""

    label: str
    server: Server
    emails: list[str]
    login_path: str
    login_body: Callable[[str], dict[str, Any]]
    refresh: Callable[[aiohttp.ClientSession, str, str], Awaitable[tuple[int, str]]]
    session_token: Callable[[dict[str, Any]], str]


# ---------------------------------------------------------------- servers


def start_pocketbase(exe: Path, users: int) -> tuple[AuthTarget, int]:
    """PocketBase with `users` accounts in its default `users` collection; and its bcrypt cost."""
    server, base, data = launch_pocketbase(exe, "pocketbase-auth")
    try:
        emails = asyncio.run(_pocketbase_users(base, users))
    except BaseException:
        server.stop()
        raise
    with closing(sqlite3.connect(data / "data.db")) as conn:
        stored = conn.execute("SELECT password FROM users LIMIT 1").fetchone()[0]
    cost = int(stored.split("$")[2])

    async def refresh(session: aiohttp.ClientSession, base_url: str, token: str) -> tuple[int, str]:
        url = f"{base_url}/api/collections/users/auth-refresh"
        async with session.post(url, headers={"Authorization": token}) as r:
            body = await r.json()
            return r.status, body.get("token", "") if r.status == 200 else ""

    target = AuthTarget(
        "PocketBase", server, emails, "/api/collections/users/auth-with-password",
        lambda email: {"identity": email, "password": USER_PASSWORD}, refresh,
        lambda body: str(body["token"]),
    )  # fmt: skip
    return target, cost


async def _pocketbase_users(base: str, count: int) -> list[str]:
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        auth_url = f"{base}/api/collections/_superusers/auth-with-password"
        async with session.post(auth_url, json={"identity": PB_EMAIL, "password": PB_PASSWORD}) as r:
            headers = {"Authorization": (await r.json())["token"]}
        emails = [f"user{i}@example.com" for i in range(count)]
        for email in emails:
            body = {
                "email": email,
                "password": USER_PASSWORD,
                "passwordConfirm": USER_PASSWORD,
                "verified": True,
            }
            async with session.post(f"{base}/api/collections/users/records", json=body, headers=headers):
                pass
    return emails


def start_alyx(users: int, cost: int) -> AuthTarget:
    """`alyx serve` with `users` registered accounts, bcrypt at `cost`, auth rate limits off."""
    project = fresh_dir(WORK / "alyx-auth")
    port = free_port()
    (project / "alyx.yaml").write_text(
        f"server:\n  port: {port}\nauth:\n  bcrypt_cost: {cost}\n"
        "  rate_limit:\n    login: 'off'\n    register: 'off'\n    reset: 'off'\n"
    )
    (project / "schema.yaml").write_text(ALYX_SCHEMA)
    base = f"http://{LOOPBACK}:{port}"
    server = spawn("Alyx", [str(alyx_executable()), "serve"], project, project / "serve.log", base,
                   ALYX_AUTH_JWT_SECRET=JWT_SECRET)  # fmt: skip
    try:
        asyncio.run(wait_ready(server, "/health/ready"))
        emails = asyncio.run(_alyx_users(base, users))
    except BaseException:
        server.stop()
        raise

    async def refresh(session: aiohttp.ClientSession, base_url: str, token: str) -> tuple[int, str]:
        async with session.post(f"{base_url}/api/auth/refresh", json={"refresh_token": token}) as r:
            body = await r.json()
            return r.status, body["tokens"]["refresh_token"] if r.status == 200 else ""

    return AuthTarget(
        "Alyx", server, emails, "/api/auth/login", lambda email: {"email": email, "password": USER_PASSWORD},
        refresh, lambda body: str(body["tokens"]["refresh_token"]),
    )  # fmt: skip


async def _alyx_users(base: str, count: int) -> list[str]:
    emails = [f"user{i}@example.com" for i in range(count)]
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        for email in emails:
            async with session.post(
                f"{base}/api/auth/register", json={"email": email, "password": USER_PASSWORD}
            ):
                pass
    return emails


# ---------------------------------------------------------------- load generation


async def drive(target: AuthTarget, case: str, seconds: float, warmup: float) -> RunResult:
    """One task per account for `warmup + seconds`; only the last `seconds` are counted."""
    base = target.server.base_url
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    counted_from = start + warmup
    stop_at = counted_from + seconds
    connector = aiohttp.TCPConnector(limit=len(target.emails))

    async def login(session: aiohttp.ClientSession, email: str) -> tuple[int, dict[str, Any]]:
        async with session.post(base + target.login_path, json=target.login_body(email)) as r:
            return r.status, await r.json()

    async def worker(session: aiohttp.ClientSession, email: str) -> None:
        nonlocal failures
        token = ""
        if case == "refresh":
            status, body = await login(session, email)
            if status != 200:
                raise RuntimeError(f"{target.label}: login for {email} answered {status}: {body}")
            token = target.session_token(body)
        while (now := time.perf_counter()) < stop_at:
            if case == "login":
                status, _ = await login(session, email)
            else:
                status, new_token = await target.refresh(session, base, token)
                token = new_token or token
            done = time.perf_counter()
            if now >= counted_from:
                if 200 <= status < 300:
                    latencies.append(done - now)
                else:
                    failures += 1

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session, email) for email in target.emails))
    latencies.sort()
    count = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(count - 1, int(count * p))] * 1000 if count else 0.0

    return RunResult(round(count / seconds, 1), round(pct(0.5), 2), round(pct(0.99), 2), count, failures)


# ---------------------------------------------------------------- report


def machine_line(args: argparse.Namespace, cost: int) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return (
        f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores ({model.group(1) if model else '?'}), "
        f"Python {platform.python_version()}, PocketBase {PB_VERSION}; bcrypt cost {cost} on both; "
        f"{args.connections} connections, {args.duration} s after a {args.warmup} s warm-up, best of "
        f"{args.rounds}; one asyncio load generator on the same cores as the server; loopback"
    )


def table(results: dict[str, dict[str, RunResult]]) -> str:
    header = [
        "case",
        "Alyx req/s",
        "p50 ms",
        "p99 ms",
        "PocketBase req/s",
        "p50 ms",
        "p99 ms",
        "Alyx/PocketBase",
        "target",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    targets = {"login": 0.9, "refresh": 1.0}
    for case, goal in targets.items():
        ours, theirs = results["Alyx"][case], results["PocketBase"][case]
        ratio = ours.requests_per_s / theirs.requests_per_s if theirs.requests_per_s else 0.0
        failures = (
            "" if not (ours.failures or theirs.failures) else f" ({ours.failures}/{theirs.failures} failures)"
        )
        lines.append(
            f"| {case}{failures} | {ours.requests_per_s:,.0f} | {ours.p50_ms} | {ours.p99_ms} | "
            f"{theirs.requests_per_s:,.0f} | {theirs.p50_ms} | {theirs.p99_ms} | {ratio:.2f}x | ≥ {goal}x |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="counted seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds before each run")
    parser.add_argument(
        "--connections", type=int, default=50, help="concurrent connections (one account each)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate the servers this often; keep the best"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exe = ensure_pocketbase()
    with ExitStack() as servers:
        peer, cost = start_pocketbase(exe, args.connections)
        servers.callback(peer.server.stop)
        alyx = start_alyx(args.connections, cost)
        servers.callback(alyx.server.stop)
        print(f"bcrypt cost {cost} (read from PocketBase's stored hash) on both servers", flush=True)
        best: dict[str, dict[str, RunResult]] = {"Alyx": {}, "PocketBase": {}}
        for case in ("login", "refresh"):
            for _ in range(args.rounds):
                for target in (alyx, peer):
                    result = asyncio.run(drive(target, case, args.duration, args.warmup))
                    print(f"{target.label} {case}: {result}", flush=True)
                    kept = best[target.label].get(case)
                    if kept is None or result.requests_per_s > kept.requests_per_s:
                        best[target.label][case] = result
    print()
    print(machine_line(args, cost))
    print()
    print(table(best))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = WORK / f"auth-results-{stamp}.json"
    figures = {label: {case: asdict(r) for case, r in cases.items()} for label, cases in best.items()}
    out.write_text(json.dumps({"machine": machine_line(args, cost), "runs": figures}, indent=2))
    print(f"\nfigures saved to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
