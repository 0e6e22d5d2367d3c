"""Signing in to the admin UI in a real browser: the overview, sign-out, refusals."""

from __future__ import annotations

from typing import Any

from tests.alyx_server.admin_ui.support import ADMIN, PASSWORD, UiFactory, Watch, async_api, sign_in
from tests.alyx_server.auth.support import register

expect = async_api.expect


async def test_sign_in_shows_the_overview_then_sign_out(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui()
    page = await browser.new_page()
    watch = Watch(page)
    # Not signed in: the UI sends the browser to the sign-in form.
    await page.goto(ui.url())
    assert page.url.startswith(ui.url("login"))
    response = await sign_in(page, ui)
    assert response.status == 200 and page.url == ui.url()
    await expect(page.locator("h1")).to_have_text("Overview")
    await expect(page.locator('[data-field="status"]')).to_have_text("ok")
    await expect(page.locator('[data-field="version"]')).not_to_be_empty()
    # overview.js refreshed the figures from overview.json.
    await expect(page.locator("#overview-updated")).to_contain_text("Updated")
    assert ADMIN in await page.locator(".who").inner_text()
    await page.click("#sign-out")
    await page.wait_for_url(ui.url("login"))
    await page.goto(ui.url())
    assert page.url.startswith(ui.url("login")), "the session still works after sign-out"
    assert watch.errors == []
    assert all(u.startswith(ui.origin + "/") for u in watch.urls), watch.urls


async def test_a_wrong_password_is_refused(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**{"auth.rate_limit.login": "off"})
    page = await browser.new_page()
    response = await sign_in(page, ui, password="not the password")
    assert response.status == 401
    await expect(page.locator("#signin-message")).to_have_text("the email or the password is wrong")
    await page.goto(ui.url())
    assert page.url.startswith(ui.url("login"))


async def test_a_user_who_is_not_an_admin_gets_403_and_no_page(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui()
    ada = await register(ui.client)
    page = await browser.new_page()
    response = await sign_in(page, ui, email=ada.email, password=PASSWORD)
    assert response.status == 403
    await expect(page.locator("#signin-message")).to_contain_text("not an administrator")
    assert await page.context.cookies() == [] or all(
        c["name"] != "alyx_admin" for c in await page.context.cookies()
    )
    # With the user's own access token, no page either.
    answer = await ui.client.get("/_admin/", headers={"Authorization": f"Bearer {ada.access}"})
    assert answer.status == 403
    assert "Overview" not in await answer.text()
