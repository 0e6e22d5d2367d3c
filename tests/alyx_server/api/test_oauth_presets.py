"""The provider presets against small but real providers on loopback, each pointed at by
the preset's documented endpoint settings (`authorize_url`, `token_url`, `userinfo_url`
for GitHub and Discord, `issuer` for the OpenID ones):

- GitHub: the user API, and /user/emails for the primary verified address;
- Discord: /users/@me and its `verified` flag;
- Apple: the client secret is an ES256 JWT signed with the key file (verified here with
  joserfc), and the answer comes back as a form POST;
- Microsoft: a multi-tenant issuer template (`.../{tenantid}/v2.0`) filled with the
  token's `tid`, and an issuer of another tenant refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from alyx_server.app import create_app
from alyx_server.config import load_settings
from alyx_server.errors import ConfigError
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.api.test_oauth import APP, Callback, Client, callback, exchange
from tests.alyx_server.auth.api_provider import ApiProvider, Kind
from tests.alyx_server.auth.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider
from tests.alyx_server.auth.support import PASSWORD, register
from tests.schemas import NOTES
from tests.servers import free_port

ENV = {"PROVIDER_SECRET": CLIENT_SECRET}
Build = Callable[[str, str], Awaitable[Client]]


def write_project(root: Path, name: str, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(NOTES, encoding="utf-8")
    (root / "alyx.yaml").write_text(
        "auth:\n"
        "  bcrypt_cost: 4\n"
        "  oauth:\n"
        f"    allowed_redirects: [{APP}]\n"
        "    providers:\n"
        f"      {name}:\n" + "".join(f"        {line}\n" for line in body.strip().splitlines()),
        encoding="utf-8",
    )
    return root


@pytest.fixture
def build(tmp_path: Path, clock: ManualClock, aiohttp_client: Callable[..., Awaitable[Client]]) -> Build:
    async def make(name: str, body: str) -> Client:
        root = write_project(tmp_path / "project", name, body)
        settings = load_settings(root, mode="dev", environ=ENV)
        return await aiohttp_client(create_app(settings, clock=clock))

    return make


async def start(client: Client, name: str) -> aiohttp.ClientResponse:
    return await client.get(f"/api/auth/oauth/{name}/start", params={"redirect": APP}, allow_redirects=False)


async def through_provider(client: Client, name: str) -> Callback:
    response = await start(client, name)
    assert response.status == 302, await response.text()
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(response.headers["Location"], allow_redirects=False) as answer,
    ):
        assert answer.status == 302, await answer.text()
        location = urlsplit(answer.headers["Location"])
    return Callback(f"{location.path}?{location.query}")


# -- GitHub and Discord: the user from their APIs ----------------------------------------------
@pytest.fixture
async def api_provider(request: pytest.FixtureRequest) -> AsyncIterator[ApiProvider]:
    kind: Kind = request.param
    found = ApiProvider(kind, CLIENT_ID, CLIENT_SECRET)
    await found.start(free_port())
    try:
        yield found
    finally:
        await found.stop()


def api_config(provider: ApiProvider) -> str:
    lines = [f"client_id: {CLIENT_ID}", "client_secret: ${PROVIDER_SECRET}"]
    return "\n".join(lines + [f"{key}: {url}" for key, url in provider.endpoints.items()])


@pytest.mark.parametrize("api_provider", ["github"], indirect=True)
async def test_github_signs_in_with_the_primary_verified_email(
    api_provider: ApiProvider, build: Build
) -> None:
    api_provider.user = {"id": 583231, "login": "octocat", "name": "The Octocat", "email": None}
    api_provider.emails = [
        {"email": "old@example.com", "primary": False, "verified": True},
        {"email": "Octocat@Example.com", "primary": True, "verified": True},
    ]
    client = await build("github", api_config(api_provider))
    back = await callback(client, await through_provider(client, "github"))
    status, body = await exchange(client, back["code"])
    assert status == 200, body
    assert body["user"]["email"] == "octocat@example.com" and body["user"]["verified"] is True
    assert api_provider.hits == [
        "/login/oauth/authorize", "/login/oauth/access_token", "/api/v3/user", "/api/v3/user/emails",
    ]  # fmt: skip


@pytest.mark.parametrize("api_provider", ["github"], indirect=True)
async def test_github_unverified_primary_email_cannot_take_over(
    api_provider: ApiProvider, build: Build
) -> None:
    api_provider.user = {"id": 1, "login": "mallory", "email": "ada@example.com"}
    api_provider.emails = [{"email": "ada@example.com", "primary": True, "verified": False}]
    client = await build("github", api_config(api_provider))
    await register(client, "ada@example.com", PASSWORD)
    back = await callback(client, await through_provider(client, "github"))
    assert back["error"] == "OAUTH_EMAIL_UNVERIFIED", back


@pytest.mark.parametrize("api_provider", ["discord"], indirect=True)
async def test_discord_signs_in_and_respects_verified(api_provider: ApiProvider, build: Build) -> None:
    api_provider.user = {
        "id": "80351110224678912",
        "username": "nelly",
        "email": "ada@example.com",
        "verified": False,
    }
    client = await build("discord", api_config(api_provider))
    await register(client, "ada@example.com", PASSWORD)
    refused = await callback(client, await through_provider(client, "discord"))
    assert refused["error"] == "OAUTH_EMAIL_UNVERIFIED", refused
    api_provider.user["verified"] = True
    status, body = await exchange(
        client, (await callback(client, await through_provider(client, "discord")))["code"]
    )
    assert status == 200 and body["user"]["email"] == "ada@example.com"
    assert api_provider.hits[-3:] == ["/oauth2/authorize", "/api/oauth2/token", "/api/users/@me"]


# -- OpenID presets against the test OpenID provider --------------------------------------------
@pytest.fixture
async def oidc() -> AsyncIterator[OidcProvider]:
    found = OidcProvider()
    await found.start(free_port())
    try:
        yield found
    finally:
        await found.stop()


async def test_apple_client_secret_is_an_es256_jwt_and_the_answer_is_posted(
    oidc: OidcProvider, build: Build, tmp_path: Path
) -> None:
    key = ECKey.generate_key("P-256")
    key_file = tmp_path / "project" / "secrets" / "AuthKey_XYZ987ZYX1.p8"
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(key.as_pem(private=True))
    secrets_seen: list[jwt.Token] = []

    def check_secret(secret: str) -> bool:
        # What Apple checks: ES256 under the key id, by the team, for this Services ID.
        public = ECKey.import_key(key.as_dict(private=False))
        token = jwt.decode(secret, public, algorithms=["ES256"])
        secrets_seen.append(token)
        return True

    oidc.check_secret = check_secret
    oidc.user = {"sub": "001234.abcd", "email": "ada@privaterelay.appleid.com", "email_verified": "true"}
    client = await build(
        "apple",
        f"client_id: {CLIENT_ID}\nteam_id: ABCDE12345\nkey_id: XYZ987ZYX1\n"
        f"private_key_file: secrets/AuthKey_XYZ987ZYX1.p8\nissuer: {oidc.url}",
    )
    started = await start(client, "apple")
    assert parse_qs(urlsplit(started.headers["Location"]).query)["response_mode"] == ["form_post"]
    cookie = started.cookies["alyx_oauth"]
    assert cookie["samesite"] == "None" and cookie["secure"]
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(started.headers["Location"], allow_redirects=False) as answer,
    ):
        location = urlsplit(answer.headers["Location"])
    # Apple's page posts code and state to the callback (a cross-site POST).
    form = {k: v[0] for k, v in parse_qs(location.query).items()}
    posted = await client.post(
        location.path, data=form, headers={"Cookie": f"alyx_oauth={cookie.value}"}, allow_redirects=False
    )
    assert posted.status == 302, await posted.text()
    code = parse_qs(urlsplit(posted.headers["Location"]).query)["code"][0]
    status, body = await exchange(client, code)
    assert status == 200 and body["user"]["verified"] is True
    (token,) = secrets_seen
    assert (token.header["alg"], token.header["kid"]) == ("ES256", "XYZ987ZYX1")
    claims = token.claims
    assert (claims["iss"], claims["sub"], claims["aud"]) == (
        "ABCDE12345",
        CLIENT_ID,
        "https://appleid.apple.com",
    )
    assert claims["exp"] - claims["iat"] == 300


def _tenant(iss: str, tid: str) -> Any:
    def tamper(claims: dict[str, Any], header: dict[str, Any]) -> Any:
        return claims | {"iss": iss, "tid": tid}, header, None

    return tamper


async def test_microsoft_multi_tenant_issuer(oidc: OidcProvider, build: Build) -> None:
    oidc.discovery_issuer = oidc.url + "/{tenantid}/v2.0"
    client = await build(
        "microsoft",
        f"tenant: common\nissuer: {oidc.url}\nclient_id: {CLIENT_ID}\nclient_secret: ${{PROVIDER_SECRET}}",
    )
    oidc.tamper = _tenant(f"{oidc.url}/tenant-a/v2.0", "tenant-a")
    back = await callback(client, await through_provider(client, "microsoft"))
    assert "code" in back, back
    # A token whose issuer names another tenant than its tid is refused.
    oidc.tamper = _tenant(f"{oidc.url}/tenant-b/v2.0", "tenant-a")
    refused = await callback(client, await through_provider(client, "microsoft"))
    assert refused["error"] == "OAUTH_INVALID_ID_TOKEN" and "iss" in refused["error_description"]


# -- the endpoint settings ---------------------------------------------------------------------
def test_endpoint_settings_are_checked(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "a", "github", "client_id: x\nclient_secret: ${PROVIDER_SECRET}\ntoken_url: /token"
    )
    with pytest.raises(ConfigError, match="'/token' is not an absolute http or https URL") as caught:
        load_settings(root, mode="dev", environ=ENV)
    assert "auth.oauth.providers.github.token_url" in str(caught.value)
    root = write_project(
        tmp_path / "b",
        "google",
        "client_id: x\nclient_secret: ${PROVIDER_SECRET}\ntoken_url: https://x.example/t",
    )
    with pytest.raises(ConfigError, match="token_url does not apply to google") as caught:
        load_settings(root, mode="dev", environ=ENV)
    assert "set issuer" in str(caught.value)
