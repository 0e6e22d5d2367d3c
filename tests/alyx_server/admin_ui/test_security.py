"""The admin UI from the attacker's side: guessed passwords, stale sessions, forged
requests, hijacked WebSockets, framing and outside resources; and the headers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from alyx_server.app import create_app
from tests.alyx_server.admin_ui.support import UI, UiFactory, Watch, alyx, async_api, sign_in
from tests.alyx_server.auth.support import make_auth_settings

expect = async_api.expect


async def test_sign_in_is_rate_limited(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**{"auth.rate_limit.login": "2/minute"})
    page = await browser.new_page()
    for _ in range(2):
        assert (await sign_in(page, ui, password="guess")).status == 401
    # The right password does not help once the limit is reached.
    response = await sign_in(page, ui)
    assert response.status == 429
    assert response.headers["retry-after"] == "60"
    await expect(page.locator("#signin-message")).to_contain_text("too many login attempts")
    ui.clock.advance(61)
    assert (await sign_in(page, ui)).status == 200
    await expect(page.locator("h1")).to_have_text("Overview")


async def test_an_idle_session_ends(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**{"admin_ui.session_idle": "10m", "admin_ui.session_max": "1h"})
    page = await browser.new_page()
    await sign_in(page, ui)
    # Requests keep it alive past the idle limit...
    for _ in range(3):
        ui.clock.advance(6 * 60)
        await page.goto(ui.url())
        await expect(page.locator("h1")).to_have_text("Overview")
    # ...but ten minutes without one end it.
    ui.clock.advance(10 * 60 + 1)
    await page.goto(ui.url())
    assert page.url.startswith(ui.url("login"))
    await expect(page.locator("#signin-message")).to_contain_text("without activity")


async def test_a_session_ends_at_its_absolute_expiry(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**{"admin_ui.session_idle": "2h", "admin_ui.session_max": "1h"})
    page = await browser.new_page()
    await sign_in(page, ui)
    ui.clock.advance(59 * 60)
    await page.goto(ui.url())
    await expect(page.locator("h1")).to_have_text("Overview")
    ui.clock.advance(60 + 1)
    await page.goto(ui.url())
    assert page.url.startswith(ui.url("login"))
    await expect(page.locator("#signin-message")).to_contain_text("expired")
    # The JSON endpoint refuses the expired cookie too.
    answer = await page.request.get(ui.url("overview.json"), headers={"Accept": "application/json"})
    assert answer.status == 401


async def test_a_change_without_the_csrf_token_is_refused(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui()
    page = await browser.new_page()
    await sign_in(page, ui)
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token and re.fullmatch(r"[0-9a-f]{64}", token)
    # The browser sends the session cookie with each; only the token is missing or wrong.
    missing = await page.request.post(ui.url("logout"), max_redirects=0)
    assert missing.status == 403 and "no CSRF token" in await missing.text()
    wrong = await page.request.post(ui.url("logout"), headers={"X-CSRF-Token": "0" * 64}, max_redirects=0)
    assert wrong.status == 403 and "does not match this session" in await wrong.text()
    form = await page.request.post(ui.url("logout"), form={"csrf_token": "x"}, max_redirects=0)
    assert form.status == 403
    await page.goto(ui.url())
    await expect(page.locator("h1")).to_have_text("Overview")  # still signed in
    right = await page.request.post(ui.url("logout"), headers={"X-CSRF-Token": token}, max_redirects=0)
    assert right.status == 303
    # The sign-in form has its own token: a form posted from elsewhere is refused.
    forged = await ui.client.post(
        "/_admin/login", data={"email": "root@example.com", "password": "x"}, allow_redirects=False
    )
    assert forged.status == 403 and "CSRF" in await forged.text()


async def _open_socket(page: Any, url: str) -> str:
    """Open a WebSocket from `page`'s origin; "hello" when the server greets it."""
    return str(
        await page.evaluate(
            """(url) => new Promise((resolve) => {
                const socket = new WebSocket(url);
                socket.onmessage = (m) => { resolve(JSON.parse(m.data).type); socket.close(); };
                socket.onerror = () => resolve("refused");
                socket.onclose = () => resolve("refused");
            })""",
            url,
        )
    )


async def test_the_events_socket_takes_the_cookie_only_from_the_servers_own_origin(
    make_ui: UiFactory, browser: Any
) -> None:
    ui = await make_ui()

    # Another origin on the same host (another port): the same site, so the browser
    # attaches the SameSite=Strict cookie to its WebSocket; only the Origin check stops it.
    async def elsewhere_page(request: web.Request) -> web.Response:
        return web.Response(text="<p>elsewhere</p>", content_type="text/html")

    other = web.Application()
    other.router.add_get("/", elsewhere_page)
    async with TestServer(other, host="127.0.0.1") as evil:
        context = await browser.new_context()
        page = await context.new_page()
        await sign_in(page, ui)
        events = ui.origin.replace("http://", "ws://") + "/api/admin/events"
        assert await _open_socket(page, events) == "hello"
        elsewhere = await context.new_page()
        await elsewhere.goto(str(evil.make_url("/")))
        assert await _open_socket(elsewhere, events) == "refused"
    # The same, spelled out: the cookie with a foreign Origin gets 403 before any upgrade.
    cookie = {c["name"]: c["value"] for c in await context.cookies()}["alyx_admin"]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                events, headers={"Cookie": f"alyx_admin={cookie}", "Origin": "http://evil.example"}
            )
        assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as no_origin:
            await session.ws_connect(events, headers={"Cookie": f"alyx_admin={cookie}"})
        assert no_origin.value.status == 403
        async with session.ws_connect(
            events, headers={"Cookie": f"alyx_admin={cookie}", "Origin": ui.origin}
        ) as socket:
            assert (await socket.receive_json())["type"] == "hello"


def _assert_safety_headers(headers: Any, what: str) -> None:
    csp = headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, what
    assert "'unsafe-inline'" not in csp, what
    assert headers.get("X-Content-Type-Options") == "nosniff", what
    assert headers.get("Referrer-Policy") in ("same-origin", "no-referrer"), what


async def test_every_ui_response_carries_the_safety_headers(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui()
    page = await browser.new_page()
    watch = Watch(page)
    headers: dict[str, Any] = {}
    page.on("response", lambda r: headers.setdefault(r.url, r))
    await sign_in(page, ui)
    await expect(page.locator("#overview-updated")).to_contain_text("Updated")
    seen = {url: await response.all_headers() for url, response in headers.items()}
    for url, values in seen.items():
        _assert_safety_headers(
            {k.title(): v for k, v in values.items()}
            | {"Content-Security-Policy": values.get("content-security-policy", "")},
            url,
        )
    pages = [u for u in seen if "/static/" not in u]
    assert pages and all(seen[u].get("cache-control") == "no-store" for u in pages), pages
    assert watch.errors == []
    assert all(u.startswith(ui.origin + "/") for u in watch.urls), watch.urls
    html = await page.content()
    assert "$2b$" not in html and "password_hash" not in html
    # Errors, unknown pages and the static files too.
    for path in ("/_admin/no-such-page", "/_admin/static/admin.css", "/_admin/login"):
        answer = await ui.client.get(path)
        _assert_safety_headers(answer.headers, path)


async def test_admin_tokens_reach_the_json_endpoints(make_ui: UiFactory) -> None:
    ui = await make_ui()
    out = alyx(ui.project, "admin", "create-token", "--name", "ci", "--kind", "admin")
    token = re.search(r"alyx_\S+", out)
    assert token, out
    answer = await ui.client.get("/_admin/overview.json", headers={"Authorization": f"Bearer {token[0]}"})
    assert answer.status == 200 and (await answer.json())["status"] == "ok"
    deploy = alyx(ui.project, "admin", "create-token", "--name", "cd", "--kind", "deploy")
    only_deploy = re.search(r"alyx_\S+", deploy)
    assert only_deploy, deploy
    refused = await ui.client.get(
        "/_admin/overview.json", headers={"Authorization": f"Bearer {only_deploy[0]}"}
    )
    assert refused.status == 403


async def test_the_cookie_is_secure_behind_a_trusted_https_proxy(make_ui: UiFactory) -> None:
    ui = await make_ui(**{"server.trusted_proxies": ["127.0.0.1"]})
    secure = await _signed_in_cookie(ui, {"X-Forwarded-Proto": "https"})
    assert "__Host-alyx_admin=" in secure and "Secure" in secure and "HttpOnly" in secure
    assert "SameSite=Strict" in secure and "Path=/" in secure
    plain = await _signed_in_cookie(ui, {})
    assert plain.startswith("alyx_admin=") and "Secure" not in plain


async def test_a_proxy_that_is_not_trusted_cannot_ask_for_https(make_ui: UiFactory) -> None:
    ui = await make_ui()
    cookie = await _signed_in_cookie(ui, {"X-Forwarded-Proto": "https"})
    assert cookie.startswith("alyx_admin=") and "Secure" not in cookie


async def _signed_in_cookie(ui: UI, headers: dict[str, str]) -> str:
    """Sign in with a plain HTTP client sending `headers`; the session's Set-Cookie."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        form = await session.get(ui.url("login"), headers=headers)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
        assert csrf
        pre = form.cookies["alyx_admin_login"].value
        response = await session.post(
            ui.url("login"),
            data={"email": "root@example.com", "password": "correct horse battery", "csrf_token": csrf[1]},
            headers={**headers, "Cookie": f"alyx_admin_login={pre}"},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
        return next(c for c in response.headers.getall("Set-Cookie") if "alyx_admin=" in c)


async def test_the_ui_follows_its_path_and_can_be_turned_off(
    make_ui: UiFactory, tmp_path: Path, aiohttp_client: Any
) -> None:
    ui = await make_ui(**{"admin_ui.path": "/console"})
    assert (await ui.client.get("/console/login")).status == 200
    assert (await ui.client.get("/_admin/login")).status == 404
    off = await aiohttp_client(
        create_app(make_auth_settings(tmp_path / "off", **{"admin_ui.enabled": False}))
    )
    assert (await off.get("/_admin/")).status == 404
    assert (await off.get("/_admin/login")).status == 404
