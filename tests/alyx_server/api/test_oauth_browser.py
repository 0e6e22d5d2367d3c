"""One full OAuth redirect round trip in Chromium: the browser app of docs/auth.md, served
from its own origin, signs in through Alyx and a real OpenID provider on loopback
(tests/alyx_server/auth/oidc_provider.py), then exchanges the one-time code for tokens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from alyx_server.app import create_app
from alyx_server.config import load_settings
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.admin_ui.support import browser
from tests.alyx_server.api.test_oauth import ENV, project_with, provider
from tests.alyx_server.auth.oidc_provider import OidcProvider
from tests.servers import free_port

__all__ = ["browser", "provider"]

DOC = Path(__file__).parents[3] / "docs" / "auth.md"


def docs_page() -> str:
    """The browser app of docs/auth.md, as written."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"```html\n(.*?)```", text, re.DOTALL)
    assert found, "docs/auth.md has no html example"
    return found.group(1)


@pytest.fixture
async def app_origin() -> AsyncIterator[tuple[str, list[str]]]:
    """A static server for the docs page at /signed-in; its page text is set by the test."""
    page: list[str] = [""]

    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(text=page[0], content_type="text/html")

    async def no_icon(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/signed-in", serve)
    app.router.add_get("/favicon.ico", no_icon)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", page
    finally:
        await runner.cleanup()


async def test_the_docs_page_signs_in_through_the_provider(
    tmp_path: Path,
    provider: OidcProvider,
    clock: ManualClock,
    browser: Any,
    app_origin: tuple[str, list[str]],
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    origin, page = app_origin
    root = project_with(tmp_path / "project", provider.url, redirect=f"{origin}/signed-in")
    client = await aiohttp_client(create_app(load_settings(root, mode="dev", environ=ENV), clock=clock))
    api = str(client.make_url("")).rstrip("/")
    page[0] = docs_page().replace("http://127.0.0.1:8090", api).replace('"google"', '"test"')
    tab = await (await browser.new_context()).new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    await tab.goto(f"{origin}/signed-in")
    await tab.click("#sign-in")
    await tab.wait_for_function("document.getElementById('who').textContent !== ''", timeout=15_000)
    assert await tab.text_content("#who") == "signed in as ada@example.com"
    assert tab.url == f"{origin}/signed-in"  # the one-time code left the address bar
    stored = await tab.evaluate("JSON.parse(sessionStorage.getItem('alyx_tokens'))")
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {stored['access_token']}"})
    assert (await me.json())["user"]["email"] == "ada@example.com"
    assert errors == []
