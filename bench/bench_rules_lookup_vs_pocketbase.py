"""A list under a membership read rule, Alyx against PocketBase: 10,000 projects in 1,000
teams of 10 members each; one signed-in member lists a page of 20.

    .venv/bin/python bench/bench_rules_lookup_vs_pocketbase.py [--duration 10] [--connections 10]
        [--rounds 3] [--teams 1000]

Both servers hold the same `teams`, `members` (team, user; 10 per team, so each of 1,000
users is in 10 teams) and `projects` (10 per team), and guard project reads with the same
rule, "the caller is a member of the project's team":

- Alyx: `read: "auth != null && exists('members', {'team_id': doc.team_id, 'user_id': auth.id})"`;
- PocketBase: `@request.auth.id != "" && @collection.members.team ?= team &&
  @collection.members.user ?= @request.auth.id` (one join of members: both conditions on
  the same row).

Members are indexed on (user, team) and projects on the team on both sides. The data is
loaded before the measurement: Alyx through `alyx db seed` (the server stopped),
PocketBase through its batch API as a superuser. wrk asks each server, alternately, for
the member's first page of 20 (with and without the total). Before measuring, each
answer is checked (20 docs of the member's teams, the total of 100; an anonymous caller
sees none), and the query plan SQLite chooses for Alyx's list is printed: the lookup
must search an index of members, not scan it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_rules_list_vs_pocketbase as owner_bench
from bench_rules_list_vs_pocketbase import RuleTarget, measure, pocketbase_id
from http_vs_pocketbase import (
    PB_EMAIL,
    PB_PASSWORD,
    PB_VERSION,
    WORK,
    alyx_executable,
    ensure_pocketbase,
    ensure_wrk,
    free_port,
    fresh_dir,
    insert_all,
    launch_pocketbase,
)

__all__ = ["main"]

USER_EMAIL = "member@example.com"
USER_PASSWORD = "member-password-1234"
READ_RULE = "auth != null && exists('members', {'team_id': doc.team_id, 'user_id': auth.id})"
PB_RULE = (
    '@request.auth.id != "" && @collection.members.team ?= team'
    " && @collection.members.user ?= @request.auth.id"
)
PAGE = 20
PER_TEAM = 10

ALYX_SCHEMA = f"""\
version: 1
collections:
  teams:
    fields:
      id:   {{ type: uuid, primary: true, default: auto }}
      name: {{ type: string }}
  members:
    fields:
      id:      {{ type: uuid, primary: true, default: auto }}
      team_id: {{ type: uuid }}
      user_id: {{ type: uuid }}
    indexes:
      - {{ name: idx_members_user_team, fields: [user_id, team_id] }}
  projects:
    fields:
      id:         {{ type: uuid, primary: true, default: auto }}
      team_id:    {{ type: uuid, index: true }}
      title:      {{ type: string }}
      n:          {{ type: int }}
      created_at: {{ type: timestamp, default: now }}
    rules:
      read: "{READ_RULE}"
"""


def _pb_collection(name: str, fields: list[dict[str, Any]], indexes: list[str], rule: str | None) -> Any:
    return {"name": name, "type": "base", "listRule": rule, "viewRule": rule, "fields": fields,
            "indexes": indexes}  # fmt: skip


PB_COLLECTIONS = [
    _pb_collection("teams", [{"name": "name", "type": "text"}], [], None),
    _pb_collection(
        "members",
        [{"name": "team", "type": "text"}, {"name": "user", "type": "text"}],
        ["CREATE INDEX idx_members_user_team ON members (user, team)"],
        None,
    ),
    _pb_collection(
        "projects",
        [
            {"name": "team", "type": "text"},
            {"name": "title", "type": "text"},
            {"name": "n", "type": "number"},
            {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
        ],
        ["CREATE INDEX idx_projects_team ON projects (team)"],
        PB_RULE,
    ),
]


def world(teams: int, member_id: str, new_id: Any) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Team ids, (team, user) memberships and each project's team. User u is in teams
    u, u-1, ..., u-9 (mod the team count); the signed-in member is user 0."""
    team_ids = [new_id() for _ in range(teams)]
    users = [member_id] + [new_id() for _ in range(teams - 1)]
    members = [(team_ids[t], users[(t + k) % teams]) for t in range(teams) for k in range(PER_TEAM)]
    projects = [team_ids[i % teams] for i in range(teams * PER_TEAM)]
    return team_ids, members, projects


def member_teams(members: list[tuple[str, str]], member_id: str) -> set[str]:
    return {team for team, user in members if user == member_id}


async def check_answers(target: RuleTarget, docs_key: str, team_key: str, total_key: str,
                        teams: set[str], expected_total: int) -> None:  # fmt: skip
    async with aiohttp.ClientSession() as session:
        url = target.urls["total"]
        async with session.get(url, headers={"Authorization": target.token_header}) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{target.label}: {url} answered {r.status}: {body}")
        seen = {doc[team_key] for doc in body[docs_key]}
        if len(body[docs_key]) != PAGE or not seen <= teams or body[total_key] != expected_total:
            raise RuntimeError(f"{target.label}: unexpected page of {seen}, total {body[total_key]}")
        async with session.get(url) as r:
            anonymous = await r.json()
        if r.status == 200 and anonymous.get(docs_key):
            raise RuntimeError(f"{target.label}: an anonymous caller read {len(anonymous[docs_key])} docs")
    print(f"{target.label}: the member sees {PAGE} of {expected_total}; an anonymous caller none", flush=True)


# ---------------------------------------------------------------- PocketBase


async def _pocketbase_load(base: str, args: argparse.Namespace) -> tuple[str, set[str]]:
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        auth_url = f"{base}/api/collections/_superusers/auth-with-password"
        async with session.post(auth_url, json={"identity": PB_EMAIL, "password": PB_PASSWORD}) as r:
            admin = {"Authorization": (await r.json())["token"]}
        batch = {"enabled": True, "maxRequests": 100, "timeout": 60, "maxBodySize": 0}
        async with session.patch(f"{base}/api/settings", json={"batch": batch}, headers=admin):
            pass
        for collection in PB_COLLECTIONS:
            async with session.post(f"{base}/api/collections", json=collection, headers=admin):
                pass
        account = {"email": USER_EMAIL, "password": USER_PASSWORD, "passwordConfirm": USER_PASSWORD}
        async with session.post(f"{base}/api/collections/users/records", json=account, headers=admin) as r:
            member_id = str((await r.json())["id"])
        login = {"identity": USER_EMAIL, "password": USER_PASSWORD}
        async with session.post(f"{base}/api/collections/users/auth-with-password", json=login) as r:
            token = str((await r.json())["token"])
    team_ids, members, projects = world(args.teams, member_id, pocketbase_id)
    async with aiohttp.ClientSession(headers=admin) as session:
        for name, docs in (
            ("teams", [{"id": t, "name": f"Team {i}"} for i, t in enumerate(team_ids)]),
            ("members", [{"team": t, "user": u} for t, u in members]),
            ("projects", [{"team": t, "title": f"Project {i}", "n": i} for i, t in enumerate(projects)]),
        ):

            def body(chunk: list[dict[str, Any]], name: str = name) -> Any:
                url = f"/api/collections/{name}/records"
                return {"requests": [{"method": "POST", "url": url, "body": doc} for doc in chunk]}

            await insert_all(session, f"{base}/api/batch", body, docs)
    return token, member_teams(members, member_id)


def start_pocketbase(exe: Path, args: argparse.Namespace) -> tuple[RuleTarget, set[str]]:
    server, base, _data = launch_pocketbase(exe, "pocketbase-lookups")
    try:
        token, teams = asyncio.run(_pocketbase_load(base, args))
    except BaseException:
        server.stop()
        raise
    route = f"{base}/api/collections/projects/records?perPage={PAGE}"
    urls = {"total": route, "no_total": route + "&skipTotal=1"}
    return RuleTarget("PocketBase", server, token, urls), teams


# ---------------------------------------------------------------- Alyx


def start_alyx(args: argparse.Namespace) -> tuple[RuleTarget, set[str], Path]:
    """`alyx serve`: the member registered, the server stopped, the data seeded, started again."""
    project = fresh_dir(WORK / "alyx-lookups")
    port = free_port()
    (project / "alyx.yaml").write_text(f"server:\n  port: {port}\nauth:\n  jwt:\n    access_ttl: 2h\n")
    (project / "schema.yaml").write_text(ALYX_SCHEMA)
    server = owner_bench._alyx_server(project, port, "serve-register.log")
    try:
        member_id, token = asyncio.run(owner_bench._alyx_register(server.base_url))
    finally:
        server.stop()
    team_ids, members, projects = world(args.teams, member_id, lambda: str(uuid.uuid4()))
    seed = project / "seed.json"
    seed.write_text(json.dumps({
        "teams": [{"id": t, "name": f"Team {i}"} for i, t in enumerate(team_ids)],
        "members": [{"team_id": t, "user_id": u} for t, u in members],
        "projects": [{"team_id": t, "title": f"Project {i}", "n": i} for i, t in enumerate(projects)],
    }))  # fmt: skip
    seeded = subprocess.run([str(alyx_executable()), "db", "seed", str(seed)], cwd=project,
                            capture_output=True, text=True, check=False)  # fmt: skip
    if seeded.returncode != 0:
        raise RuntimeError(f"alyx db seed failed:\n{seeded.stdout}{seeded.stderr}")
    print(f"Alyx: {seeded.stdout.strip()}", flush=True)
    print_plan(project, member_id)
    server = owner_bench._alyx_server(project, port, "serve.log")
    route = f"{server.base_url}/api/collections/projects?limit={PAGE}"
    urls = {"total": route, "no_total": route + "&total=false"}
    return RuleTarget("Alyx", server, f"Bearer {token}", urls), member_teams(members, member_id), project


def print_plan(project: Path, member_id: str) -> None:
    """The list query Alyx runs for the member, and SQLite's plan for it."""
    from alyx_server.db import ListQuery, list_docs
    from alyx_server.rules.load import load_schema_rules

    rules = load_schema_rules(project / "schema.yaml")
    rule = rules.get("projects", "read")
    collection = rules.schema.get("projects")
    assert rule is not None and collection is not None
    predicate = rule.to_predicate({"id": member_id, "role": "user"}, None)
    conn = sqlite3.connect(project / "data" / "alyx.db")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    list_docs(conn, ListQuery(collection, predicates=[predicate], limit=PAGE))
    conn.set_trace_callback(None)
    select = next(s for s in statements if s.lstrip().upper().startswith("SELECT"))
    print(f"Alyx list SQL: {select}")
    plan = conn.execute(f"EXPLAIN QUERY PLAN {select}").fetchall()
    print("SQLite plan:\n" + "\n".join(f"  {row[-1]}" for row in plan), flush=True)
    if not any("members" in row[-1] and "INDEX" in row[-1] for row in plan):
        raise RuntimeError("the membership lookup does not use an index of members")
    conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    parser.add_argument("--connections", type=int, default=10, help="concurrent connections (10)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each run (2)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per case and server, best kept (3)")
    parser.add_argument("--teams", type=int, default=1000, help="teams (1000); 10 members and projects each")
    args = parser.parse_args(argv)
    wrk, pocketbase = ensure_wrk(), ensure_pocketbase()
    expected = PER_TEAM * PER_TEAM
    with ExitStack() as servers:
        alyx, alyx_teams, _project = start_alyx(args)
        servers.callback(alyx.server.stop)
        peer, peer_teams = start_pocketbase(pocketbase, args)
        servers.callback(peer.server.stop)
        asyncio.run(check_answers(alyx, "docs", "team_id", "total", alyx_teams, expected))
        asyncio.run(check_answers(peer, "items", "team", "totalItems", peer_teams, expected))
        print(f"load average before measuring: {os.getloadavg()[0]:.2f}", flush=True)
        best = measure(wrk, [alyx, peer], args)
    owner_bench.CASES.update(total="list 20 of 10,000 through membership, with total",
                             no_total="list 20 of 10,000 through membership, total skipped")  # fmt: skip
    print(
        f"\nPocketBase {PB_VERSION}; {args.teams:,} teams x {PER_TEAM} members, "
        f"{args.teams * PER_TEAM:,} projects; wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s, best of {args.rounds}; {os.cpu_count()} cores shared with the servers\n"
    )
    print(owner_bench.table(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
