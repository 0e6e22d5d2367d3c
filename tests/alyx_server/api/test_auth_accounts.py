"""Registration, login, `me` and rate limits, from the caller's and the attacker's side."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.auth.support import PASSWORD, AppFactory, auth_app, bearer, clock, register, smtp

__all__ = ["auth_app", "clock", "smtp"]

NO_LIMITS = {
    "auth.rate_limit.login": "off",
    "auth.rate_limit.register": "off",
    "auth.rate_limit.reset": "off",
}


async def call(client: Any, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    response = await client.request(method, path, **kwargs)
    body = await response.json() if response.status != 204 else None
    return response.status, body


async def post(client: Any, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    return await call(client, "POST", path, json=body, **kwargs)


async def test_register_answers_201_with_user_and_tokens(auth_app: AppFactory) -> None:
    client = await auth_app()
    status, body = await post(
        client,
        "/api/auth/register",
        {"email": "  Ada@Example.COM ", "password": PASSWORD, "metadata": {"a": 1}},
    )
    assert status == 201, body
    assert set(body["user"]) == {"id", "email", "role", "verified", "metadata", "created_at", "updated_at"}
    assert body["user"] | {"id": "", "created_at": "", "updated_at": ""} == {
        "id": "", "email": "ada@example.com", "role": "user", "verified": False, "metadata": {"a": 1},
        "created_at": "", "updated_at": "",
    }  # fmt: skip
    assert set(body["tokens"]) == {"access_token", "refresh_token", "expires_at", "token_type"}
    # The stored hash is bcrypt, never the password.
    service = client.app[AUTH_SERVICE]
    row = service.db.read_now(lambda c: c.execute("SELECT password_hash FROM _alyx_users").fetchone())
    assert row[0].startswith("$2b$04$") and PASSWORD not in row[0]


async def test_existing_email_in_another_case_is_refused(auth_app: AppFactory) -> None:
    client = await auth_app(**NO_LIMITS)
    await register(client, "ada@example.com")
    status, body = await post(
        client, "/api/auth/register", {"email": "ADA@Example.com", "password": PASSWORD}
    )
    assert (status, body["code"]) == (409, "USER_EXISTS")
    assert body["error"] == "an account with this email already exists"


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("not-an-email", "email must be an email address"),
        (42, "email must be a string"),
        ("a@b", "email must"),
    ],
)
async def test_bad_emails_are_refused(auth_app: AppFactory, email: Any, message: str) -> None:
    client = await auth_app(**NO_LIMITS)
    status, body = await post(client, "/api/auth/register", {"email": email, "password": PASSWORD})
    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    assert body["error"].startswith(message)


async def test_password_policy(auth_app: AppFactory) -> None:
    client = await auth_app(
        **NO_LIMITS, **{"auth.password.min_length": 10, "auth.password.require_number": True}
    )
    cases = [
        ("short1", 400, "PASSWORD_TOO_SHORT", "password must be at least 10 characters long"),
        ("longenoughbutweak", 400, "PASSWORD_TOO_WEAK", "password must contain a digit"),
        ("é" * 37, 400, "PASSWORD_TOO_LONG", "password is 74 bytes long; bcrypt reads at most 72 bytes"),
    ]
    for password, status, code, message in cases:
        got, body = await post(client, "/api/auth/register", {"email": "a@example.com", "password": password})
        assert (got, body["code"]) == (status, code), body
        assert body["error"].startswith(message)
        assert body["details"][0]["field"] == "password"
    # Exactly 72 bytes is accepted, never truncated: a 73rd byte does not log in.
    exact = "1" + "x" * 71
    assert (await post(client, "/api/auth/register", {"email": "a@example.com", "password": exact}))[0] == 201
    status, body = await post(client, "/api/auth/login", {"email": "a@example.com", "password": exact + "y"})
    assert (status, body["code"]) == (400, "PASSWORD_TOO_LONG")


async def test_a_megabyte_password_is_refused_before_hashing(auth_app: AppFactory) -> None:
    client = await auth_app(**NO_LIMITS)
    huge = json.dumps({"email": "a@example.com", "password": "x" * (1024 * 1024)}).encode()
    headers = {"Content-Type": "application/json"}
    for path in ("/api/auth/register", "/api/auth/login"):
        response = await client.post(path, data=io.BytesIO(huge), headers=headers)
        body = await response.json()
        assert (response.status, body["code"]) == (400, "PASSWORD_TOO_LONG"), path
        assert "bcrypt reads at most 72 bytes" in body["error"] or "longer than 72 bytes" in body["error"]
    # And past server.max_body_size the body is not even read.
    client = await auth_app(**NO_LIMITS, **{"server.max_body_size": "64KiB"})
    response = await client.post("/api/auth/register", data=io.BytesIO(huge), headers=headers)
    assert (response.status, (await response.json())["code"]) == (413, "PAYLOAD_TOO_LARGE")


async def test_login_failures_do_not_say_which_part_was_wrong(auth_app: AppFactory) -> None:
    client = await auth_app(**NO_LIMITS)
    await register(client)
    wrong_password = await post(
        client, "/api/auth/login", {"email": "ada@example.com", "password": "nope-nope"}
    )
    unknown_email = await post(
        client, "/api/auth/login", {"email": "eve@example.com", "password": "nope-nope"}
    )
    for status, body in (wrong_password, unknown_email):
        assert (status, body["code"], body["error"]) == (
            401,
            "INVALID_CREDENTIALS",
            "the email or the password is wrong",
        )
    status, body = await post(client, "/api/auth/login", {"email": " ADA@example.com", "password": PASSWORD})
    assert status == 200 and body["user"]["email"] == "ada@example.com"


async def test_brute_force_reaches_429_with_the_default_limits(
    auth_app: AppFactory, clock: ManualClock
) -> None:
    client = await auth_app()  # auth.rate_limit.login: 5/minute
    await register(client)
    guesses = [
        await post(client, "/api/auth/login", {"email": "ada@example.com", "password": f"guess-{i}"})
        for i in range(5)
    ]
    assert [s for s, _ in guesses] == [401] * 5
    response = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    body = await response.json()
    assert (response.status, body["code"]) == (429, "RATE_LIMITED")
    assert body["error"].startswith("too many login attempts (limit 5/minute); try again in")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Per email too: the same account from another address is still limited.
    other_ip = {"X-Forwarded-For": "203.0.113.9"}  # not trusted: the socket address counts
    assert (
        await post(
            client, "/api/auth/login", {"email": "ada@example.com", "password": "x" * 8}, headers=other_ip
        )
    )[0] == 429
    clock.advance(61)
    assert (await post(client, "/api/auth/login", {"email": "ada@example.com", "password": PASSWORD}))[
        0
    ] == 200


async def test_login_limit_counts_per_email_across_addresses(auth_app: AppFactory) -> None:
    client = await auth_app(
        **{"server.trusted_proxies": ["127.0.0.1/32"], "auth.rate_limit.login": "3/minute"}
    )
    await register(client)
    for i in range(3):
        headers = {"X-Forwarded-For": f"198.51.100.{i}"}
        assert (
            await post(
                client,
                "/api/auth/login",
                {"email": "ada@example.com", "password": "wrong-pw"},
                headers=headers,
            )
        )[0] == 401
    status, body = await post(
        client,
        "/api/auth/login",
        {"email": "ada@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.77"},
    )
    assert (status, body["code"]) == (429, "RATE_LIMITED")
    # Another account from a fresh address is not affected.
    headers = {"X-Forwarded-For": "198.51.100.78"}
    assert (
        await post(
            client, "/api/auth/login", {"email": "bob@example.com", "password": "wrong-pw"}, headers=headers
        )
    )[0] == 401


async def test_rate_limits_off(auth_app: AppFactory) -> None:
    client = await auth_app(**NO_LIMITS)
    await register(client)
    for _ in range(12):
        assert (await post(client, "/api/auth/login", {"email": "ada@example.com", "password": "wrong-pw"}))[
            0
        ] == 401


async def test_register_limit_per_address(auth_app: AppFactory) -> None:
    client = await auth_app()  # 3/minute
    for i in range(3):
        await register(client, f"user{i}@example.com")
    status, body = await post(
        client, "/api/auth/register", {"email": "user9@example.com", "password": PASSWORD}
    )
    assert (status, body["code"]) == (429, "RATE_LIMITED")
    assert "registrations" in body["error"]


async def test_registration_closed(auth_app: AppFactory) -> None:
    client = await auth_app(**{"auth.allow_registration": False})
    status, body = await post(client, "/api/auth/register", {"email": "a@example.com", "password": PASSWORD})
    assert (status, body["code"]) == (403, "REGISTRATION_CLOSED")
    assert body["error"] == "registration is closed on this server"


async def test_me_requires_a_token(auth_app: AppFactory) -> None:
    client = await auth_app()
    status, body = await call(client, "GET", "/api/auth/me")
    assert (status, body["code"]) == (401, "UNAUTHORIZED")
    assert "sign in first" in body["error"]


async def test_user_cannot_set_own_role_or_app_metadata(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    for body in ({"role": "admin"}, {"app_metadata": {"plan": "pro"}}, {"metadata": {}, "verified": True}):
        status, answer = await call(client, "PATCH", "/api/auth/me", headers=bearer(ada.access), json=body)
        assert (status, answer["code"]) == (403, "FORBIDDEN"), body
        assert answer["error"].startswith("only an administrator can change")
    status, answer = await call(
        client, "PATCH", "/api/auth/me", headers=bearer(ada.access), json={"email": "x@y.z"}
    )
    assert (status, answer["code"]) == (400, "VALIDATION_ERROR")
    assert "accepts only metadata" in answer["error"]
    status, answer = await call(client, "GET", "/api/auth/me", headers=bearer(ada.access))
    assert answer["user"]["role"] == "user"
    # The rules' view of the caller is unchanged too.
    service = client.app[AUTH_SERVICE]
    auth = service.authenticate(ada.access)
    assert (auth["role"], auth["app_metadata"], auth.is_admin) == ("user", {}, False)


async def test_patch_me_replaces_metadata(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    status, body = await call(
        client, "PATCH", "/api/auth/me", headers=bearer(ada.access), json={"metadata": {"name": "Ada"}}
    )
    assert status == 200 and body["user"]["metadata"] == {"name": "Ada"}
    status, body = await call(
        client, "PATCH", "/api/auth/me", headers=bearer(ada.access), json={"metadata": [1]}
    )
    assert (status, body["error"]) == (400, "metadata must be a JSON object")


async def test_password_change_revokes_other_sessions(auth_app: AppFactory) -> None:
    client = await auth_app(**NO_LIMITS)
    ada = await register(client)
    status, other = await post(client, "/api/auth/login", {"email": ada.email, "password": PASSWORD})
    body = {"current_password": "wrong-password", "new_password": "a brand new password"}
    status, answer = await post(client, "/api/auth/password", body, headers=bearer(ada.access))
    assert (status, answer["code"], answer["error"]) == (
        401,
        "INVALID_CREDENTIALS",
        "current_password is wrong",
    )
    body["current_password"] = PASSWORD
    assert (await post(client, "/api/auth/password", body, headers=bearer(ada.access)))[0] == 204
    assert (await call(client, "GET", "/api/auth/me", headers=bearer(ada.access)))[0] == 200
    status, answer = await call(
        client, "GET", "/api/auth/me", headers=bearer(other["tokens"]["access_token"])
    )
    assert (status, answer["code"]) == (401, "SESSION_REVOKED")
    assert (await post(client, "/api/auth/login", {"email": ada.email, "password": PASSWORD}))[0] == 401
    assert (await post(client, "/api/auth/login", {"email": ada.email, "password": "a brand new password"}))[
        0
    ] == 200


async def test_delete_me_needs_the_password(auth_app: AppFactory) -> None:
    client = await auth_app(**NO_LIMITS)
    ada = await register(client)
    status, body = await call(
        client, "DELETE", "/api/auth/me", headers=bearer(ada.access), json={"password": "nope-nope"}
    )
    assert (status, body["code"]) == (401, "INVALID_CREDENTIALS")
    assert (
        await call(client, "DELETE", "/api/auth/me", headers=bearer(ada.access), json={"password": PASSWORD})
    )[0] == 204
    status, body = await call(client, "GET", "/api/auth/me", headers=bearer(ada.access))
    assert (status, body["code"]) == (401, "SESSION_REVOKED")
    assert (await post(client, "/api/auth/refresh", {"refresh_token": ada.refresh}))[1][
        "code"
    ] == "INVALID_TOKEN"
    await register(client)  # the address is free again


async def test_require_verification_blocks_login_until_verified(auth_app: AppFactory) -> None:
    client = await auth_app(**NO_LIMITS, **{"auth.require_verification": True})
    status, body = await post(
        client, "/api/auth/register", {"email": "ada@example.com", "password": PASSWORD}
    )
    assert status == 201 and body["tokens"] is None
    status, body = await post(client, "/api/auth/login", {"email": "ada@example.com", "password": PASSWORD})
    assert (status, body["code"]) == (403, "EMAIL_NOT_VERIFIED")
    # A wrong password still answers 401: the 403 only tells the account holder.
    status, body = await post(client, "/api/auth/login", {"email": "ada@example.com", "password": "wrong-pw"})
    assert (status, body["code"]) == (401, "INVALID_CREDENTIALS")
