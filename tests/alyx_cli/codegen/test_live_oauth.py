"""The generated Python client signs in with OAuth against a real `alyx dev` and the test
OpenID provider (tests/alyx_server/auth/oidc_provider.py) on loopback: the start URL with
its PKCE challenge, the browser's redirects (driven with httpx and a cookie jar, as a
browser follows them), the exchange, identities, and deletion after a fresh sign-in."""

from __future__ import annotations

import asyncio
import importlib
import shutil
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.alyx_cli.codegen.conftest import SCAFFOLDS, generate_project
from tests.alyx_server.auth.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider
from tests.servers import AlyxProcess, cli_environment, free_port

APP = "http://127.0.0.1:5173/signed-in"


class ProviderThread:
    """The test OpenID provider on its own event loop and thread: `alyx dev` (a subprocess)
    reads its discovery document while this test blocks on the server's start."""

    def __init__(self) -> None:
        self.provider = OidcProvider()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> OidcProvider:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.provider.start(free_port()), self.loop).result(10)
        return self.provider

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.provider.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with ProviderThread() as found:
        yield found


@pytest.fixture(scope="module")
def server(provider: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlyxProcess]:
    project = tmp_path_factory.mktemp("oauth") / "blog"
    shutil.copytree(SCAFFOLDS / "blog", project)
    (project / "alyx.yaml").write_text(
        "auth:\n"
        "  oauth:\n"
        f"    allowed_redirects: [{APP}]\n"
        "    providers:\n"
        "      test:\n"
        f"        issuer: {provider.url}\n"
        f"        client_id: {CLIENT_ID}\n"
        "        client_secret: ${TEST_OIDC_SECRET}\n",
        encoding="utf-8",
    )
    env = cli_environment(TEST_OIDC_SECRET=CLIENT_SECRET, ALYX_LOGGING_LEVEL="warning")
    with AlyxProcess(project, "dev", env=env, log=project / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def client_module(server: AlyxProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("py-oauth-client")
    generate_project(server.project, out, ("python",))
    sys.path.insert(0, str(out / "python"))
    try:
        yield importlib.import_module("alyx_client")
    finally:
        sys.path.remove(str(out / "python"))
        for name in [m for m in sys.modules if m == "alyx_client" or m.startswith("alyx_client.")]:
            del sys.modules[name]


def browse(start_url: str) -> dict[str, str]:
    """What a browser does with the start URL: to the provider (which approves at once),
    back to our callback with the cookie /start set, then to the app: the app URL's query."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        url = start_url
        for _ in range(3):
            answer = browser.get(url)
            assert answer.status_code == 302, answer.text
            url = answer.headers["Location"]
    assert url.startswith(APP + "?"), url
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_python_client_signs_in_with_oauth(client_module: ModuleType, server: AlyxProcess) -> None:
    mod = client_module
    alyx = mod.Alyx(server.url)
    other = mod.Alyx(server.url)
    third = mod.Alyx(server.url)
    try:
        assert alyx.auth.providers() == [
            {"name": "test", "label": "test", "start_url": "/api/auth/oauth/test/start"}
        ]
        start_url = alyx.auth.sign_in_with_oauth("test", APP)
        assert "code_challenge=" in start_url and alyx.auth.oauth_verifier is not None
        code = browse(start_url)["code"]
        session = alyx.auth.exchange_oauth_code(code)
        assert session["user"]["email"] == "ada@example.com"
        assert alyx.auth.tokens == session["tokens"] and alyx.auth.oauth_verifier is None
        assert alyx.auth.me()["id"] == session["user"]["id"]
        found = alyx.auth.identities()
        assert found["password"] is False and [i["provider"] for i in found["identities"]] == ["test"]
        with pytest.raises(mod.ConflictError) as caught:
            alyx.auth.unlink_identity(found["identities"][0]["id"])
        assert caught.value.code == "LAST_SIGN_IN_METHOD"
        assert alyx.auth.link_identity_url("test", APP).startswith(f"{server.url}/api/auth/oauth/test/start?")

        # The code alone, in another client (without the verifier), signs nobody in.
        stolen = browse(alyx.auth.sign_in_with_oauth("test", APP))["code"]
        with pytest.raises(mod.UnauthorizedError, match="send the code_verifier"):
            other.auth.exchange_oauth_code(stolen)

        # An app that keeps the verifier itself, and deletion after a fresh sign-in.
        started = alyx.auth.start_oauth("test", APP)
        with pytest.raises(mod.ForbiddenError) as refused:
            alyx.auth.delete_me("")
        assert refused.value.code == "REAUTHENTICATION_REQUIRED"
        alyx.auth.delete_me_with_oauth(browse(started.url)["code"], started.verifier)
        assert alyx.auth.tokens is None
        again = third.auth.exchange_oauth_code(
            browse((fresh := other.auth.start_oauth("test", APP)).url)["code"], fresh.verifier
        )
        assert again["user"]["id"] != session["user"]["id"]
    finally:
        for client in (alyx, other, third):
            client.close()


async def test_async_client_exchanges_a_code(client_module: ModuleType, server: AlyxProcess) -> None:
    alyx = client_module.AsyncAlyx(server.url)
    try:
        start_url = alyx.auth.sign_in_with_oauth("test", APP)
        code = (await asyncio.to_thread(browse, start_url))["code"]
        session = await alyx.auth.exchange_oauth_code(code)
        assert session["user"]["email"] == "ada@example.com"
        assert (await alyx.auth.identities())["identities"][0]["provider"] == "test"
    finally:
        await alyx.close()
