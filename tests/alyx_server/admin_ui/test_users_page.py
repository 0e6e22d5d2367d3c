"""The users page in a real browser: create, verify, disable, promote, revoke, reset; the
last admin kept; sign-in identities listed and unlinked (never the last way to sign in,
never without the CSRF token); emails and metadata with markup shown as text; no password
hash shown."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from alyx_server.auth.identities import insert_identity
from alyx_server.auth.users import insert_user
from tests.alyx_server.admin_ui.support import ADMIN, PASSWORD, UI, UiFactory, Watch, async_api, sign_in
from tests.alyx_server.auth.support import NO_LIMITS, Mailbox, register, smtp

__all__ = ["smtp"]  # the fixture

expect = async_api.expect

ADA = "ada@example.com"


async def _signed_in_page(ui: UI, browser: Any) -> tuple[Any, Watch]:
    page = await browser.new_page()
    watch = Watch(page)
    page.on("dialog", lambda dialog: dialog.accept())  # the data-confirm questions
    await sign_in(page, ui)
    await page.goto(ui.url("users"))
    await expect(page.locator("h1")).to_contain_text("Users")
    return page, watch


def _row(page: Any, email: str) -> Any:
    return page.locator(f'#users tbody tr[data-email="{email}"]')


async def _act(page: Any, email: str, action: str) -> None:
    async with page.expect_navigation():
        await _row(page, email).locator(f'button[data-action="{action}"]').click()


async def _login(ui: UI, email: str) -> int:
    response = await ui.client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    return response.status


async def test_create_verify_make_admin_and_disable(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**NO_LIMITS)
    page, watch = await _signed_in_page(ui, browser)
    # Create: a validation error is shown above the form, the email kept.
    await page.fill("#new-email", "not an address")
    await page.fill("#new-password", PASSWORD)
    async with page.expect_navigation() as refused:
        await page.click("#create-user-submit")
    assert (await refused.value).status == 200
    await expect(page.locator("#users-error")).to_contain_text("email must be an email address")
    await expect(page.locator("#new-email")).to_have_value("not an address")
    await page.fill("#new-email", ADA)
    await page.fill("#new-password", PASSWORD)
    async with page.expect_navigation():
        await page.click("#create-user-submit")
    await expect(page.locator("#users-notice")).to_have_text(f"Created {ADA}.")
    row = _row(page, ADA)
    await expect(row.locator("td").nth(1)).to_have_text("user")
    await expect(row.locator("td").nth(2)).to_have_text("no")
    assert await _login(ui, ADA) == 200

    await _act(page, ADA, "verify")
    await expect(page.locator("#users-notice")).to_have_text(f"Marked {ADA} verified.")
    await expect(_row(page, ADA).locator("td").nth(2)).to_have_text("yes")

    await _act(page, ADA, "make_admin")
    await expect(_row(page, ADA).locator("td").nth(1)).to_have_text("admin")
    # Ada can sign in to the admin UI now.
    other = await browser.new_page()
    assert (await sign_in(other, ui, email=ADA)).status == 200
    await _act(page, ADA, "remove_admin")
    await expect(_row(page, ADA).locator("td").nth(1)).to_have_text("user")
    await other.goto(ui.url())
    assert other.url.startswith(ui.url("login")), "a demoted admin keeps the admin UI"

    await _act(page, ADA, "disable")
    await expect(_row(page, ADA).locator("td").nth(3)).to_have_text("disabled")
    assert await _login(ui, ADA) == 403
    await _act(page, ADA, "enable")
    await expect(_row(page, ADA).locator("td").nth(3)).to_have_text("enabled")
    assert await _login(ui, ADA) == 200

    # Search and an empty result.
    await page.fill("#users-q", "ada@")
    async with page.expect_navigation():
        await page.press("#users-q", "Enter")
    await expect(page.locator("#users tbody tr")).to_have_count(1)
    await page.goto(ui.url("users?q=nobody"))
    await expect(page.locator("#users tbody")).to_contain_text("No account matches")
    assert watch.errors == []


async def test_the_list_is_paginated(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**NO_LIMITS)
    for n in range(50):  # with the admin: 51 accounts, two pages
        await register(ui.client, f"user{n:02d}@example.com")
    page, _ = await _signed_in_page(ui, browser)
    await expect(page.locator("#users tbody tr")).to_have_count(50)
    await expect(page.locator(".pager")).to_contain_text("Page 1 of 2")
    first = await page.locator("#users tbody tr").evaluate_all("rows => rows.map(r => r.dataset.email)")
    async with page.expect_navigation():
        await page.click("#users-next")
    await expect(page.locator("#users tbody tr")).to_have_count(1)
    await expect(page.locator(".pager")).to_contain_text("Page 2 of 2")
    last = await page.locator("#users tbody tr").get_attribute("data-email")
    assert last not in first and len({*first, last}) == 51


async def test_revoking_sessions_refuses_the_refresh_token(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**NO_LIMITS)
    ada = await register(ui.client, ADA)
    page, _ = await _signed_in_page(ui, browser)
    await _act(page, ADA, "revoke_sessions")
    await expect(page.locator("#users-notice")).to_have_text(f"Revoked every session of {ADA}.")
    refreshed = await ui.client.post("/api/auth/refresh", json={"refresh_token": ada.refresh})
    assert refreshed.status == 401
    me = await ui.client.get("/api/auth/me", headers={"Authorization": f"Bearer {ada.access}"})
    assert me.status == 401


async def test_a_password_reset_email_arrives(make_ui: UiFactory, browser: Any, smtp: Mailbox) -> None:
    ui = await make_ui(**NO_LIMITS, **{"auth.smtp.host": smtp.host, "auth.smtp.port": smtp.port})
    await register(ui.client, ADA)
    page, _ = await _signed_in_page(ui, browser)
    await _act(page, ADA, "send_reset")
    await expect(page.locator("#users-notice")).to_have_text(f"Sent a password reset email to {ADA}.")
    code = await smtp.code(0)
    assert smtp.messages[0]["To"] == ADA
    reset = await ui.client.post(
        "/api/auth/reset", json={"token": code, "new_password": "a new long password"}
    )
    assert reset.status == 204, await reset.text()


async def test_the_last_admin_cannot_be_demoted_or_disabled(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**NO_LIMITS)
    page, watch = await _signed_in_page(ui, browser)
    for action in ("remove_admin", "disable"):
        async with page.expect_navigation() as answer:
            await _row(page, ADMIN).locator(f'button[data-action="{action}"]').click()
        assert (await answer.value).status == 200
        await expect(page.locator("#users-error")).to_contain_text("last enabled admin account")
        await expect(_row(page, ADMIN).locator("td").nth(1)).to_have_text("admin")
        await expect(_row(page, ADMIN).locator("td").nth(3)).to_have_text("enabled")
    assert await _login(ui, ADMIN) == 200
    assert watch.errors == []


async def test_markup_in_emails_and_metadata_renders_as_text(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**NO_LIMITS)
    email = "<script>alert(1)</script>@x.io"
    name = "<img src=x onerror=alert(2)>"
    response = await ui.client.post(
        "/api/auth/register", json={"email": email, "password": PASSWORD, "metadata": {"name": name}}
    )
    assert response.status == 201, await response.text()
    user_id = (await response.json())["user"]["id"]
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    await sign_in(page, ui)
    await page.goto(ui.url("users"))
    row = page.locator(f'#users tbody tr[data-user="{user_id}"]')
    await expect(row.locator(".user-email")).to_have_text(email)
    await expect(row.locator(".user-metadata")).to_have_text('{"name":"' + name + '"}')
    assert await page.locator("#users img, #users script").count() == 0
    html = await page.content()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert dialogs == []


async def test_no_page_shows_a_password_hash(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**NO_LIMITS)
    await register(ui.client, ADA)
    page = await browser.new_page()
    watch = Watch(page)
    await sign_in(page, ui)
    for path in ("", "schema", "users", "tokens", "migrations"):
        response = await page.goto(ui.url(path))
        assert response.status == 200, path
        assert "$2b$" not in await response.text(), path
        await expect(page.locator("h1")).not_to_be_empty()
    assert watch.errors == []
    assert all(u.startswith(ui.origin + "/") for u in watch.urls), watch.urls


def _seed_identities(ui: UI, ada_id: str) -> str:
    """Ada (with a password) linked to GitHub and Google; Bob signs in only with GitLab.
    Rows written with the domain functions into the project's database, as a sign-in would."""
    with closing(sqlite3.connect(ui.project / "data" / "alyx.db")) as conn, conn:
        now, later = "2026-01-02T03:04:05.000Z", "2026-01-02T03:05:00.000Z"
        insert_identity(conn, provider="github", subject="583231", user_id=ada_id,
                        email="ada@users.github.example", email_verified=True, now=now)  # fmt: skip
        insert_identity(conn, provider="google", subject="g-1", user_id=ada_id,
                        email="<b>ada</b>@gmail.example", email_verified=True, now=later)  # fmt: skip
        bob = insert_user(conn, email=BOB, password_hash=None, now=now, verified=True)
        insert_identity(conn, provider="gitlab", subject="gl-7", user_id=bob.id,
                        email=BOB, email_verified=True, now=now)  # fmt: skip
        return bob.id


BOB = "bob@example.com"


async def test_identities_are_listed_and_unlinked_but_never_the_last(
    make_ui: UiFactory, browser: Any
) -> None:
    ui = await make_ui(**NO_LIMITS)
    ada = await register(ui.client, ADA)
    _seed_identities(ui, ada.id)
    page, watch = await _signed_in_page(ui, browser)
    identities = _row(page, ADA).locator(".user-identities li")
    await expect(identities).to_have_count(2)
    await expect(identities.nth(0).locator(".identity-provider")).to_have_text("github")
    await expect(identities.nth(0).locator(".identity-email")).to_have_text("ada@users.github.example")
    await expect(identities.nth(0).locator(".identity-linked")).to_have_text("2026-01-02T03:04:05.000Z")
    await expect(identities.nth(1).locator(".identity-email")).to_have_text("<b>ada</b>@gmail.example")
    await expect(_row(page, ADMIN).locator(".user-identities")).to_have_text("none")

    # Ada has a password: GitHub can go.
    async with page.expect_navigation():
        await identities.nth(0).locator('button[data-action="unlink_identity"]').click()
    await expect(page.locator("#users-notice")).to_have_text(f"Unlinked a sign-in identity from {ADA}.")
    await expect(_row(page, ADA).locator(".user-identities li")).to_have_count(1)
    await expect(_row(page, ADA).locator(".identity-provider")).to_have_text("google")

    # Bob's only way to sign in stays.
    async with page.expect_navigation() as refused:
        await _row(page, BOB).locator('button[data-action="unlink_identity"]').click()
    assert (await refused.value).status == 200
    await expect(page.locator("#users-error")).to_contain_text("this is the account's last way to sign in")
    await expect(_row(page, BOB).locator(".user-identities li")).to_have_count(1)
    assert watch.errors == []


async def test_unlinking_needs_the_csrf_token(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui(**NO_LIMITS)
    ada = await register(ui.client, ADA)
    _seed_identities(ui, ada.id)
    page, _ = await _signed_in_page(ui, browser)
    form = _row(page, ADA).locator(".user-identities form").first
    action = await form.get_attribute("action")
    # A cross-site form (the session cookie, no CSRF token) changes nothing.
    forged = await page.request.post(ui.origin + str(action), form={"q": ""}, max_redirects=0)
    assert forged.status == 403, await forged.text()
    await page.reload()
    await expect(_row(page, ADA).locator(".user-identities li")).to_have_count(2)
