"""The last enabled admin account cannot be deleted, demoted or disabled, by anyone.

Sent as the attacks (or accidents) they are: the admin removing themselves through the
admin API and through `DELETE /api/auth/me`, an admin token doing it for them, and two
admins demoting each other at the same moment.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.alyx_server.api.test_auth_admin import ADMIN_EMAIL, admin_client, alyx, call
from tests.alyx_server.auth.support import PASSWORD, AppFactory, register

ADVICE = (
    "it is the last enabled admin account, and without one no one could administer this server; "
    'make another account an admin first (PATCH /api/admin/users/{id} with {"role": "admin"}, '
    "or alyx admin create <email>)"
)


def refusal(action: str, email: str = ADMIN_EMAIL) -> str:
    return f"cannot {action} {email}: {ADVICE}"


async def me(client: Any, token: str) -> dict[str, Any]:
    status, body = await call(client, "GET", "/api/auth/me", token)
    assert status == 200, body
    user: dict[str, Any] = body["user"]
    return user


@pytest.mark.parametrize(
    ("method", "body", "action"),
    [
        ("DELETE", None, "delete"),
        ("PATCH", {"role": "user"}, "demote"),
        ("PATCH", {"disabled": True}, "disable"),
        ("PATCH", {"role": "editor", "disabled": True}, "demote"),
    ],
)
async def test_the_last_admin_cannot_remove_themselves(
    auth_app: AppFactory, tmp_path: Path, method: str, body: dict[str, Any] | None, action: str
) -> None:
    client, root = await admin_client(auth_app, tmp_path)
    await register(client)  # a plain user does not count
    root_id = (await me(client, root))["id"]
    status, answer = await call(client, method, f"/api/admin/users/{root_id}", root, json=body)
    assert (status, answer["code"], answer["error"]) == (409, "LAST_ADMIN", refusal(action))
    user = await me(client, root)
    assert (user["role"], user.get("disabled", False)) == ("admin", False)


async def test_the_last_admin_cannot_delete_their_own_account(auth_app: AppFactory, tmp_path: Path) -> None:
    client, root = await admin_client(auth_app, tmp_path)
    status, answer = await call(client, "DELETE", "/api/auth/me", root, json={"password": PASSWORD})
    assert (status, answer["code"], answer["error"]) == (409, "LAST_ADMIN", refusal("delete"))
    assert (await me(client, root))["role"] == "admin"


async def test_an_admin_token_does_not_count_as_an_admin(auth_app: AppFactory, tmp_path: Path) -> None:
    client, root = await admin_client(auth_app, tmp_path)
    token = alyx(tmp_path / "project", "admin", "create-token", "--name", "ops").strip()
    root_id = (await me(client, root))["id"]
    status, answer = await call(client, "PATCH", f"/api/admin/users/{root_id}", token, json={"role": "user"})
    assert (status, answer["code"], answer["error"]) == (409, "LAST_ADMIN", refusal("demote"))
    status, answer = await call(client, "DELETE", f"/api/admin/users/{root_id}", token)
    assert (status, answer["code"]) == (409, "LAST_ADMIN")


async def test_with_a_second_admin_each_change_is_allowed_until_one_is_left(
    auth_app: AppFactory, tmp_path: Path
) -> None:
    client, root = await admin_client(auth_app, tmp_path)
    ada = await register(client)
    root_id = (await me(client, root))["id"]
    status, _ = await call(client, "PATCH", f"/api/admin/users/{ada.id}", root, json={"role": "admin"})
    assert status == 200
    # A disabled admin does not count either.
    status, _ = await call(client, "PATCH", f"/api/admin/users/{ada.id}", root, json={"disabled": True})
    assert status == 200
    status, answer = await call(client, "DELETE", f"/api/admin/users/{root_id}", root)
    assert (status, answer["code"]) == (409, "LAST_ADMIN")
    status, _ = await call(client, "PATCH", f"/api/admin/users/{ada.id}", root, json={"disabled": False})
    assert status == 200
    # Two enabled admins: root may step down, and then Ada is the last one.
    status, answer = await call(client, "PATCH", f"/api/admin/users/{root_id}", root, json={"role": "user"})
    assert (status, answer["user"]["role"]) == (200, "user")
    status, body = await call(
        client, "POST", "/api/auth/login", json={"email": ada.email, "password": PASSWORD}
    )
    ada_admin = body["tokens"]["access_token"]
    status, answer = await call(client, "DELETE", f"/api/admin/users/{ada.id}", ada_admin)
    assert (status, answer["error"]) == (409, refusal("delete", ada.email))
    status, _ = await call(client, "DELETE", f"/api/admin/users/{root_id}", ada_admin)
    assert status == 204


async def test_two_admins_demoting_each_other_at_once_leave_one(auth_app: AppFactory, tmp_path: Path) -> None:
    client, root = await admin_client(auth_app, tmp_path)
    ada = await register(client)
    root_id = (await me(client, root))["id"]
    status, _ = await call(client, "PATCH", f"/api/admin/users/{ada.id}", root, json={"role": "admin"})
    assert status == 200
    status, body = await call(
        client, "POST", "/api/auth/login", json={"email": ada.email, "password": PASSWORD}
    )
    ada_admin = body["tokens"]["access_token"]
    outcomes = await asyncio.gather(
        call(client, "PATCH", f"/api/admin/users/{root_id}", ada_admin, json={"role": "user"}),
        call(client, "PATCH", f"/api/admin/users/{ada.id}", root, json={"role": "user"}),
        call(client, "DELETE", f"/api/admin/users/{root_id}", root),
        call(client, "DELETE", f"/api/admin/users/{ada.id}", ada_admin),
    )
    statuses = [status for status, _ in outcomes]
    # Whichever change wins, the survivor's own delete (or the demotion aimed at them) meets
    # the last admin (409). The others may pass (a request authenticated just before its
    # sender was demoted may still delete that now plain account), find their sender no
    # longer an admin (401/403) or their target already deleted (404).
    assert 409 in statuses, outcomes
    assert set(statuses) <= {200, 204, 409, 401, 403, 404}, outcomes
    token = alyx(tmp_path / "project", "admin", "create-token", "--name", "check").strip()
    status, body = await call(client, "GET", "/api/admin/users", token)
    admins = [u for u in body["users"] if u["role"] == "admin" and not u["disabled"]]
    assert len(admins) == 1
