"""Sessions from the attacker's side: rotation, stolen refresh tokens, logout, the cache."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import pytest

from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.scenarios import Names, Scenario, run_scenario
from tests.alyx_server.auth.support import PASSWORD, AppFactory, bearer, register, signed_in


async def call(client: Any, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    response = await client.request(method, path, **kwargs)
    body = await response.json() if response.status != 204 else None
    return response.status, body


async def refresh(client: Any, token: str) -> tuple[int, Any]:
    return await call(client, "POST", "/api/auth/refresh", json={"refresh_token": token})


async def login(client: Any, email: str = "ada@example.com") -> dict[str, Any]:
    status, body = await call(client, "POST", "/api/auth/login", json={"email": email, "password": PASSWORD})
    assert status == 200, body
    tokens: dict[str, Any] = body["tokens"]
    return tokens


async def me(client: Any, access: str) -> tuple[int, Any]:
    return await call(client, "GET", "/api/auth/me", headers=bearer(access))


def a_week_later(names: Names) -> None:
    names["clock"].advance(7 * 86400 + 1)


SCENARIOS = [
    *(
        Scenario(f"refresh with {token!r:.20}", "POST", "/api/auth/refresh", {"refresh_token": token},
                 status=401, code="INVALID_TOKEN")
        for token in ("nope", "x" * 10_000, 42, None, "")
    ),
    Scenario("logout with an unknown token", "POST", "/api/auth/logout", {"refresh_token": "nope"},
             status=401, code="INVALID_TOKEN"),
    Scenario("refresh after the refresh token expired", "POST", "/api/auth/refresh",
             {"refresh_token": "{ada_refresh}"}, settings={"auth.jwt.refresh_ttl": "7d"}, before=a_week_later,
             status=401, code="TOKEN_EXPIRED", message="log in again"),
]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
async def test_scenario(auth_app: AppFactory, clock: ManualClock, scenario: Scenario) -> None:
    client = await auth_app(**scenario.settings)
    await run_scenario(client, scenario, await signed_in(client) | {"clock": clock})


async def test_refresh_rotates_and_retires_the_old_token(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    status, body = await refresh(client, ada.refresh)
    assert status == 200, body
    tokens = body["tokens"]
    assert tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"] != ada.refresh and tokens["access_token"] != ada.access
    assert body["user"]["id"] == ada.id
    # The new pair works; the old access token too (same session) until it expires.
    assert (await me(client, tokens["access_token"]))[0] == 200
    assert (await me(client, ada.access))[0] == 200
    # Chained refreshes keep working.
    status, body = await refresh(client, tokens["refresh_token"])
    assert status == 200


async def test_stolen_refresh_token_used_after_the_owner_revokes_the_family(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    stolen = ada.refresh
    status, owner = await refresh(client, ada.refresh)  # the owner rotates first
    assert status == 200
    status, body = await refresh(client, stolen)  # the thief presents the retired token
    assert (status, body["code"]) == (401, "TOKEN_REUSED")
    assert "already used" in body["error"] and "log in again" in body["error"]
    # Both holders are logged out: the owner's fresh tokens are dead too.
    status, body = await refresh(client, owner["tokens"]["refresh_token"])
    assert (status, body["code"]) == (401, "SESSION_REVOKED")
    for access in (ada.access, owner["tokens"]["access_token"]):
        status, body = await me(client, access)
        assert (status, body["code"]) == (401, "SESSION_REVOKED")


async def test_thief_refreshing_first_is_logged_out_when_the_owner_comes_back(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    status, thief = await refresh(client, ada.refresh)
    assert status == 200
    status, body = await refresh(client, ada.refresh)  # the owner's copy is now retired
    assert (status, body["code"]) == (401, "TOKEN_REUSED")
    status, body = await refresh(client, thief["tokens"]["refresh_token"])
    assert (status, body["code"]) == (401, "SESSION_REVOKED")
    status, body = await me(client, thief["tokens"]["access_token"])
    assert (status, body["code"]) == (401, "SESSION_REVOKED")


async def test_reuse_revokes_only_that_family(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    laptop = await login(client)
    await refresh(client, ada.refresh)
    assert (await refresh(client, ada.refresh))[1]["code"] == "TOKEN_REUSED"
    assert (await me(client, laptop["access_token"]))[0] == 200
    assert (await refresh(client, laptop["refresh_token"]))[0] == 200


async def test_logout_kills_access_and_refresh_tokens_at_once(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    other = await login(client)
    assert (await me(client, ada.access))[0] == 200  # cached as live
    status, _ = await call(client, "POST", "/api/auth/logout", json={"refresh_token": ada.refresh})
    assert status == 204
    status, body = await me(client, ada.access)
    assert (status, body["code"]) == (401, "SESSION_REVOKED")
    status, body = await refresh(client, ada.refresh)
    assert (status, body["code"]) == (401, "SESSION_REVOKED")
    assert "logged out or revoked" in body["error"]
    # Another sign-in of the same account is untouched.
    assert (await me(client, other["access_token"]))[0] == 200


async def test_requests_with_a_token_run_no_query_once_cached(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    cache = client.app[AUTH_SERVICE].cache
    assert (await me(client, ada.access))[0] == 200
    loads = cache.loads
    for _ in range(20):
        assert (await me(client, ada.access))[0] == 200
        assert (await call(client, "GET", "/api/collections/notes", headers=bearer(ada.access)))[0] == 200
    assert cache.loads == loads
    # A change to the account drops it: the next request reads it again, once.
    await call(client, "PATCH", "/api/auth/me", headers=bearer(ada.access), json={"metadata": {"n": 1}})
    assert (await me(client, ada.access))[1]["user"]["metadata"] == {"n": 1}
    assert cache.loads == loads + 1


async def test_revocation_by_another_process_reaches_the_cache(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    assert (await me(client, ada.access))[0] == 200
    path = client.app[AUTH_SERVICE].db.path
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE _alyx_sessions SET revoked_at = '2000-01-01T00:00:00.000Z'")
    await client.app[AUTH_SERVICE].db.poll_changes()  # the poller's periodic job, done now
    status, body = await me(client, ada.access)
    assert (status, body["code"]) == (401, "SESSION_REVOKED")
