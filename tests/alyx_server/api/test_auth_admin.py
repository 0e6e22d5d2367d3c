"""Administrators: `/api/admin/users`, admin and deploy tokens, disabled accounts."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.scenarios import Scenario, run_scenario
from tests.alyx_server.auth.support import PASSWORD, AppFactory, bearer, register, signed_in

ADMIN_EMAIL = "root@example.com"


def alyx(project: Path, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, [*args, "-C", str(project)], input=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


async def call(
    client: Any, method: str, path: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    headers = bearer(token) if token else {}
    response = await client.request(method, path, headers=headers, **kwargs)
    return response.status, (await response.json() if response.status != 204 else None)


async def admin_client(auth_app: AppFactory, tmp_path: Path) -> tuple[Any, str]:
    """The application, after `alyx admin create` made an administrator; and their token."""
    client = await auth_app(**{"auth.rate_limit.login": "off"})
    alyx(tmp_path / "project", "admin", "create", ADMIN_EMAIL, "--password-stdin", stdin=PASSWORD + "\n")
    status, body = await call(
        client, "POST", "/api/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}
    )
    assert status == 200, body
    assert body["user"]["role"] == "admin" and body["user"]["verified"] is True
    return client, body["tokens"]["access_token"]


# Only administrators reach the admin API (the refusals need no administrator to exist).
SCENARIOS = [
    Scenario("list users anonymously", "GET", "/api/admin/users", status=401, code="UNAUTHORIZED"),
    Scenario("list users as a user", "GET", "/api/admin/users", token="ada",
             status=403, code="FORBIDDEN", message="needs an administrator"),
    Scenario("a user promotes themself", "PATCH", "/api/admin/users/{ada_id}", {"role": "admin"}, token="ada",
             status=403, code="FORBIDDEN"),
]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
async def test_scenario(auth_app: AppFactory, scenario: Scenario) -> None:
    client = await auth_app(**scenario.settings)
    await run_scenario(client, scenario, await signed_in(client))


async def test_admin_manages_users(auth_app: AppFactory, tmp_path: Path) -> None:
    client, root = await admin_client(auth_app, tmp_path)
    ada = await register(client)
    status, body = await call(client, "GET", "/api/admin/users?limit=1", root)
    assert status == 200 and body["total"] == 2 and body["limit"] == 1 and len(body["users"]) == 1
    assert "password_hash" not in body["users"][0] and "app_metadata" in body["users"][0]
    status, body = await call(
        client,
        "POST",
        "/api/admin/users",
        root,
        json={"email": "Bob@Example.com", "password": PASSWORD, "role": "editor"},
    )
    assert status == 201 and body["user"]["email"] == "bob@example.com" and body["user"]["role"] == "editor"
    patch = {"role": "moderator", "app_metadata": {"plan": "pro"}}
    status, body = await call(client, "PATCH", f"/api/admin/users/{ada.id}", root, json=patch)
    assert status == 200 and body["user"]["app_metadata"] == {"plan": "pro"}
    # Rules see the change on Ada's existing token at once.
    auth = client.app[AUTH_SERVICE].authenticate(ada.access)
    assert (auth["role"], auth["app_metadata"]) == ("moderator", {"plan": "pro"})
    status, body = await call(
        client, "PATCH", f"/api/admin/users/{ada.id}", root, json={"password_hash": "x"}
    )
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    status, body = await call(client, "PATCH", f"/api/admin/users/{ada.id}", root, json={"role": "Admin!"})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    status, body = await call(client, "GET", "/api/admin/users?email=example.com&offset=1", root)
    assert status == 200 and body["total"] == 3 and len(body["users"]) == 2
    status, body = await call(client, "GET", "/api/admin/users/nope", root)
    assert (status, body["code"]) == (404, "USER_NOT_FOUND")


async def test_disabled_account_is_refused_at_once(auth_app: AppFactory, tmp_path: Path) -> None:
    client, root = await admin_client(auth_app, tmp_path)
    ada = await register(client)
    assert (await call(client, "GET", "/api/auth/me", ada.access))[0] == 200  # cached
    status, _ = await call(client, "PATCH", f"/api/admin/users/{ada.id}", root, json={"disabled": True})
    assert status == 200
    status, body = await call(client, "GET", "/api/auth/me", ada.access)
    assert (status, body["code"]) == (403, "ACCOUNT_DISABLED")
    assert body["error"] == "this account is disabled; contact the administrator"
    status, body = await call(client, "GET", "/api/collections/notes", ada.access)
    assert (status, body["code"]) == (403, "ACCOUNT_DISABLED")
    status, body = await call(client, "POST", "/api/auth/refresh", json={"refresh_token": ada.refresh})
    assert (status, body["code"]) == (403, "ACCOUNT_DISABLED")
    status, body = await call(
        client, "POST", "/api/auth/login", json={"email": ada.email, "password": PASSWORD}
    )
    assert (status, body["code"]) == (403, "ACCOUNT_DISABLED")
    # Re-enabled, the old sessions stay revoked: a fresh login is needed.
    await call(client, "PATCH", f"/api/admin/users/{ada.id}", root, json={"disabled": False})
    status, body = await call(client, "GET", "/api/auth/me", ada.access)
    assert (status, body["code"]) == (401, "SESSION_REVOKED")


async def test_deleted_account_token_is_refused(auth_app: AppFactory, tmp_path: Path) -> None:
    client, root = await admin_client(auth_app, tmp_path)
    ada = await register(client)
    assert (await call(client, "DELETE", f"/api/admin/users/{ada.id}", root))[0] == 204
    status, body = await call(client, "GET", "/api/auth/me", ada.access)
    assert (status, body["code"]) == (401, "SESSION_REVOKED")
    assert (await call(client, "DELETE", f"/api/admin/users/{ada.id}", root))[0] == 404


async def test_admin_and_deploy_tokens(auth_app: AppFactory, tmp_path: Path, clock: ManualClock) -> None:
    client = await auth_app()
    project = tmp_path / "project"
    admin_token = alyx(project, "admin", "create-token", "--name", "ops").strip()
    deploy_token = alyx(project, "admin", "create-token", "--name", "ci", "--kind", "deploy").strip()
    short = alyx(project, "admin", "create-token", "--name", "short", "--expires", "1h").strip()
    assert admin_token.startswith("alyx_admin_") and deploy_token.startswith("alyx_deploy_")
    assert (await call(client, "GET", "/api/admin/users", admin_token))[0] == 200
    status, body = await call(client, "GET", "/api/admin/users", deploy_token)
    assert (status, body["code"]) == (403, "FORBIDDEN")
    status, body = await call(client, "GET", "/api/auth/me", admin_token)
    assert (status, body["error"]) == (403, "admin and deploy tokens have no account of their own")
    status, body = await call(client, "GET", "/api/admin/users", admin_token[:-2] + "xx")
    assert (status, body["code"]) == (401, "INVALID_TOKEN")
    alyx(project, "admin", "revoke-token", "ops")
    status, body = await call(client, "GET", "/api/admin/users", admin_token)
    assert (status, body["code"], body["error"]) == (401, "SESSION_REVOKED", "the token 'ops' was revoked")
    assert (await call(client, "GET", "/api/admin/users", short))[0] == 200
    # The CLI stamped the expiry with the real time when it ran, some seconds after the
    # server's clock was set: move past an hour from now, not from the clock's start.
    clock.set(datetime.now(UTC) + timedelta(hours=1, seconds=1))
    status, body = await call(client, "GET", "/api/admin/users", short)
    assert (status, body["code"]) == (401, "TOKEN_EXPIRED")


async def test_promotion_takes_effect_on_the_live_token(auth_app: AppFactory, tmp_path: Path) -> None:
    client = await auth_app()
    ada = await register(client)
    assert (await call(client, "GET", "/api/admin/users", ada.access))[0] == 403
    alyx(tmp_path / "project", "admin", "create", ada.email, "--promote")
    await client.app[AUTH_SERVICE].db.poll_changes()  # another process wrote: the poller's job
    assert (await call(client, "GET", "/api/admin/users", ada.access))[0] == 200


async def test_start_says_how_to_create_the_first_admin(
    auth_app: AppFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hint = "no admin account exists yet; create one with: alyx admin create <email>"
    with caplog.at_level(logging.WARNING, logger="alyx.auth"):
        await auth_app()
    assert hint in [r.getMessage() for r in caplog.records]
    caplog.clear()
    alyx(tmp_path / "project", "admin", "create", ADMIN_EMAIL, "--password-stdin", stdin=PASSWORD)
    with caplog.at_level(logging.WARNING, logger="alyx.auth"):
        await auth_app()
    assert hint not in [r.getMessage() for r in caplog.records]
