"""An open WebSocket follows its credential: what REST refuses, the socket loses at once.

Each test signs a caller in, opens a real WebSocket on the real server, subscribes, then
ends the caller's access the way a user or an administrator does (password change,
logout, refresh-token reuse, a disabled account, a demotion, `alyx admin revoke-token` in
another process) and asserts, from the socket's side: one `error` with the code REST
answers, the subscription's own `error`, no delta for later writes, and a refused
subscribe. Waits are bounded reads (`support.WAIT`), never sleeps.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.realtime.support import LiveClient

Client = TestClient  # type: ignore[type-arg]

PASSWORD = "correct-horse-1"
ROOT = "root@example.com"
DROPPED = (
    "The subscriptions of this connection were dropped: send auth with a valid token, then subscribe again"
)
REFUSED = "Send auth with a valid token before subscribing again"


@pytest.fixture
def clock() -> ManualClock:
    # The CLI stamps admin tokens with the real time; the server's clock starts there too.
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    client: Client, method: str, path: str, token: str | None = None, **kw: Any
) -> tuple[int, Any]:
    resp = await client.request(method, path, headers=bearer(token) if token else {}, **kw)
    return resp.status, (await resp.json() if resp.status != 204 else None)


async def register(client: Client, email: str) -> dict[str, Any]:
    """A new account: its user and its first session's tokens."""
    status, body = await call(
        client, "POST", "/api/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert status == 201, body
    return {"id": body["user"]["id"], **body["tokens"]}


async def login(client: Client, email: str, password: str = PASSWORD) -> dict[str, Any]:
    status, body = await call(client, "POST", "/api/auth/login", json={"email": email, "password": password})
    assert status == 200, body
    return {"id": body["user"]["id"], **body["tokens"]}


def alyx(project: Path, *args: str, stdin: str | None = None) -> str:
    """The real CLI, in this process (its own database connection)."""
    result = CliRunner().invoke(cli, ["admin", *args, "-C", str(project)], input=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


async def root_admin(client: Client, project: Path) -> dict[str, Any]:
    """An administrator made by `alyx admin create`, signed in."""
    alyx(project, "create", ROOT, "--password-stdin", stdin=PASSWORD + "\n")
    return await login(client, ROOT)


async def create(
    client: Client, collection: str = "posts", token: str | None = None, **doc: Any
) -> dict[str, Any]:
    status, body = await call(client, "POST", f"/api/collections/{collection}", token, json=doc)
    assert status == 201, body
    return dict(body)


async def assert_revoked(
    live: LiveClient, client: Client, snapshot: dict[str, Any], code: str, reason: str
) -> None:
    """The connection got one `error` naming `code`, its subscription was dropped with the
    same error (echoing the subscribe id), later writes reach it no more, and a new
    subscribe is refused with that code."""
    notice = await live.until("error")
    assert notice == {"type": "error", "payload": {"code": code, "message": f"{reason}. {DROPPED}"}}
    dropped = await live.until("error")
    assert dropped == {
        "id": snapshot["id"],
        "type": "error",
        "payload": {"code": code, "message": f"{reason}. {DROPPED}"},
    }
    await create(client, title="after the revocation")
    assert await live.sync() == []
    refused = await live.subscribe({"collection": "posts"})
    assert refused["type"] == "error"
    assert refused["payload"] == {"code": code, "message": f"{reason}. {REFUSED}"}


async def test_a_password_change_ends_the_sockets_of_the_other_sessions(client: Client) -> None:
    first = await register(client, "alice@example.com")
    second = await login(client, "alice@example.com")
    old = await LiveClient.connect(client, headers=bearer(first["access_token"]))
    kept = await LiveClient.connect(client, f"/api/realtime?token={second['access_token']}")
    snap = await old.subscribe({"collection": "posts"})
    assert snap["type"] == "snapshot", snap
    assert (await kept.subscribe({"collection": "posts"}))["type"] == "snapshot"

    status, _ = await call(
        client, "POST", "/api/auth/password", second["access_token"],
        json={"current_password": PASSWORD, "new_password": "battery-staple-2"},
    )  # fmt: skip
    assert status == 204
    status, body = await call(client, "GET", "/api/auth/me", first["access_token"])
    assert (status, body["code"]) == (401, "SESSION_REVOKED")

    await assert_revoked(
        old, client, snap, "SESSION_REVOKED", "this session was logged out or revoked; log in again"
    )
    # The session that changed the password keeps its socket, as it keeps REST.
    assert [m["type"] for m in await kept.sync()] == ["delta"]


async def test_a_logout_ends_the_socket_until_auth_brings_a_valid_token(client: Client) -> None:
    alice = await register(client, "alice@example.com")
    live = await LiveClient.connect(client, f"/api/realtime?token={alice['access_token']}")
    snap = await live.subscribe({"collection": "posts", "sort": ["n"], "limit": 10})
    await create(client, title="before", n=1)
    assert [m["type"] for m in await live.sync()] == ["delta"]

    status, _ = await call(client, "POST", "/api/auth/logout", json={"refresh_token": alice["refresh_token"]})
    assert status == 204
    await assert_revoked(
        live, client, snap, "SESSION_REVOKED", "this session was logged out or revoked; log in again"
    )

    # The revoked token cannot come back; a new sign-in can.
    await live.send("auth", {"token": alice["access_token"]}, "again")
    answer = await live.until("error", "again")
    assert answer["payload"]["code"] == "SESSION_REVOKED"
    fresh = await login(client, "alice@example.com")
    await live.send("auth", {"token": fresh["access_token"]}, "fresh")
    again = await live.subscribe({"collection": "posts", "sort": ["n"], "limit": 10})
    assert again["type"] == "snapshot"
    assert [d["title"] for d in again["payload"]["docs"]] == ["after the revocation", "before"]


async def test_refresh_token_reuse_ends_the_socket_of_the_family(client: Client) -> None:
    alice = await register(client, "alice@example.com")
    live = await LiveClient.connect(client, headers=bearer(alice["access_token"]))
    snap = await live.subscribe({"collection": "posts"})

    # A plain refresh keeps the family live: the socket is not touched.
    status, rotated = await call(
        client, "POST", "/api/auth/refresh", json={"refresh_token": alice["refresh_token"]}
    )
    assert status == 200, rotated
    await create(client, title="after the refresh")
    assert [m["type"] for m in await live.sync()] == ["delta"]

    # The retired refresh token presented again: the whole family is revoked.
    status, body = await call(
        client, "POST", "/api/auth/refresh", json={"refresh_token": alice["refresh_token"]}
    )
    assert (status, body["code"]) == (401, "TOKEN_REUSED")
    await assert_revoked(
        live, client, snap, "SESSION_REVOKED", "this session was logged out or revoked; log in again"
    )


async def test_a_disabled_account_loses_its_socket(client: Client, project: Path) -> None:
    root = await root_admin(client, project)
    alice = await register(client, "alice@example.com")
    live = await LiveClient.connect(client, headers=bearer(alice["access_token"]))
    snap = await live.subscribe({"collection": "posts"})

    status, body = await call(
        client, "PATCH", f"/api/admin/users/{alice['id']}", root["access_token"], json={"disabled": True}
    )
    assert status == 200, body
    await assert_revoked(
        live, client, snap, "ACCOUNT_DISABLED", "this account is disabled; contact the administrator"
    )


async def test_a_deleted_account_loses_its_socket(client: Client) -> None:
    alice = await register(client, "alice@example.com")
    live = await LiveClient.connect(client, f"/api/realtime?token={alice['access_token']}")
    snap = await live.subscribe({"collection": "posts"})

    status, body = await call(
        client, "DELETE", "/api/auth/me", alice["access_token"], json={"password": PASSWORD}
    )
    assert status == 204, body
    await assert_revoked(live, client, snap, "SESSION_REVOKED", "the account of this token was deleted")


async def test_a_demoted_admin_keeps_only_what_the_new_role_may_read(client: Client, project: Path) -> None:
    root = await root_admin(client, project)
    alice = await register(client, "alice@example.com")
    bob = await register(client, "bob@example.com")
    status, body = await call(
        client, "PATCH", f"/api/admin/users/{bob['id']}", root["access_token"], json={"role": "admin"}
    )
    assert status == 200, body
    await create(client, "vault", label="launch codes")
    hidden = await create(client, title="alice's draft", owner=alice["id"], private=True)
    shown = await create(client, title="public", private=False)

    live = await LiveClient.connect(client, headers=bearer(bob["access_token"]))
    vault = await live.subscribe({"collection": "vault"})
    assert vault["type"] == "snapshot" and len(vault["payload"]["docs"]) == 1
    posts = await live.subscribe({"collection": "posts"})
    assert {d["id"] for d in posts["payload"]["docs"]} == {hidden["id"], shown["id"]}

    status, body = await call(
        client, "PATCH", f"/api/admin/users/{bob['id']}", root["access_token"], json={"role": "user"}
    )
    assert status == 200, body
    # The subscription the new role may not make is dropped; the other is re-bound and
    # answered with a fresh snapshot, each echoing its subscribe id.
    refused = await live.until("error", vault["id"])
    assert refused["payload"] == {"code": "FORBIDDEN", "message": "only admins may read vault"}
    fresh = await live.until("snapshot", posts["id"])
    assert fresh["payload"]["subscription_id"] == posts["payload"]["subscription_id"]
    assert [d["id"] for d in fresh["payload"]["docs"]] == [shown["id"]]

    await create(client, "vault", label="more codes")
    await create(client, title="another draft", owner=alice["id"], private=True)
    assert await live.sync() == []
    public = await create(client, title="news")
    got = await live.sync()
    assert [m["payload"]["changes"] for m in got] == [{"inserts": [public]}]
    again = await live.subscribe({"collection": "vault"})
    assert again["payload"]["code"] == "FORBIDDEN"


async def test_a_token_revoked_by_another_process_ends_its_socket(client: Client, project: Path) -> None:
    token = alyx(project, "create-token", "--name", "ops").strip()
    live = await LiveClient.connect(client, f"/api/realtime?token={token}")
    snap = await live.subscribe({"collection": "posts"})
    vault = await live.subscribe({"collection": "vault"})
    assert (snap["type"], vault["type"]) == ("snapshot", "snapshot")

    # A separate process writes the revocation: only the change feed's poller can see it.
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "alyx_cli", "admin", "revoke-token", "ops", "-C", str(project)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    reason = "the token 'ops' was revoked"
    notice = await live.until("error")
    assert notice["payload"] == {"code": "SESSION_REVOKED", "message": f"{reason}. {DROPPED}"}
    dropped = [await live.until("error"), await live.until("error")]
    assert {m["id"] for m in dropped} == {snap["id"], vault["id"]}
    await create(client, "vault", label="after")
    await create(client, title="after")
    assert await live.sync() == []
    refused = await live.subscribe({"collection": "vault"})
    assert refused["payload"] == {"code": "SESSION_REVOKED", "message": f"{reason}. {REFUSED}"}


async def test_an_admin_token_expires_on_an_open_socket(
    client: Client, project: Path, clock: ManualClock
) -> None:
    token = alyx(project, "create-token", "--name", "short", "--expires", "1h").strip()
    live = await LiveClient.connect(client, headers=bearer(token))
    snap = await live.subscribe({"collection": "vault"})
    assert snap["type"] == "snapshot"
    await create(client, "vault", label="inside the hour")
    assert [m["type"] for m in await live.sync()] == ["delta"]

    clock.advance(2 * 3600)
    await create(client, "vault", label="after the hour")
    got = await live.sync()
    assert [m["payload"]["code"] for m in got] == ["TOKEN_EXPIRED"]
    status, body = await call(client, "GET", "/api/collections/vault", token)
    assert (status, body["code"]) == (401, "TOKEN_EXPIRED")


async def test_a_new_role_rebinds_a_live_socket_but_never_resumes_an_expired_one(
    client: Client, project: Path, clock: ManualClock
) -> None:
    alice = await register(client, "alice@example.com")
    live = await LiveClient.connect(client, headers=bearer(alice["access_token"]))
    snap = await live.subscribe({"collection": "posts"})
    assert snap["type"] == "snapshot"

    async def set_role(role: str) -> None:
        root = await login(client, ROOT)  # a token valid at the clock's current time
        status, body = await call(
            client, "PATCH", f"/api/admin/users/{alice['id']}", root["access_token"], json={"role": role}
        )
        assert status == 200, body

    alyx(project, "create", ROOT, "--password-stdin", stdin=PASSWORD + "\n")
    await set_role("editor")
    got = await live.sync()  # a pong comes after the checks of the changes before the ping
    assert [(m["type"], m.get("id")) for m in got] == [("snapshot", snap["id"])]

    clock.advance(16 * 60)  # past auth.jwt.access_ttl (15m): deliveries pause
    await create(client, title="while expired")
    assert [m["payload"]["code"] for m in await live.sync()] == ["TOKEN_EXPIRED"]
    await set_role("user")
    await create(client, title="after the new role")
    # No fresh snapshot for an expired token, whatever changed about its account.
    assert await live.sync() == []
    refused = await live.subscribe({"collection": "posts"})
    assert refused["payload"]["code"] == "TOKEN_EXPIRED"
