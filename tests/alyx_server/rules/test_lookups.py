"""Rules that read other collections: `get(c, id).field` and `exists(c, {field: value})`.

A teams / members / projects matrix over REST, batch and realtime (owner, member, removed
member, outsider, anonymous, admin); the load-time checks (unknown collection or field,
internal fields, whole docs, depth, cross joins) with file, line and column; what a rule
reading a closed collection can and cannot leak; realtime following membership and
ownership changes; and the SQL path against the closure path on random data and rules.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from alyx_cli.main import cli
from alyx_server.api.realtime import REALTIME
from alyx_server.api.runtime import RUNTIME
from alyx_server.app import create_app
from alyx_server.db import ListQuery, insert_doc, list_docs
from alyx_server.errors import RuleError
from alyx_server.rules.load import compile_schema_rules
from alyx_server.rules.lookups import reading, set_lookup_depth
from alyx_server.schema.ddl import create_table_sql, index_sql
from alyx_server.schema.loader import load_schema, parse_schema
from tests.alyx_server.auth.support import PASSWORD, make_auth_settings, register
from tests.alyx_server.realtime.support import WAIT, LiveClient

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]
ADMIN = "root@example.com"

SCHEMA = """\
version: 1
collections:
  teams:
    fields:
      id:       { type: string, primary: true }
      owner_id: { type: string, index: true }
      pin:      { type: string, nullable: true }
      hidden:   { type: string, nullable: true, internal: true }
    rules:
      create: "auth != null && doc.owner_id == auth.id"
      read:   "auth != null && doc.owner_id == auth.id"
      update: "auth != null && doc.owner_id == auth.id"
  members:
    fields:
      id:      { type: string, primary: true }
      team_id: { type: string, references: teams.id, onDelete: cascade }
      user_id: { type: string, index: true }
    indexes:
      - { name: idx_members_team_user, fields: [team_id, user_id] }
    rules:
      create: "auth != null && get('teams', doc.team_id).owner_id == auth.id"
      read:   "auth != null && (doc.user_id == auth.id || get('teams', doc.team_id).owner_id == auth.id)"
      delete: "auth != null && get('teams', doc.team_id).owner_id == auth.id"
  projects:
    fields:
      id:      { type: string, primary: true }
      team_id: { type: string, index: true }
      title:   { type: string }
    rules:
      create: "MEMBER_OR_OWNER"
      read:   "MEMBER_OR_OWNER"
      update: "MEMBER_OR_OWNER"
      delete: "get('teams', doc.team_id).owner_id == auth.id"
  tasks:
    fields:
      id:      { type: string, primary: true }
      team_id: { type: string, references: teams.id, index: true }
      title:   { type: string }
    rules:
      create: "MEMBER_OR_OWNER_SHORT"
      read:   "MEMBER_OR_OWNER_SHORT"
      update: "MEMBER_OR_OWNER_SHORT"
      delete: "doc.team_id.owner_id == auth.id"
  guesses:
    fields:
      id:      { type: string, primary: true }
      team_id: { type: string }
      guess:   { type: string }
    rules:
      read: "get('teams', doc.team_id).pin == doc.guess"
  notes:
    fields:
      id:      { type: string, primary: true }
      team_id: { type: string }
    rules:
      read: "auth != null && get('teams', doc.team_id).owner_id.trim() == auth.id"
""".replace(
    # `tasks` is `projects` with team_id a reference, so `doc.team_id.owner_id` reads the team.
    "MEMBER_OR_OWNER_SHORT",
    "exists('members', {'team_id': doc.team_id, 'user_id': auth.id}) || doc.team_id.owner_id == auth.id",
).replace(
    "MEMBER_OR_OWNER",
    "exists('members', {'team_id': doc.team_id, 'user_id': auth.id})"
    " || get('teams', doc.team_id).owner_id == auth.id",
)


class World:
    def __init__(self, client: Client, tokens: dict[str, str | None], ids: dict[str, str]) -> None:
        self.client, self.tokens, self.ids = client, tokens, ids

    async def call(self, actor: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = self.tokens[actor]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.request(method, path, json=body, headers=headers)
        return response.status, (await response.json() if response.status != 204 else None)

    async def ok(self, actor: str, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.call(actor, method, path, body)
        assert status < 300, (status, answer)
        return answer


async def _world(tmp_path: Path, aiohttp_client: ClientFactory) -> World:
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(SCHEMA)
    (root / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n")
    settings_ = make_auth_settings(
        root, **{"auth.rate_limit.login": "off", "auth.rate_limit.register": "off"}
    )
    client = await aiohttp_client(create_app(settings_, schema=load_schema(root / "schema.yaml")))
    accounts = {
        name: await register(client, f"{name}@example.com")
        for name in ("owner", "member", "removed", "outsider")
    }
    result = CliRunner().invoke(
        cli, ["admin", "create", ADMIN, "--password-stdin", "-C", str(root)], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    response = await client.post("/api/auth/login", json={"email": ADMIN, "password": PASSWORD})
    admin = (await response.json())["tokens"]["access_token"]
    tokens: dict[str, str | None] = {n: a.access for n, a in accounts.items()}
    tokens.update(anon=None, admin=admin)
    w = World(client, tokens, {n: a.id for n, a in accounts.items()})
    await w.ok(
        "owner", "POST", "/api/collections/teams", {"id": "t1", "owner_id": w.ids["owner"], "pin": "4711"}
    )
    for who in ("member", "removed"):
        body = {"id": f"m-{who}", "team_id": "t1", "user_id": w.ids[who]}
        await w.ok("owner", "POST", "/api/collections/members", body)
    await w.ok("owner", "DELETE", "/api/collections/members/m-removed")
    for collection in ("projects", "tasks"):
        body = {"id": "p1", "team_id": "t1", "title": "a"}
        await w.ok("owner", "POST", f"/api/collections/{collection}", body)
    return w


ACTORS = ("owner", "member", "removed", "outsider", "anon", "admin")
# actor -> (get, list count, create, update, delete) on a project of team t1
MATRIX = {
    "owner":    (200, 1, 201, 200, 204),
    "member":   (200, 1, 201, 200, 403),
    "removed":  (404, 0, 403, 404, 404),
    "outsider": (404, 0, 403, 404, 404),
    "anon":     (404, 0, 403, 404, 404),
    "admin":    (200, 1, 201, 200, 204),
}  # fmt: skip


# projects: get('teams', doc.team_id).owner_id; tasks: the same through the reference,
# doc.team_id.owner_id.
COLLECTIONS = ("projects", "tasks")


@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize("actor", ACTORS)
async def test_matrix_over_rest(
    tmp_path: Path, aiohttp_client: ClientFactory, actor: str, collection: str
) -> None:
    w = await _world(tmp_path, aiohttp_client)
    get, count, create, update, delete = MATRIX[actor]
    base = f"/api/collections/{collection}"
    assert (await w.call(actor, "GET", f"{base}/p1"))[0] == get
    status, listed = await w.call(actor, "GET", base)
    assert status == 200 and len(listed["docs"]) == count
    assert (await w.call(actor, "POST", base, {"id": "p2", "team_id": "t1", "title": "b"}))[0] == create
    assert (await w.call(actor, "PATCH", f"{base}/p1", {"title": "c"}))[0] == update
    assert (await w.call(actor, "DELETE", f"{base}/p1"))[0] == delete


@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize("actor", ACTORS)
async def test_matrix_over_batch(
    tmp_path: Path, aiohttp_client: ClientFactory, actor: str, collection: str
) -> None:
    w = await _world(tmp_path, aiohttp_client)
    get, _count, create, update, delete = MATRIX[actor]
    ops = [
        {"method": "GET", "collection": collection, "id": "p1"},
        {"method": "POST", "collection": collection, "body": {"id": "p2", "team_id": "t1", "title": "b"}},
        {"method": "PATCH", "collection": collection, "id": "p1", "body": {"title": "c"}},
        {"method": "DELETE", "collection": collection, "id": "p1"},
    ]
    for op, expected in zip(ops, (get, create, update, delete), strict=True):
        status, answer = await w.call(actor, "POST", "/api/batch", {"operations": [op]})
        # A failed operation answers its own status (and the batch writes nothing).
        got = answer["results"][0]["status"] if status == 200 else status
        assert got == expected, (op, status, answer)


async def test_lookup_on_a_forged_or_missing_id_denies(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    w = await _world(tmp_path, aiohttp_client)
    # A project in a team that does not exist: get() of a missing doc is an error, so no.
    body = {"id": "px", "team_id": "no-such-team", "title": "x"}
    assert (await w.call("outsider", "POST", "/api/collections/projects", body))[0] == 403
    # A membership forged into someone else's team is refused by the members rule.
    forged = {"id": "mx", "team_id": "t1", "user_id": w.ids["outsider"]}
    assert (await w.call("outsider", "POST", "/api/collections/members", forged))[0] == 403
    assert (await w.call("outsider", "GET", "/api/collections/projects/p1"))[0] == 404


async def test_a_closed_collection_leaks_no_value(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    """Rules run lookups with system privileges: `guesses` reads teams.pin, which the
    guesser may not read. Only the boolean comes out: a right guess makes the guess
    readable, and nothing in any answer or error carries the pin."""
    w = await _world(tmp_path, aiohttp_client)
    await w.ok("admin", "POST", "/api/collections/guesses", {"id": "g1", "team_id": "t1", "guess": "0000"})
    await w.ok("admin", "POST", "/api/collections/guesses", {"id": "g2", "team_id": "t1", "guess": "4711"})
    await w.ok("admin", "POST", "/api/collections/guesses", {"id": "g3", "team_id": "nope", "guess": "x"})
    assert (await w.call("outsider", "GET", "/api/collections/teams/t1"))[0] == 404
    for path in ("/guesses/g1", "/guesses/g3", "/guesses?where=doc.guess%20%3D%3D%20%270000%27"):
        status, body = await w.call("outsider", "GET", "/api/collections" + path)
        assert "4711" not in repr(body), body
    status, listed = await w.call("outsider", "GET", "/api/collections/guesses")
    assert [d["id"] for d in listed["docs"]] == ["g2"]
    # A `where` cannot look up at all: get() is an unknown function there.
    lookup = "/api/collections/guesses?where=get('teams','t1').pin=='1'"
    status, body = await w.call("outsider", "GET", lookup)
    assert status == 400 and "4711" not in repr(body)


async def test_a_lookup_without_sql_form_is_read_per_row_in_lists(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    """`trim()` has no SQL form, so the notes read rule is a per-row check in a list: its
    point reads go through the list's connection, and the list agrees with a get."""
    w = await _world(tmp_path, aiohttp_client)
    for start in (0, 100):
        bodies = [{"id": f"n{i:03}", "team_id": "t1" if i % 3 else "x"} for i in range(start, start + 100)]
        ops = [{"method": "POST", "collection": "notes", "body": body} for body in bodies]
        await w.ok("admin", "POST", "/api/batch", {"operations": ops})
    visible = sorted(f"n{i:03}" for i in range(200) if i % 3)
    db = w.client.server.app[RUNTIME].ready_db()
    moved = db.loop_reads_moved
    status, listed = await w.call("owner", "GET", "/api/collections/notes?limit=5&sort=id&total=true")
    assert status == 200, listed
    assert [d["id"] for d in listed["docs"]] == visible[:5] and listed["total"] == len(visible)
    # 200 point reads of 1,000 steps each are twice one evaluation budget: the list, begun
    # on the event loop, finished on a reader thread like any row check past its budget.
    assert db.loop_reads_moved == moved + 1
    assert (await w.call("owner", "GET", "/api/collections/notes/n001"))[0] == 200
    for actor in ("member", "outsider"):
        status, listed = await w.call(actor, "GET", "/api/collections/notes")
        assert status == 200 and listed["docs"] == [], (actor, listed)


# -- realtime ----------------------------------------------------------------------------
async def _live(
    w: World, actor: str, limit: int | None, collection: str = "projects"
) -> tuple[LiveClient, str]:
    token = w.tokens[actor]
    live = await LiveClient.connect(w.client, f"/api/realtime?token={token}")
    payload: dict[str, Any] = {"collection": collection}
    if limit is not None:
        payload["limit"] = limit
    snap = await live.subscribe(payload)
    assert snap["type"] == "snapshot", snap
    return live, snap["payload"]["subscription_id"]


async def _settle(live: LiveClient, done: Callable[[], bool] | None = None) -> None:
    """Read what the server sent until `done()` holds (within WAIT seconds); without
    `done`, for a second, so that a delta that should not come has had time to."""
    deadline = asyncio.get_running_loop().time() + (WAIT if done else 1.0)
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        await live.sync()
        if done is not None and done():
            return
    assert done is None, live.messages[-5:]


@pytest.mark.parametrize("limit", [None, 10])
async def test_realtime_follows_membership(
    tmp_path: Path, aiohttp_client: ClientFactory, limit: int | None
) -> None:
    w = await _world(tmp_path, aiohttp_client)
    live, sub = await _live(w, "member", limit)
    assert set(live.views[sub].docs) == {"p1"}
    await w.ok("owner", "DELETE", "/api/collections/members/m-member")
    await _settle(live, lambda: live.views[sub].docs == {})
    assert live.views[sub].docs == {}
    deltas = [m["payload"]["changes"] for m in live.messages if m["type"] == "delta"]
    assert any("p1" in changes.get("deletes", ()) for changes in deltas)
    await w.ok(
        "owner", "POST", "/api/collections/members", {"id": "m2", "team_id": "t1", "user_id": w.ids["member"]}
    )
    await _settle(live, lambda: set(live.views[sub].docs) == {"p1"})
    assert set(live.views[sub].docs) == {"p1"}
    await live.close()


@pytest.mark.parametrize("collection", COLLECTIONS)
async def test_realtime_follows_a_change_of_owner(
    tmp_path: Path, aiohttp_client: ClientFactory, collection: str
) -> None:
    w = await _world(tmp_path, aiohttp_client)
    live, sub = await _live(w, "outsider", 10, collection)
    assert live.views[sub].docs == {}
    await w.ok("owner", "PATCH", "/api/collections/teams/t1", {"owner_id": w.ids["outsider"]})
    await _settle(live, lambda: set(live.views[sub].docs) == {"p1"})
    assert set(live.views[sub].docs) == {"p1"}
    await w.ok("outsider", "PATCH", "/api/collections/teams/t1", {"owner_id": w.ids["owner"]})
    await _settle(live, lambda: live.views[sub].docs == {})
    assert live.views[sub].docs == {}
    await live.close()


async def test_a_burst_of_membership_changes_reruns_each_subscription_once(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    """1,000 memberships inserted in one transaction reach the fan-out as one batch: each
    subscription whose read rule looks up `members` re-runs its query once, not 1,000
    times, and ends in the right state."""
    w = await _world(tmp_path, aiohttp_client)
    fanout = w.client.server.app[REALTIME].hub.fanout
    outsider_set, set_sub = await _live(w, "outsider", None)
    outsider_window, window_sub = await _live(w, "outsider", 10)
    member_set, member_sub = await _live(w, "member", None)
    assert outsider_set.views[set_sub].docs == {} and set(member_set.views[member_sub].docs) == {"p1"}
    db = w.client.server.app[RUNTIME].ready_db()
    members = db.schema.get("members")
    assert members is not None
    rows = [{"id": f"burst{i}", "team_id": "t1", "user_id": f"someone-{i}"} for i in range(999)]
    rows.append({"id": "burst-outsider", "team_id": "t1", "user_id": w.ids["outsider"]})

    def insert_all(conn: sqlite3.Connection) -> None:
        for row in rows:
            insert_doc(conn, members, row)

    before = fanout.lookup_reruns
    await db.write(insert_all)
    await asyncio.gather(*(_settle(live) for live in (outsider_set, outsider_window, member_set)))
    assert fanout.lookup_reruns - before == 3  # one per subscription, for 1,000 changes
    assert set(outsider_set.views[set_sub].docs) == {"p1"}
    assert set(outsider_window.views[window_sub].docs) == {"p1"}
    assert set(member_set.views[member_sub].docs) == {"p1"}
    deltas = [m["payload"]["changes"] for m in outsider_set.messages if m["type"] == "delta"]
    assert [[d["id"] for d in c.get("inserts", ())] for c in deltas] == [["p1"]], deltas
    assert not [m for m in member_set.messages if m["type"] == "delta"]
    for live in (outsider_set, outsider_window, member_set):
        await live.close()


# -- load-time checks --------------------------------------------------------------------
BASE = """\
version: 1
collections:
  teams:
    fields:
      id:       { type: string, primary: true }
      owner_id: { type: string }
      note:     { type: string }
      hidden:   { type: string, internal: true }
  docs:
    fields:
      id:      { type: string, primary: true }
      team_id: { type: string }
    rules:
      read: "RULE"
"""


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("get('nope', doc.team_id).owner_id == auth.id", "unknown collection 'nope'"),
        ("get('teams', doc.team_id).nope == auth.id", "unknown field 'nope'"),
        ("get('teams', doc.team_id).hidden == auth.id", "unknown field 'hidden'"),
        ("get('teams', doc.team_id) == null", "reads one field at a time"),
        ("exists('teams', {'hidden': 'x'})", "unknown field 'hidden'"),
        ("exists('teams', {'note': doc.team_id})", "filters on no indexed field"),
        ("exists('teams', {})", "map literal"),
        ("get(doc.team_id, 'x').owner_id == ''", "string literal"),
        (
            "get('teams', get('docs', get('docs', doc.id).team_id).team_id).owner_id == auth.id",
            "rules.lookup_depth allows 2",
        ),
        ("[1].all(x, exists('teams', {'id': doc.team_id}))", "inside a macro"),
    ],
)
def test_bad_lookups_are_refused_at_load_with_their_place(tmp_path: Path, rule: str, message: str) -> None:
    set_lookup_depth(2)
    path = tmp_path / "schema.yaml"
    path.write_text(BASE.replace("RULE", rule.replace('"', '\\"')))
    with pytest.raises(RuleError) as caught:
        compile_schema_rules(load_schema(path))
    text = str(caught.value)
    assert message in text, text
    assert "schema.yaml:14:" in text, text


THREE_DEEP = "get('teams', get('docs', get('docs', doc.id).team_id).team_id).owner_id == auth.id"
TWO_DEEP = "get('teams', get('docs', doc.id).team_id).owner_id == ''"


@pytest.mark.parametrize(
    ("config", "rule", "refused"),
    [
        ("", THREE_DEEP, "rules.lookup_depth allows 2"),
        ("rules:\n  lookup_depth: 3\n", THREE_DEEP, None),
        ("rules:\n  lookup_depth: 1\n", TWO_DEEP, "allows 1"),
    ],
)
@pytest.mark.parametrize("command", [["migrate", "status"], ["generate", "-l", "python"]])
def test_cli_commands_check_lookups_with_the_projects_depth(
    tmp_path: Path, command: list[str], config: str, rule: str, refused: str | None
) -> None:
    """`alyx migrate` and `alyx generate` compile the rules with the project's
    `rules.lookup_depth`, as the server does, not with the default."""
    set_lookup_depth(2)
    (tmp_path / "schema.yaml").write_text(BASE.replace("RULE", rule.replace('"', '\\"')))
    (tmp_path / "alyx.yaml").write_text(config)
    result = CliRunner().invoke(cli, [*command, "-C", str(tmp_path)])
    if refused is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
        assert refused in result.output and "schema.yaml:14:" in result.output, result.output


REFS = """\
version: 1
collections:
  teams:
    fields:
      id:       { type: string, primary: true }
      owner_id: { type: string }
      slug:     { type: string, unique: true }
      parent_id: { type: string, references: teams.id }
      hidden:   { type: string, internal: true }
  projects:
    fields:
      id:      { type: string, primary: true }
      team_id: { type: string, references: teams.id }
  docs:
    fields:
      id:         { type: string, primary: true }
      project_id: { type: string, references: projects.id }
      team_slug:  { type: string, references: teams.slug }
      meta:       { type: json }
    rules:
      read: "RULE"
      update: "OTHER"
"""


def _refs(rule: str, other: str = "true") -> tuple[Any, Any]:
    text = REFS.replace("RULE", rule.replace('"', '\\"')).replace("OTHER", other.replace('"', '\\"'))
    rules = compile_schema_rules(parse_schema(text, filename="schema.yaml"), lookup_depth=2)
    return rules.get("docs", "read"), rules.get("docs", "update")


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ("doc.project_id.team_id == auth.id", "get('projects', doc.project_id).team_id == auth.id"),
        (
            "doc.project_id.team_id.owner_id == auth.id",
            "get('teams', get('projects', doc.project_id).team_id).owner_id == auth.id",
        ),
        (
            "doc.project_id.team_id.owner_id.startsWith('u') && doc.meta.team_id == 'x'",
            "get('teams', get('projects', doc.project_id).team_id).owner_id.startsWith('u')"
            " && doc.meta.team_id == 'x'",
        ),
    ],
)
def test_the_reference_shorthand_is_a_get(short: str, long: str) -> None:
    """`doc.f.g` through a `references` field is `get(c, doc.f).g`: the same lookups and
    the same SQL; a json field (`doc.meta.team_id`) still selects into its value."""
    a, b = _refs(short, long)
    assert a is not None and b is not None
    assert a.lookups == b.lookups and a.lookups
    auth = {"id": "u1", "role": "user"}
    assert a.to_predicate(auth, None) == b.to_predicate(auth, None)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "doc.project_id.nope == ''",
            "unknown field 'nope' in doc.project_id.nope (project_id references projects)",
        ),
        ("doc.project_id.team_id.hidden == ''", "unknown field 'hidden' in doc.project_id.team_id.hidden"),
        ("has(doc.project_id.team_id)", "has() cannot test a field through the reference doc.project_id"),
        ("doc.team_slug.owner_id == ''", "references teams.slug, not the primary key"),
        ("doc.project_id.team_id.parent_id.owner_id == ''", "rules.lookup_depth allows 2"),
        ("[1].all(x, doc.project_id.team_id == '')", "inside a macro"),
    ],
)
def test_bad_reference_shorthands_are_refused_at_load(rule: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        _refs(rule)
    text = str(caught.value)
    assert message in text and "schema.yaml:21:" in text, text


# -- differential: SQL == closure --------------------------------------------------------
DIFF_SCHEMA = """\
version: 1
collections:
  teams:
    fields:
      id:       { type: string, primary: true }
      owner_id: { type: string, nullable: true, index: true, references: teams.id }
      size:     { type: int }
  members:
    fields:
      id:      { type: string, primary: true }
      team_id: { type: string, nullable: true, index: true }
      user_id: { type: string }
      level:   { type: int }
  projects:
    fields:
      id:      { type: string, primary: true }
      team_id: { type: string, nullable: true, references: teams.id }
      n:       { type: int }
"""
USERS = ["u1", "u2", "u3"]
# Lookups under functions with no SQL form: their `&&` part is a per-row check in a list,
# whose point reads go through the list's connection.
CLOSURE_ONLY = (
    "get('teams', doc.team_id).owner_id.charAt(0) == 'u'",
    "math.abs(get('teams', doc.team_id).size - doc.n) == 1",
    "exists('members', {'team_id': doc.team_id, 'level': math.abs(doc.n - 1)})",
)
TEAMS = ["t1", "t2", "t3", "t4"]
_atoms = st.sampled_from(
    [
        "exists('members', {'team_id': doc.team_id, 'user_id': auth.id})",
        "exists('members', {'team_id': doc.team_id, 'level': doc.n})",
        "exists('members', {'team_id': doc.team_id})",
        "get('teams', doc.team_id).owner_id == auth.id",
        "get('teams', doc.team_id).owner_id == null",
        "get('teams', doc.team_id).size > doc.n",
        "get('teams', doc.team_id).size in [1, 2]",
        "get('teams', get('teams', doc.team_id).owner_id).size == 0",
        "get('teams', 't1').owner_id == auth.id",
        "doc.team_id.owner_id == auth.id",
        "doc.team_id.owner_id.size == doc.n",
        "doc.n > 1",
        "auth.id == 'u1'",
        *CLOSURE_ONLY,
    ]
)
_rules = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: f"({p[0]}) && ({p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]}) || ({p[1]})"),
        inner.map(lambda p: f"!({p})"),
    ),
    max_leaves=4,
)
_data = st.tuples(
    st.lists(
        st.tuples(st.sampled_from(TEAMS), st.sampled_from([*USERS, *TEAMS, None]), st.integers(0, 2)),
        max_size=4,
        unique_by=lambda t: t[0],
    ),
    st.lists(
        st.tuples(st.sampled_from([*TEAMS, None]), st.sampled_from(USERS), st.integers(0, 2)), max_size=6
    ),
    st.lists(st.tuples(st.sampled_from([*TEAMS, "zz", None]), st.integers(0, 2)), min_size=1, max_size=6),
)


@given(rule=_rules, data=_data, user=st.sampled_from([*USERS, None]))
def test_sql_path_equals_closure_path(rule: str, data: Any, user: str | None) -> None:
    set_lookup_depth(2)
    text = DIFF_SCHEMA + f'    rules:\n      read: "{rule}"\n'
    schema = parse_schema(text, filename="schema.yaml")
    compiled = compile_schema_rules(schema).get("projects", "read")
    assert compiled is not None
    conn = sqlite3.connect(":memory:")
    for c in schema.collections:
        conn.execute(create_table_sql(c))
        for sql in index_sql(c):
            conn.execute(sql)
    teams, members, projects = data
    conn.executemany("INSERT INTO teams VALUES (?, ?, ?)", teams)
    conn.executemany(
        "INSERT INTO members VALUES (?, ?, ?, ?)", [(f"m{i}", *m) for i, m in enumerate(members)]
    )
    conn.executemany("INSERT INTO projects VALUES (?, ?, ?)", [(f"p{i}", *p) for i, p in enumerate(projects)])
    auth = None if user is None else {"id": user, "role": "user"}
    predicate = compiled.to_predicate(auth, None)
    # All of it is SQL (no per-row reads) unless a lookup sits under a closure-only function.
    assert (predicate.check is None) == (not any(atom in rule for atom in CLOSURE_ONLY)), rule
    collection = schema.get("projects")
    assert collection is not None
    by_sql = {d["id"] for d in list_docs(conn, ListQuery(collection, predicates=[predicate])).docs}
    everything = list_docs(conn, ListQuery(collection)).docs
    with reading(conn):
        by_closure = {d["id"] for d in everything if compiled.allows(auth, None, d)}
    assert by_sql == by_closure, (rule, data, user)
