"""OAuth / OpenID Connect sign-in against a real OpenID provider on loopback
(tests/alyx_server/auth/oidc_provider.py: Authlib's authorization server, RS256 keys,
a JWKS endpoint), with the attacks each refused, from the attacker's side."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from click.testing import CliRunner
from joserfc.jwk import OctKey, RSAKey

from alyx_cli.main import cli
from alyx_server.app import create_app
from alyx_server.config import load_settings
from alyx_server.errors import ConfigError
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.auth.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider
from tests.alyx_server.auth.support import PASSWORD, bearer, register
from tests.schemas import NOTES
from tests.servers import free_port

APP = "http://127.0.0.1:5173/signed-in"
Client = TestClient[Any, Any]


@pytest.fixture
async def provider() -> AsyncIterator[OidcProvider]:
    found = OidcProvider()
    await found.start(free_port())
    try:
        yield found
    finally:
        await found.stop()


def project_with(root: Path, issuer: str, extra: str = "", redirect: str = APP) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(NOTES, encoding="utf-8")
    (root / "alyx.yaml").write_text(
        "auth:\n"
        "  bcrypt_cost: 4\n"
        "  oauth:\n"
        f"    allowed_redirects: [{redirect}]\n"
        f"{extra}"
        "    providers:\n"
        "      test:\n"
        f"        issuer: {issuer}\n"
        f"        client_id: {CLIENT_ID}\n"
        "        client_secret: ${TEST_OIDC_SECRET}\n",
        encoding="utf-8",
    )
    return root


ENV = {"TEST_OIDC_SECRET": CLIENT_SECRET}
AppFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def oauth_app(
    tmp_path: Path,
    provider: OidcProvider,
    clock: ManualClock,
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> AppFactory:
    async def build(extra: str = "", **overrides: object) -> Client:
        root = project_with(tmp_path / "project", provider.url, extra)
        settings = load_settings(root, mode="dev", environ=ENV, overrides=overrides)
        return await aiohttp_client(create_app(settings, clock=clock))

    return build


@dataclass
class Callback:
    """Where the provider sent the browser back to (our callback, with code and state)."""

    path: str


async def start(client: Client, redirect: str = APP, **params: str) -> aiohttp.ClientResponse:
    return await client.get(
        "/api/auth/oauth/test/start", params={"redirect": redirect, **params}, allow_redirects=False
    )


async def to_provider(client: Client, **params: str) -> Callback:
    """/start, then the provider's authorization endpoint: the callback it redirects to."""
    response = await start(client, **params)
    assert response.status == 302, await response.text()
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(response.headers["Location"], allow_redirects=False) as answer,
    ):
        assert answer.status == 302, await answer.text()
        location = answer.headers["Location"]
    parts = urlsplit(location)
    return Callback(f"{parts.path}?{parts.query}")


async def callback(client: Client, back: Callback, **kwargs: Any) -> dict[str, str]:
    """Follow the callback; the query of the app URL it redirects to."""
    response = await client.get(back.path, allow_redirects=False, **kwargs)
    assert response.status == 302, await response.text()
    location = response.headers["Location"]
    assert location.startswith(APP + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def sign_in(client: Client, **params: str) -> dict[str, str]:
    return await callback(client, await to_provider(client, **params))


async def exchange(client: Client, code: str) -> tuple[int, Any]:
    response = await client.post("/api/auth/oauth/exchange", json={"code": code})
    return response.status, await response.json()


# -- the round trip ----------------------------------------------------------------------------
async def test_providers_are_listed(oauth_app: AppFactory) -> None:
    client = await oauth_app()
    response = await client.get("/api/auth/providers")
    assert await response.json() == {
        "providers": [{"name": "test", "label": "test", "start_url": "/api/auth/oauth/test/start"}]
    }


async def test_sign_in_creates_an_account_and_signs_it_in(oauth_app: AppFactory) -> None:
    client = await oauth_app()
    response = await start(client)
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    back = await callback(client, await to_provider(client))
    assert set(back) == {"code"}
    status, body = await exchange(client, back["code"])
    assert status == 200, body
    assert body["user"]["email"] == "ada@example.com" and body["user"]["verified"] is True
    me = await client.get("/api/auth/me", headers=bearer(body["tokens"]["access_token"]))
    assert (await me.json())["user"]["id"] == body["user"]["id"]
    # The same provider account signs the same account in again.
    status, again = await exchange(client, (await sign_in(client))["code"])
    assert status == 200 and again["user"]["id"] == body["user"]["id"]


async def test_state_is_shared_through_the_database(oauth_app: AppFactory, tmp_path: Path) -> None:
    client = await oauth_app()
    back = await to_provider(client)
    rows = _rows(tmp_path, "SELECT kind, code_verifier IS NOT NULL, nonce IS NOT NULL FROM _alyx_oauth_flows")
    assert rows == [("state", 1, 1)]
    assert "code" in await callback(client, back)


def _rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(tmp_path / "project" / "data" / "alyx.db")) as conn:
        return conn.execute(sql).fetchall()


async def test_a_rotated_key_is_fetched(oauth_app: AppFactory, provider: OidcProvider) -> None:
    client = await oauth_app()
    assert "code" in await sign_in(client)
    fetched = provider.jwks_fetches
    provider.rotate()
    status, body = await exchange(client, (await sign_in(client))["code"])
    assert status == 200, body
    assert provider.jwks_fetches == fetched + 1


# -- attacks -----------------------------------------------------------------------------------
async def test_callback_without_state_or_with_another_state_is_refused(oauth_app: AppFactory) -> None:
    client = await oauth_app()
    back = await to_provider(client)
    code = parse_qs(urlsplit(back.path).query)["code"][0]
    for query in (f"code={code}", f"code={code}&state=forged"):
        response = await client.get(f"/api/auth/oauth/test/callback?{query}", allow_redirects=False)
        assert response.status == 400
        assert (await response.json())["code"] == "OAUTH_STATE_INVALID"


async def test_callback_in_another_browser_is_refused(oauth_app: AppFactory) -> None:
    client = await oauth_app()
    back = await to_provider(client)
    client.session.cookie_jar.clear()
    response = await client.get(back.path, allow_redirects=False)
    assert response.status == 400
    assert "another browser" in (await response.json())["error"]


async def test_a_replayed_callback_and_a_replayed_authorization_code_are_refused(
    oauth_app: AppFactory,
) -> None:
    client = await oauth_app()
    back = await to_provider(client)
    assert "code" in await callback(client, back)
    replay = await client.get(back.path, allow_redirects=False)
    assert replay.status == 400 and (await replay.json())["code"] == "OAUTH_STATE_INVALID"
    # The same authorization code with a fresh state: the provider refuses it.
    old_code = parse_qs(urlsplit(back.path).query)["code"][0]
    fresh = parse_qs(urlsplit((await to_provider(client)).path).query)
    refused = await callback(
        client, Callback(f"/api/auth/oauth/test/callback?code={old_code}&state={fresh['state'][0]}")
    )
    assert refused["error"] == "OAUTH_PROVIDER_ERROR" and "invalid_grant" in refused["error_description"]


async def test_a_replayed_exchange_code_is_refused(oauth_app: AppFactory) -> None:
    client = await oauth_app()
    code = (await sign_in(client))["code"]
    assert (await exchange(client, code))[0] == 200
    status, body = await exchange(client, code)
    assert status == 401 and body["code"] == "INVALID_TOKEN"


VERIFIER = "v" * 20 + "-app-kept-verifier-0123456789"
CHALLENGE = create_s256_code_challenge(VERIFIER)


async def test_an_exchange_code_started_with_a_challenge_needs_its_verifier(oauth_app: AppFactory) -> None:
    client = await oauth_app()
    # Someone who has only the code (copied from the address bar or a log) gets nothing.
    code = (await sign_in(client, code_challenge=CHALLENGE))["code"]
    response = await client.post("/api/auth/oauth/exchange", json={"code": code})
    assert response.status == 401 and "send the code_verifier" in (await response.json())["error"]
    code = (await sign_in(client, code_challenge=CHALLENGE))["code"]
    wrong = await client.post(
        "/api/auth/oauth/exchange", json={"code": code, "code_verifier": VERIFIER.upper()}
    )
    assert wrong.status == 401
    code = (await sign_in(client, code_challenge=CHALLENGE))["code"]
    right = await client.post("/api/auth/oauth/exchange", json={"code": code, "code_verifier": VERIFIER})
    assert right.status == 200, await right.text()
    assert (await right.json())["user"]["email"] == "ada@example.com"


async def test_a_malformed_challenge_is_refused_at_start(oauth_app: AppFactory) -> None:
    client = await oauth_app()
    response = await start(client, code_challenge="short")
    assert response.status == 400
    assert (await response.json())["code"] == "OAUTH_CHALLENGE_INVALID"


async def test_an_account_without_password_is_deleted_after_a_fresh_sign_in(
    oauth_app: AppFactory, provider: OidcProvider, tmp_path: Path
) -> None:
    client = await oauth_app()
    _status, body = await exchange(client, (await sign_in(client))["code"])
    headers = bearer(body["tokens"]["access_token"])
    # The access token alone (stolen, say) cannot delete the account.
    refused = await client.delete("/api/auth/me", json={}, headers=headers)
    assert refused.status == 403
    assert (await refused.json())["code"] == "REAUTHENTICATION_REQUIRED"
    refused = await client.delete("/api/auth/me", json={"password": "guess"}, headers=headers)
    assert (await refused.json())["code"] == "REAUTHENTICATION_REQUIRED"
    # A fresh sign-in's code for another account does not either.
    provider.user = {"sub": "user-2", "email": "bob@example.com", "email_verified": True}
    other = (await sign_in(client))["code"]
    refused = await client.delete("/api/auth/me", json={"code": other}, headers=headers)
    assert refused.status == 401 and "belongs to another account" in (await refused.json())["error"]
    # Signing in again at the provider, bound to the app's verifier, confirms the deletion.
    provider.user = {"sub": "user-1", "email": "ada@example.com", "email_verified": True}
    fresh = (await sign_in(client, code_challenge=CHALLENGE))["code"]
    unbound = await client.delete("/api/auth/me", json={"code": fresh}, headers=headers)
    assert unbound.status == 401
    fresh = (await sign_in(client, code_challenge=CHALLENGE))["code"]
    gone = await client.delete(
        "/api/auth/me", json={"code": fresh, "code_verifier": VERIFIER}, headers=headers
    )
    assert gone.status == 204, await gone.text()
    assert _rows(tmp_path, "SELECT email FROM _alyx_users") == [("bob@example.com",)]
    assert _rows(tmp_path, "SELECT subject FROM _alyx_identities") == [("user-2",)]


def _set(**changes: Any) -> Any:
    def tamper(claims: dict[str, Any], header: dict[str, Any]) -> Any:
        return claims | changes, header, None

    return tamper


FOREIGN = RSAKey.generate_key(2048, parameters={"kid": "key-1"})


@pytest.mark.parametrize(
    ("name", "tamper", "reason"),
    [
        ("wrong nonce", _set(nonce="not-the-one-sent"), "nonce"),
        ("wrong audience", _set(aud="someone-else"), "aud"),
        ("wrong issuer", _set(iss="https://evil.example.com"), "iss"),
        ("expired", _set(exp=1_000_000_000, iat=999_999_000), "exp"),
        ("alg none", lambda c, h: (c, {"alg": "none"}, None), "signature"),
        ("HS256 with the client secret",
         lambda c, h: (c, {"alg": "HS256"}, OctKey.import_key(CLIENT_SECRET)), "signature"),
        ("a key not in the JWKS", lambda c, h: (c, {"alg": "RS256", "kid": "key-1"}, FOREIGN), "signature"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
async def test_a_bad_id_token_is_refused(
    oauth_app: AppFactory, provider: OidcProvider, tmp_path: Path, name: str, tamper: Any, reason: str
) -> None:
    client = await oauth_app()
    provider.tamper = tamper
    back = await sign_in(client)
    assert back["error"] == "OAUTH_INVALID_ID_TOKEN", back
    assert reason in back["error_description"]
    assert _rows(tmp_path, "SELECT count(*) FROM _alyx_users") == [(0,)]


async def test_an_unverified_email_never_takes_over_an_account(
    oauth_app: AppFactory, provider: OidcProvider, tmp_path: Path
) -> None:
    client = await oauth_app()
    await register(client, "ada@example.com", PASSWORD)
    provider.user = {"sub": "attacker", "email": "ada@example.com", "email_verified": False}
    back = await sign_in(client)
    assert back["error"] == "OAUTH_EMAIL_UNVERIFIED"
    assert "sign in with your password, then link test" in back["error_description"]
    assert _rows(tmp_path, "SELECT count(*) FROM _alyx_identities") == [(0,)]
    # A verified email links to the account.
    provider.user = {"sub": "ada-at-provider", "email": "ada@example.com", "email_verified": True}
    status, body = await exchange(client, (await sign_in(client))["code"])
    assert status == 200 and body["user"]["email"] == "ada@example.com"


async def test_unverified_email_policy(oauth_app: AppFactory, provider: OidcProvider) -> None:
    provider.user = {"sub": "new", "email": "new@example.com", "email_verified": False}
    client = await oauth_app(**{"auth.oauth.unverified_email": "refuse"})
    assert (await sign_in(client))["error"] == "OAUTH_EMAIL_UNVERIFIED"


async def test_unverified_email_makes_an_unverified_account(
    oauth_app: AppFactory, provider: OidcProvider
) -> None:
    provider.user = {"sub": "new", "email": "new@example.com", "email_verified": False}
    client = await oauth_app()
    status, body = await exchange(client, (await sign_in(client))["code"])
    assert status == 200 and body["user"]["verified"] is False


@pytest.mark.parametrize("redirect", [
    "https://evil.example.com/signed-in", "http://127.0.0.1:5173/other", "//evil.example.com",
    "http://127.0.0.1:5173/signed-in#x", "http://127.0.0.1:5173@evil.example.com/signed-in", "",
])  # fmt: skip
async def test_a_redirect_outside_the_allowed_list_is_refused(oauth_app: AppFactory, redirect: str) -> None:
    client = await oauth_app()
    response = await start(client, redirect)
    assert response.status == 400
    assert (await response.json())["code"] == "OAUTH_REDIRECT_NOT_ALLOWED"


async def test_a_slow_provider_times_out_with_a_clear_error(
    oauth_app: AppFactory, provider: OidcProvider
) -> None:
    client = await oauth_app(**{"auth.oauth.timeout": "300ms"})
    provider.slow = True
    back = await sign_in(client)
    assert back["error"] == "OAUTH_PROVIDER_ERROR"
    assert back["error_description"] == "test did not answer the code exchange within 0.3 s; try again"


async def test_a_provider_answering_garbage_gets_a_clear_error(
    oauth_app: AppFactory, provider: OidcProvider
) -> None:
    client = await oauth_app()
    provider.garbage = True
    back = await sign_in(client)
    assert back == {
        "error": "OAUTH_PROVIDER_ERROR",
        "error_description": "test answered the code exchange with HTTP 200 and a body that is not JSON",
    }


# -- identities ----------------------------------------------------------------------------------
async def test_link_and_unlink_identities(oauth_app: AppFactory, provider: OidcProvider) -> None:
    client = await oauth_app()
    ada = await register(client, "ada@example.com", PASSWORD)
    provider.user = {"sub": "gh-ada", "email": "other@example.com", "email_verified": False}
    response = await client.post(
        "/api/auth/identities", json={"provider": "test", "redirect": APP}, headers=bearer(ada.access)
    )
    link = (await response.json())["url"]
    started = await client.get(link, allow_redirects=False)
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(started.headers["Location"], allow_redirects=False) as answer,
    ):
        location = urlsplit(answer.headers["Location"])
    assert await callback(client, Callback(f"{location.path}?{location.query}")) == {"linked": "test"}
    listed = await (await client.get("/api/auth/identities", headers=bearer(ada.access))).json()
    assert [i["subject"] for i in listed["identities"]] == ["gh-ada"] and listed["password"] is True
    # The link ticket works once.
    again = await client.get(link, allow_redirects=False)
    assert again.status == 401
    identity = listed["identities"][0]["id"]
    gone = await client.delete(f"/api/auth/identities/{identity}", headers=bearer(ada.access))
    assert gone.status == 204


async def test_the_last_sign_in_method_cannot_be_removed(oauth_app: AppFactory) -> None:
    client = await oauth_app()
    _status, body = await exchange(client, (await sign_in(client))["code"])
    access = body["tokens"]["access_token"]
    listed = await (await client.get("/api/auth/identities", headers=bearer(access))).json()
    assert listed["password"] is False
    response = await client.delete(
        f"/api/auth/identities/{listed['identities'][0]['id']}", headers=bearer(access)
    )
    assert response.status == 409
    assert (await response.json())["code"] == "LAST_SIGN_IN_METHOD"


# -- configuration ------------------------------------------------------------------------------
def test_a_missing_secret_is_a_clear_error(tmp_path: Path) -> None:
    root = project_with(tmp_path, "https://login.example.com")
    with pytest.raises(ConfigError) as caught:
        load_settings(root, mode="dev", environ={})
    assert "${TEST_OIDC_SECRET} is not set" in str(caught.value)
    assert "alyx.yaml:9:24: auth.oauth.providers.test.client_secret" in str(caught.value)


def test_a_secret_written_in_the_file_is_refused(tmp_path: Path) -> None:
    root = project_with(tmp_path, "https://login.example.com")
    text = (root / "alyx.yaml").read_text().replace("${TEST_OIDC_SECRET}", "plain-secret")
    (root / "alyx.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"a client secret is not written in alyx\.yaml"):
        load_settings(root, mode="dev", environ={})


def test_a_relative_redirect_is_a_clear_error(tmp_path: Path) -> None:
    root = project_with(tmp_path, "https://login.example.com")
    with pytest.raises(ConfigError, match="'/signed-in' is not an absolute http or https URL"):
        load_settings(
            root, mode="dev", environ=ENV, overrides={"auth.oauth.allowed_redirects": ["/signed-in"]}
        )


async def test_serve_refuses_to_start_with_an_unreachable_issuer(tmp_path: Path) -> None:
    root = project_with(tmp_path, f"http://127.0.0.1:{free_port()}")
    settings = load_settings(root, mode="serve", environ=ENV | {"ALYX_AUTH_JWT_SECRET": "x" * 40})
    runner = web.AppRunner(create_app(settings))
    try:
        with pytest.raises(ConfigError, match=r"auth\.oauth\.providers\.test: test could not be reached"):
            await runner.setup()
    finally:
        await runner.cleanup()


async def test_alyx_admin_lists_and_unlinks_identities(oauth_app: AppFactory, tmp_path: Path) -> None:
    client = await oauth_app()
    assert (await exchange(client, (await sign_in(client))["code"]))[0] == 200
    project = tmp_path / "project"
    listed = CliRunner(env=ENV).invoke(
        cli, ["admin", "identities", "ada@example.com", "--json", "-C", str(project)]
    )
    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.stdout)
    assert body["password"] is False and [i["provider"] for i in body["identities"]] == ["test"]
    refused = CliRunner(env=ENV).invoke(
        cli, ["admin", "unlink-identity", "ada@example.com", "test", "-C", str(project)]
    )
    assert refused.exit_code == 1
    assert "this is the account's last way to sign in" in refused.output


async def test_a_malformed_callback_form_is_a_400(oauth_app: AppFactory) -> None:
    client = await oauth_app()
    response = await client.post(
        "/api/auth/oauth/test/callback",
        data=b"--x\r\nnot a part",
        headers={"Content-Type": "multipart/form-data"},  # no boundary
        allow_redirects=False,
    )
    body = await response.json()
    assert (response.status, body["code"]) == (400, "INVALID_MULTIPART"), body
