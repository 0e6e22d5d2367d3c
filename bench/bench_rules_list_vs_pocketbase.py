"""A list under an owner read rule, Alyx against PocketBase: 100,000 docs, one signed-in owner.

    .venv/bin/python bench/bench_rules_list_vs_pocketbase.py [--duration 10] [--connections 10]
        [--rounds 3] [--records 100000] [--owners 100]

Both servers hold the same `posts` (title, author, n, a creation timestamp), indexed on
the author, and guard reads with the same rule:

- Alyx: `read: "auth != null && doc.author_id == auth.id"`;
- PocketBase: `listRule` and `viewRule` `@request.auth.id != "" && author = @request.auth.id`
  on a text field holding user ids.

One account is registered on each server and owns every `--owners`-th post (1,000 of
100,000 by default); the other posts belong to ids of accounts that do not sign in. The
posts are loaded before the measurement: Alyx through `alyx db seed` on a JSON file
(the server stopped), PocketBase through its batch API as a superuser, 100 per request.
Then wrk (`-t2 -c10` by default) asks each server, alternately, for the owner's first
page of 20 with the total, in each server's default order, with the owner's token in the
Authorization header: Alyx `GET /api/collections/posts?limit=20`, PocketBase
`GET /api/collections/posts/records?perPage=20`. A second case skips the total (Alyx
`total=false`, PocketBase `skipTotal=1`). Before measuring, each answer is checked: 20
docs, all the owner's, and the owner's total; an anonymous caller sees none.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import string
import subprocess
import sys
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
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
    WrkResult,
    alyx_executable,
    ensure_pocketbase,
    ensure_wrk,
    free_port,
    fresh_dir,
    insert_all,
    launch_pocketbase,
    run_wrk,
    spawn,
    wait_ready,
)

__all__ = ["main"]

USER_EMAIL = "owner@example.com"
USER_PASSWORD = "owner-password-1234"
READ_RULE = "auth != null && doc.author_id == auth.id"
PB_RULE = '@request.auth.id != "" && author = @request.auth.id'
PAGE = 20

ALYX_SCHEMA = f"""\
version: 1
collections:
  posts:
    fields:
      id:         {{ type: uuid, primary: true, default: auto }}
      title:      {{ type: string }}
      author_id:  {{ type: uuid, index: true }}
      n:          {{ type: int }}
      created_at: {{ type: timestamp, default: now }}
    rules:
      create: "{READ_RULE}"
      read:   "{READ_RULE}"
      update: "{READ_RULE}"
      delete: "{READ_RULE}"
"""

PB_COLLECTION: dict[str, Any] = {
    "name": "posts",
    "type": "base",
    "listRule": PB_RULE,
    "viewRule": PB_RULE,
    "fields": [
        {"name": "title", "type": "text"},
        {"name": "author", "type": "text"},
        {"name": "n", "type": "number"},
        {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
    ],
    "indexes": ["CREATE INDEX idx_posts_author ON posts (author)"],
}

CASES = {
    "total": "list 20 of the owner's, with total",
    "no_total": "list 20 of the owner's, total skipped",
}


@dataclass
class RuleTarget:
    """A loaded server, the owner's token and the list URL of each case."""

    label: str
    server: Server
    token_header: str
    urls: dict[str, str]


# ---------------------------------------------------------------- data


def owners_for(owner_id: str, others: list[str], records: int, every: int) -> list[str]:
    """The author of each post: the owner for every `every`-th, the other ids in turn otherwise."""
    return [owner_id if i % every == 0 else others[i % len(others)] for i in range(records)]


def pocketbase_id() -> str:
    """A random id in PocketBase's form: 15 characters of [a-z0-9]."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(15))


async def check_answers(target: RuleTarget, docs_key: str, author_key: str, total_key: str,
                        owner_id: str, expected_total: int) -> None:  # fmt: skip
    """The owner's page holds 20 of their docs and their total; an anonymous caller gets none."""
    async with aiohttp.ClientSession() as session:
        url = target.urls["total"]
        async with session.get(url, headers={"Authorization": target.token_header}) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{target.label}: {url} answered {r.status}: {body}")
        authors = {doc[author_key] for doc in body[docs_key]}
        if len(body[docs_key]) != PAGE or authors != {owner_id} or body[total_key] != expected_total:
            raise RuntimeError(f"{target.label}: unexpected page {authors}, total {body[total_key]}")
        async with session.get(url) as r:
            anonymous = await r.json()
        if r.status == 200 and anonymous.get(docs_key):
            raise RuntimeError(f"{target.label}: an anonymous caller read {len(anonymous[docs_key])} docs")
    print(f"{target.label}: the owner sees {PAGE} of {expected_total}; an anonymous caller none", flush=True)


# ---------------------------------------------------------------- PocketBase


async def _pocketbase_load(base: str, args: argparse.Namespace) -> tuple[str, str]:
    """Collection, owner account, posts; the owner's id and token."""
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        auth_url = f"{base}/api/collections/_superusers/auth-with-password"
        async with session.post(auth_url, json={"identity": PB_EMAIL, "password": PB_PASSWORD}) as r:
            admin = {"Authorization": (await r.json())["token"]}
        batch = {"enabled": True, "maxRequests": 100, "timeout": 60, "maxBodySize": 0}
        async with session.patch(f"{base}/api/settings", json={"batch": batch}, headers=admin):
            pass
        async with session.post(f"{base}/api/collections", json=PB_COLLECTION, headers=admin):
            pass
        account = {"email": USER_EMAIL, "password": USER_PASSWORD, "passwordConfirm": USER_PASSWORD}
        async with session.post(f"{base}/api/collections/users/records", json=account, headers=admin) as r:
            owner_id = str((await r.json())["id"])
        login = {"identity": USER_EMAIL, "password": USER_PASSWORD}
        async with session.post(f"{base}/api/collections/users/auth-with-password", json=login) as r:
            token = str((await r.json())["token"])
    others = [pocketbase_id() for _ in range(args.owners - 1)]
    authors = owners_for(owner_id, others, args.records, args.owners)
    docs = [{"title": f"Post number {i}", "author": a, "n": i} for i, a in enumerate(authors)]
    async with aiohttp.ClientSession(headers=admin) as session:

        def body(chunk: list[dict[str, Any]]) -> Any:
            url = "/api/collections/posts/records"
            return {"requests": [{"method": "POST", "url": url, "body": doc} for doc in chunk]}

        await insert_all(session, f"{base}/api/batch", body, docs)
    return owner_id, token


def start_pocketbase(exe: Path, args: argparse.Namespace) -> tuple[RuleTarget, str]:
    """A fresh PocketBase with the ruled collection, the owner and the posts; and the owner's id."""
    server, base, _data = launch_pocketbase(exe, "pocketbase-rules")
    try:
        owner_id, token = asyncio.run(_pocketbase_load(base, args))
    except BaseException:
        server.stop()
        raise
    route = f"{base}/api/collections/posts/records?perPage={PAGE}"
    urls = {"total": route, "no_total": route + "&skipTotal=1"}
    return RuleTarget("PocketBase", server, token, urls), owner_id


# ---------------------------------------------------------------- Alyx


def _alyx_server(project: Path, port: int, log_name: str) -> Server:
    base = f"http://{LOOPBACK}:{port}"
    server = spawn("Alyx", [str(alyx_executable()), "serve"], project, project / log_name, base,
                   ALYX_AUTH_JWT_SECRET=JWT_SECRET)  # fmt: skip
    try:
        asyncio.run(wait_ready(server, "/health/ready"))
    except BaseException:
        server.stop()
        raise
    return server


async def _alyx_register(base: str) -> tuple[str, str]:
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        account = {"email": USER_EMAIL, "password": USER_PASSWORD}
        async with session.post(f"{base}/api/auth/register", json=account) as r:
            body = await r.json()
    return str(body["user"]["id"]), str(body["tokens"]["access_token"])


def start_alyx(args: argparse.Namespace) -> tuple[RuleTarget, str]:
    """`alyx serve` with the ruled collection: the owner registered, the server stopped, the
    posts seeded with `alyx db seed`, the server started again; and the owner's id."""
    project = fresh_dir(WORK / "alyx-rules")
    port = free_port()
    (project / "alyx.yaml").write_text(f"server:\n  port: {port}\nauth:\n  jwt:\n    access_ttl: 2h\n")
    (project / "schema.yaml").write_text(ALYX_SCHEMA)
    server = _alyx_server(project, port, "serve-register.log")
    try:
        owner_id, token = asyncio.run(_alyx_register(server.base_url))
    finally:
        server.stop()
    others = [str(uuid.uuid4()) for _ in range(args.owners - 1)]
    authors = owners_for(owner_id, others, args.records, args.owners)
    seed = project / "seed.json"
    seed.write_text(json.dumps({"posts": [
        {"title": f"Post number {i}", "author_id": a, "n": i} for i, a in enumerate(authors)
    ]}))  # fmt: skip
    seeded = subprocess.run([str(alyx_executable()), "db", "seed", str(seed)], cwd=project,
                            capture_output=True, text=True, check=False)  # fmt: skip
    if seeded.returncode != 0:
        raise RuntimeError(f"alyx db seed failed:\n{seeded.stdout}{seeded.stderr}")
    print(f"Alyx: {seeded.stdout.strip()}", flush=True)
    server = _alyx_server(project, port, "serve.log")
    route = f"{server.base_url}/api/collections/posts?limit={PAGE}"
    urls = {"total": route, "no_total": route + "&total=false"}
    return RuleTarget("Alyx", server, f"Bearer {token}", urls), owner_id


# ---------------------------------------------------------------- measurement and report


def wrk_argv(wrk: str, target: RuleTarget, case: str, seconds: int, args: argparse.Namespace) -> list[str]:
    return [
        wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency",
        "--timeout", "10s", "-H", f"Authorization: {target.token_header}", target.urls[case],
    ]  # fmt: skip


def measure(wrk: str, targets: Sequence[RuleTarget], args: argparse.Namespace) -> dict[str, Any]:
    """Each case on each server, alternating; the best of `--rounds` kept, with its load average."""
    best: dict[str, dict[str, tuple[WrkResult, float]]] = {t.label: {} for t in targets}
    for case in CASES:
        for _ in range(args.rounds):
            for target in targets:
                if args.warmup > 0:
                    run_wrk(wrk_argv(wrk, target, case, args.warmup, args), args.warmup)
                result = run_wrk(wrk_argv(wrk, target, case, args.duration, args), args.duration)
                load = os.getloadavg()[0]
                print(
                    f"  {target.label:<11} {case:<9}{result.requests_per_s:>9,.0f} req/s"
                    f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    f"  failures {result.failures}  load {load:.2f}",
                    flush=True,
                )
                kept = best[target.label].get(case)
                if kept is None or result.requests_per_s > kept[0].requests_per_s:
                    best[target.label][case] = (result, load)
    return best


def table(best: dict[str, Any]) -> str:
    header = ["case", "Alyx req/s", "p50", "p99", "PocketBase req/s", "p50", "p99",
              "Alyx/PocketBase", "target", "load (Alyx / PB)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case, title in CASES.items():
        (ours, our_load), (theirs, their_load) = best["Alyx"][case], best["PocketBase"][case]
        ratio = ours.requests_per_s / theirs.requests_per_s if theirs.requests_per_s else 0.0
        failed = f" ({ours.failures}/{theirs.failures} failures)" if ours.failures or theirs.failures else ""
        lines.append(
            f"| {title}{failed} | {ours.requests_per_s:,.0f} | {ours.p50_ms:.2f} ms | {ours.p99_ms:.2f} ms"
            f" | {theirs.requests_per_s:,.0f} | {theirs.p50_ms:.2f} ms | {theirs.p99_ms:.2f} ms"
            f" | {ratio:.2f}x | ≥ 1.0x {'met' if ratio >= 1.0 else 'MISSED'}"
            f" | {our_load:.2f} / {their_load:.2f} |"
        )
    return "\n".join(lines)


def machine_line(args: argparse.Namespace) -> str:
    return (
        f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PocketBase {PB_VERSION}; {args.records:,} posts, "
        f"the owner holding {len(range(0, args.records, args.owners)):,}; "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s after a {args.warmup} s warm-up, "
        f"best of {args.rounds}; on the same cores as the server; loopback"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    parser.add_argument("--connections", type=int, default=10, help="concurrent connections (10)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each run (2)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per case and server, best kept (3)")
    parser.add_argument("--records", type=int, default=100_000, help="posts loaded (100000)")
    parser.add_argument("--owners", type=int, default=100, help="the owner holds every N-th post (100)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start and load both servers, check what each answers, measure, report, stop them."""
    args = parse_args(argv)
    wrk, pocketbase = ensure_wrk(), ensure_pocketbase()
    expected = len(range(0, args.records, args.owners))
    with ExitStack() as servers:
        alyx, alyx_owner = start_alyx(args)
        servers.callback(alyx.server.stop)
        peer, peer_owner = start_pocketbase(pocketbase, args)
        servers.callback(peer.server.stop)
        asyncio.run(check_answers(alyx, "docs", "author_id", "total", alyx_owner, expected))
        asyncio.run(check_answers(peer, "items", "author", "totalItems", peer_owner, expected))
        print(f"load average before measuring: {os.getloadavg()[0]:.2f}", flush=True)
        best = measure(wrk, [alyx, peer], args)
    print(f"\n{machine_line(args)}\n\n{table(best)}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = WORK / f"rules-list-results-{stamp}.json"
    figures = {label: {case: {**asdict(r), "load": load} for case, (r, load) in cases.items()}
               for label, cases in best.items()}  # fmt: skip
    out.write_text(json.dumps({"machine": machine_line(args), "wrk": figures}, indent=2))
    print(f"\nfigures saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
