"""Verification and password reset through a real SMTP server (aiosmtpd, in this process)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from alyx_server.api.auth import AUTH_SERVICE
from alyx_server.app import create_app
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.auth.support import (
    NO_LIMITS,
    PASSWORD,
    AppFactory,
    Mailbox,
    bearer,
    make_auth_settings,
    register,
)

NEW_PASSWORD = "another good password"


async def post(client: Any, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    response = await client.post(path, json=body, **kwargs)
    return response.status, (await response.json() if response.status != 204 else None)


async def settle(client: Any) -> None:
    """Wait for the emails the server is sending in the background."""
    await client.app[AUTH_SERVICE].drain()


async def test_reset_request_answers_the_same_for_unknown_and_known_emails(
    auth_app: AppFactory, smtp: Mailbox
) -> None:
    client = await auth_app(**NO_LIMITS)
    await register(client)
    unknown = await post(client, "/api/auth/reset/request", {"email": "nobody@example.com"})
    known = await post(client, "/api/auth/reset/request", {"email": "ADA@example.com"})
    assert unknown == known
    assert known[0] == 202
    await settle(client)
    assert [m["To"] for m in smtp.messages] == ["ada@example.com"]
    assert smtp.messages[0]["Subject"] == "Reset your password (alyx)"


async def test_reset_sets_the_password_revokes_sessions_and_works_once(
    auth_app: AppFactory, smtp: Mailbox
) -> None:
    client = await auth_app(**NO_LIMITS)
    ada = await register(client)
    await post(client, "/api/auth/reset/request", {"email": ada.email})
    code = await smtp.code(0)
    assert (await post(client, "/api/auth/reset", {"token": code, "new_password": NEW_PASSWORD}))[0] == 204
    status, body = await post(client, "/api/auth/reset", {"token": code, "new_password": "yet another one"})
    assert (status, body["code"]) == (401, "INVALID_TOKEN")
    assert body["error"] == "this password reset token is invalid or was already used; request a new one"
    me = await client.get("/api/auth/me", headers=bearer(ada.access))
    assert (me.status, (await me.json())["code"]) == (401, "SESSION_REVOKED")
    assert (await post(client, "/api/auth/login", {"email": ada.email, "password": PASSWORD}))[0] == 401
    status, body = await post(client, "/api/auth/login", {"email": ada.email, "password": NEW_PASSWORD})
    assert status == 200 and body["user"]["verified"] is True  # the code reached the inbox


async def test_reset_token_after_expiry_is_refused(
    auth_app: AppFactory, smtp: Mailbox, clock: ManualClock
) -> None:
    client = await auth_app(**NO_LIMITS)
    ada = await register(client)
    await post(client, "/api/auth/reset/request", {"email": ada.email})
    code = await smtp.code(0)
    clock.advance(3600)
    status, body = await post(client, "/api/auth/reset", {"token": code, "new_password": NEW_PASSWORD})
    assert (status, body["code"]) == (401, "TOKEN_EXPIRED")
    assert body["error"] == "this password reset token has expired; request a new one"
    assert (await post(client, "/api/auth/login", {"email": ada.email, "password": PASSWORD}))[0] == 200


async def test_a_newer_reset_code_retires_the_older_one(auth_app: AppFactory, smtp: Mailbox) -> None:
    client = await auth_app(**NO_LIMITS)
    ada = await register(client)
    await post(client, "/api/auth/reset/request", {"email": ada.email})
    first = await smtp.code(0)
    await post(client, "/api/auth/reset/request", {"email": ada.email})
    second = await smtp.code(1)
    assert (await post(client, "/api/auth/reset", {"token": first, "new_password": NEW_PASSWORD}))[0] == 401
    assert (await post(client, "/api/auth/reset", {"token": second, "new_password": NEW_PASSWORD}))[0] == 204


async def test_reset_with_a_weak_password_keeps_the_code(auth_app: AppFactory, smtp: Mailbox) -> None:
    client = await auth_app(**NO_LIMITS)
    ada = await register(client)
    await post(client, "/api/auth/reset/request", {"email": ada.email})
    code = await smtp.code(0)
    status, body = await post(client, "/api/auth/reset", {"token": code, "new_password": "short"})
    assert (status, body["code"]) == (400, "PASSWORD_TOO_SHORT")
    assert body["details"][0]["field"] == "new_password"
    assert (await post(client, "/api/auth/reset", {"token": code, "new_password": NEW_PASSWORD}))[0] == 204


async def test_reset_requests_are_rate_limited_per_email(auth_app: AppFactory) -> None:
    client = await auth_app(**{"server.trusted_proxies": ["127.0.0.1/32"]})  # reset: 3/hour
    for i in range(3):
        headers = {"X-Forwarded-For": f"198.51.100.{i}"}
        assert (await post(client, "/api/auth/reset/request", {"email": "ada@example.com"}, headers=headers))[
            0
        ] == 202
    response = await client.post(
        "/api/auth/reset/request",
        json={"email": "ada@example.com"},
        headers={"X-Forwarded-For": "198.51.100.9"},
    )
    assert (response.status, (await response.json())["code"]) == (429, "RATE_LIMITED")
    assert int(response.headers["Retry-After"]) > 3000


async def test_verification_flow(auth_app: AppFactory, smtp: Mailbox, clock: ManualClock) -> None:
    client = await auth_app(**NO_LIMITS, **{"auth.require_verification": True})
    status, body = await post(
        client, "/api/auth/register", {"email": "ada@example.com", "password": PASSWORD}
    )
    assert status == 201 and body["tokens"] is None
    code = await smtp.code(0)
    assert smtp.messages[0]["Subject"] == "Verify your email address (alyx)"
    status, body = await post(client, "/api/auth/verify", {"token": code})
    assert status == 200 and body["user"]["verified"] is True
    status, body = await post(client, "/api/auth/verify", {"token": code})
    assert (status, body["code"]) == (401, "INVALID_TOKEN")
    assert (await post(client, "/api/auth/login", {"email": "ada@example.com", "password": PASSWORD}))[
        0
    ] == 200


async def test_verification_code_expires_after_a_day(
    auth_app: AppFactory, smtp: Mailbox, clock: ManualClock
) -> None:
    client = await auth_app(**NO_LIMITS, **{"auth.require_verification": True})
    await post(client, "/api/auth/register", {"email": "ada@example.com", "password": PASSWORD})
    code = await smtp.code(0)
    clock.advance(24 * 3600)
    status, body = await post(client, "/api/auth/verify", {"token": code})
    assert (status, body["code"]) == (401, "TOKEN_EXPIRED")
    # A new code can be asked for by address, without signing in.
    assert (await post(client, "/api/auth/verify/request", {"email": "ada@example.com"}))[0] == 202
    assert (await post(client, "/api/auth/verify", {"token": await smtp.code(1)}))[0] == 200


async def test_signed_in_user_asks_for_a_verification_email(auth_app: AppFactory, smtp: Mailbox) -> None:
    client = await auth_app(**NO_LIMITS)
    ada = await register(client)
    response = await client.post("/api/auth/verify/request", headers=bearer(ada.access))
    assert response.status == 202
    await settle(client)
    assert [m["To"] for m in smtp.messages] == ["ada@example.com"]


async def test_without_smtp_the_email_goes_to_the_log(
    tmp_path: Path, clock: ManualClock, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_auth_settings(tmp_path / "p", None, **NO_LIMITS)
    client = await aiohttp_client(create_app(settings, clock=clock))
    await register(client)
    with caplog.at_level(logging.WARNING, logger="alyx.mail"):
        assert (await post(client, "/api/auth/reset/request", {"email": "ada@example.com"}))[0] == 202
        await settle(client)
    [record] = [r for r in caplog.records if r.name == "alyx.mail"]
    text = record.getMessage()
    assert "email not sent (auth.smtp.host is empty); to ada@example.com: Reset your password" in text
    assert "Your password reset code:" in text
