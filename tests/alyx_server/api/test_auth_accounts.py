"""Registration, login, `me` and rate limits, from the caller's and the attacker's side.

`SCENARIOS` are single requests (each on a fresh application where `ada@example.com` has
registered); the tests below them are flows of several requests or read the database.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.scenarios import Scenario, run_scenario
from tests.alyx_server.auth.support import NO_LIMITS, PASSWORD, AppFactory, bearer, register, signed_in

POLICY = NO_LIMITS | {"auth.password.min_length": 10, "auth.password.require_number": True}
REGISTER = "/api/auth/register"
LOGIN = "/api/auth/login"
ME = "/api/auth/me"


def bad_email(email: Any, message: str) -> Scenario:
    return Scenario(
        f"register with email {email!r}", "POST", REGISTER, {"email": email, "password": PASSWORD},
        settings=NO_LIMITS, status=400, code="VALIDATION_ERROR", error_starts=message,
    )  # fmt: skip


def weak_password(password: str, code: str, message: str) -> Scenario:
    return Scenario(
        f"register with password {code}", "POST", REGISTER, {"email": "a@example.com", "password": password},
        settings=POLICY, seed=False, status=400, code=code, error_starts=message,
        expect={"details.0.field": "password"},
    )  # fmt: skip


def wrong_login(name: str, email: str) -> Scenario:
    return Scenario(
        name, "POST", LOGIN, {"email": email, "password": "nope-nope"}, settings=NO_LIMITS,
        status=401, code="INVALID_CREDENTIALS", error="the email or the password is wrong",
    )  # fmt: skip


def admin_only_change(body: dict[str, Any]) -> Scenario:
    return Scenario(
        f"PATCH me {sorted(body)}", "PATCH", ME, body, token="ada",
        status=403, code="FORBIDDEN", error_starts="only an administrator can change",
    )  # fmt: skip


SCENARIOS = [
    Scenario(
        "existing email in another case", "POST", REGISTER,
        {"email": "ADA@Example.com", "password": PASSWORD}, settings=NO_LIMITS,
        status=409, code="USER_EXISTS", error="an account with this email already exists",
    ),
    bad_email("not-an-email", "email must be an email address"),
    bad_email(42, "email must be a string"),
    bad_email("a@b", "email must"),
    weak_password("short1", "PASSWORD_TOO_SHORT", "password must be at least 10 characters long"),
    weak_password("longenoughbutweak", "PASSWORD_TOO_WEAK", "password must contain a digit"),
    weak_password("é" * 37, "PASSWORD_TOO_LONG", "password is 74 bytes long; bcrypt reads at most 72 bytes"),
    # Login failures do not say which part was wrong.
    wrong_login("login with a wrong password", "ada@example.com"),
    wrong_login("login with an unknown email", "eve@example.com"),
    Scenario(
        "login email is trimmed and case-folded", "POST", LOGIN,
        {"email": " ADA@example.com", "password": PASSWORD}, settings=NO_LIMITS,
        expect={"user.email": "ada@example.com"},
    ),
    Scenario(
        "registration closed", "POST", REGISTER, {"email": "a@example.com", "password": PASSWORD},
        settings={"auth.allow_registration": False}, seed=False,
        status=403, code="REGISTRATION_CLOSED", error="registration is closed on this server",
    ),
    Scenario("me requires a token", "GET", ME, status=401, code="UNAUTHORIZED", message="sign in first"),
    admin_only_change({"role": "admin"}),
    admin_only_change({"app_metadata": {"plan": "pro"}}),
    admin_only_change({"metadata": {}, "verified": True}),
    Scenario(
        "PATCH me accepts only metadata", "PATCH", ME, {"email": "x@y.z"}, token="ada",
        status=400, code="VALIDATION_ERROR", message="accepts only metadata",
    ),
    Scenario(
        "PATCH me replaces metadata", "PATCH", ME, {"metadata": {"name": "Ada"}}, token="ada",
        expect={"user.metadata": {"name": "Ada"}},
    ),
    Scenario(
        "PATCH me metadata not an object", "PATCH", ME, {"metadata": [1]}, token="ada",
        status=400, code="VALIDATION_ERROR", error="metadata must be a JSON object",
    ),
    Scenario(
        "password change with a wrong current password", "POST", "/api/auth/password",
        {"current_password": "wrong-password", "new_password": "a brand new password"}, token="ada",
        status=401, code="INVALID_CREDENTIALS", error="current_password is wrong",
    ),
    Scenario(
        "delete me with a wrong password", "DELETE", ME, {"password": "nope-nope"}, token="ada",
        settings=NO_LIMITS, status=401, code="INVALID_CREDENTIALS",
    ),
]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
async def test_scenario(auth_app: AppFactory, scenario: Scenario) -> None:
    client = await auth_app(**scenario.settings)
    await run_scenario(client, scenario, await signed_in(client) if scenario.seed else {})


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


async def test_a_72_byte_password_is_accepted_and_never_truncated(auth_app: AppFactory) -> None:
    client = await auth_app(**POLICY)
    # Exactly 72 bytes is accepted, never truncated: a 73rd byte does not log in.
    exact = "1" + "x" * 71
    assert (await post(client, REGISTER, {"email": "a@example.com", "password": exact}))[0] == 201
    status, body = await post(client, LOGIN, {"email": "a@example.com", "password": exact + "y"})
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


async def test_refused_changes_of_me_leave_the_account_as_it_was(auth_app: AppFactory) -> None:
    client = await auth_app()
    ada = await register(client)
    for body in ({"role": "admin"}, {"app_metadata": {"plan": "pro"}}, {"metadata": {}, "verified": True}):
        assert (await call(client, "PATCH", ME, headers=bearer(ada.access), json=body))[0] == 403
    _status, answer = await call(client, "GET", ME, headers=bearer(ada.access))
    assert answer["user"]["role"] == "user"
    # The rules' view of the caller is unchanged too.
    service = client.app[AUTH_SERVICE]
    auth = service.authenticate(ada.access)
    assert (auth["role"], auth["app_metadata"], auth.is_admin) == ("user", {}, False)


async def test_password_change_revokes_other_sessions(auth_app: AppFactory) -> None:
    client = await auth_app(**NO_LIMITS)
    ada = await register(client)
    status, other = await post(client, "/api/auth/login", {"email": ada.email, "password": PASSWORD})
    body = {"current_password": PASSWORD, "new_password": "a brand new password"}
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


async def test_delete_me_revokes_everything_and_frees_the_address(auth_app: AppFactory) -> None:
    client = await auth_app(**NO_LIMITS)
    ada = await register(client)
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
