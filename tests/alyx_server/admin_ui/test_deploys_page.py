"""The migrations and deploys page in a real browser: the history after two deploys, and
a rollback from the page, planned and confirmed, that brings the previous version back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.alyx_server.admin_ui.support import UiFactory, Watch, async_api, sign_in
from tests.alyx_server.api.deploy_support import WITH_BODY, deploy, developer_project, execute, prepare, token

expect = async_api.expect

WITH_TAGS = WITH_BODY.replace(
    "      body:  { type: string, nullable: true }\n",
    "      body:  { type: string, nullable: true }\n      tags:  { type: json, nullable: true }\n",
)
MARKUP = "<img src=x onerror=alert(1)>"


async def test_the_history_shows_deploys_and_a_rollback_brings_the_previous_back(
    make_ui: UiFactory, browser: Any, tmp_path: Path
) -> None:
    ui = await make_ui()
    secret = await token(ui.client, ui.clock)
    developer = developer_project(tmp_path / "developer")
    await deploy(ui.client, secret, developer)
    (developer / "schema.yaml").write_text(WITH_TAGS, encoding="utf-8")
    status, plan = await prepare(ui.client, developer, secret)
    assert status == 200, plan
    status, done = await execute(ui.client, secret, plan, message=MARKUP, git_commit="0123456789abcdef")
    assert status == 200 and done["version"] == 2, done
    created = await ui.client.post("/api/collections/notes", json={"title": "t", "tags": ["a"]})
    assert created.status == 201, await created.text()

    page = await browser.new_page()
    watch = Watch(page)
    dialogs: list[str] = []

    async def answer(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.accept()

    page.on("dialog", answer)
    await sign_in(page, ui)
    await page.goto(ui.url("migrations"))
    rows = page.locator("#deployments tbody tr")
    await expect(rows).to_have_count(2)
    newest = page.locator('#deployments tr[data-version="2"]')
    await expect(newest).to_have_attribute("aria-current", "true")
    await expect(newest).to_contain_text("in force")
    await expect(newest).to_contain_text(MARKUP)  # as text
    await expect(newest).to_contain_text("git 0123456789")
    await expect(newest).to_contain_text("schema changes")
    await expect(page.locator('#deployments tr[data-version="1"]')).to_contain_text("applied")
    await expect(page.locator("#migrations tbody tr")).not_to_have_count(0)
    assert await page.locator("#deployments img").count() == 0

    # The plan first: nothing is changed by looking at it.
    await page.click("#rollback-previous")
    await expect(page.locator("h1")).to_have_text("Roll back to version 1")
    plan_box = page.locator("#rollback-plan")
    await expect(plan_box).to_contain_text("In force now")
    await expect(plan_box).to_contain_text("v2")
    await expect(plan_box).to_contain_text("auto")  # the history row that added tags is undone
    status_now = await ui.client.get(
        "/api/admin/deploy/status", headers={"Authorization": f"Bearer {secret}"}
    )
    assert (await status_now.json())["version"] == 2

    # Then the confirmation.
    async with page.expect_navigation():
        await page.click("#rollback-confirm")
    assert dialogs == ["Roll the server back to version 1 now?"]
    await expect(page.locator("#deploys-notice")).to_have_text(
        "Rolled back to version 1, now in force as version 3."
    )
    await expect(page.locator('#deployments tr[data-version="3"]')).to_contain_text("in force")
    await expect(page.locator('#deployments tr[data-version="2"]')).to_have_attribute(
        "data-outcome", "rolled_back"
    )
    after = await ui.client.get("/api/admin/deploy/status", headers={"Authorization": f"Bearer {secret}"})
    assert (await after.json())["version"] == 3
    # Version 1's schema is back: tags is gone.
    refused = await ui.client.post("/api/collections/notes", json={"title": "t", "tags": ["a"]})
    assert refused.status == 400, await refused.text()
    accepted = await ui.client.post("/api/collections/notes", json={"title": "t", "body": "b"})
    assert accepted.status == 201
    assert watch.errors == []


async def test_a_rollback_with_nothing_to_go_back_to_is_explained(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui()
    page = await browser.new_page()
    watch = Watch(page)
    await sign_in(page, ui)
    await page.goto(ui.url("migrations"))
    await expect(page.locator("#deployments")).to_have_count(0)
    await expect(page.locator("main")).to_contain_text("Nothing deployed yet")
    await expect(page.locator("#migrations tbody tr")).not_to_have_count(0)
    response = await page.goto(ui.url("migrations/rollback"))
    assert response.status == 404
    await expect(page.locator("#error-message")).to_contain_text("nothing was deployed to this server yet")
    assert [e for e in watch.errors if "status of 404" not in e] == []
