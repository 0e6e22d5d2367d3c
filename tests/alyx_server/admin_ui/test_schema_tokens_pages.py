"""The schema and tokens pages in a real browser: collections with their fields, indexes
and rules, the pending difference with schema.yaml; tokens created (the secret shown
once, and it works), limited, expiring and revoked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.alyx_server.admin_ui.support import UI, UiFactory, Watch, alyx, async_api, sign_in

expect = async_api.expect

SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string, maxLength: 200 }
      stars: { type: int, default: 0 }
    indexes:
      - { name: idx_notes_title, fields: [title] }
    rules: { read: "true", create: '"<script>alert(1)</script>" != ""' }
  comments:
    fields:
      id:      { type: uuid, primary: true, default: auto }
      note_id: { type: uuid, references: notes.id, onDelete: cascade, index: true }
      body:    { type: text, nullable: true }
"""


def _project(tmp_path: Path, schema: str = SCHEMA) -> Path:
    project = tmp_path / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "schema.yaml").write_text(schema, encoding="utf-8")
    (project / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n", encoding="utf-8")
    return project


async def _page(ui: UI, browser: Any, path: str) -> tuple[Any, Watch]:
    page = await browser.new_page()
    watch = Watch(page)
    page.on("dialog", lambda dialog: dialog.accept())
    await sign_in(page, ui)
    await page.goto(ui.url(path))
    return page, watch


async def test_the_schema_page_shows_collections_and_the_pending_difference(
    make_ui: UiFactory, browser: Any, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    alyx(project, "migrate", "apply")
    ui = await make_ui(**{"dev.auto_migrate": False})
    page, watch = await _page(ui, browser, "schema")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await expect(page.locator("#schema-up-to-date")).to_be_visible()
    notes = page.locator("#c-notes")
    title = notes.locator('tr[data-field="title"] td')
    await expect(title.nth(1)).to_have_text("string")
    await expect(title.nth(2)).to_have_text("required, maxLength: 200")
    await expect(title.nth(5)).to_have_text("in an index")
    await expect(notes.locator('tr[data-field="stars"] td').nth(3)).to_have_text("0")
    await expect(notes.locator('tr[data-field="id"] td').nth(3)).to_have_text("auto")
    await expect(notes.locator("ul.plain")).to_contain_text("idx_notes_title (title)")
    # Rule text is shown as written, markup included, as text.
    await expect(notes.locator(".rules")).to_contain_text('"<script>alert(1)</script>" != ""')
    await expect(notes.locator(".rules")).to_contain_text("admins only")
    note_id = page.locator('#c-comments tr[data-field="note_id"] td')
    await expect(note_id.nth(5)).to_have_text("own")
    await note_id.nth(4).locator("a").click()
    assert page.url.endswith("#c-notes")

    # schema.yaml is edited: a field added (safe), one dropped (destructive: blocked).
    edited = SCHEMA.replace(
        "      stars: { type: int, default: 0 }\n", "      pinned: { type: bool, default: false }\n"
    )
    (project / "schema.yaml").write_text(edited, encoding="utf-8")
    await page.goto(ui.url("schema"))
    rows = page.locator("#pending-changes tbody tr")
    await expect(page.locator('#pending-changes tr[data-state="auto"]')).to_contain_text("pinned")
    await expect(page.locator('#pending-changes tr[data-state="blocked"]')).to_contain_text("stars")
    await expect(page.locator("#pending-blocked")).to_contain_text("alyx migrate create drop_stars")
    assert await rows.count() == 2
    # The schema in force has not changed.
    await expect(page.locator('#c-notes tr[data-field="stars"]')).to_have_count(1)

    (project / "schema.yaml").write_text("version: 1\ncollections: [", encoding="utf-8")
    await page.goto(ui.url("schema"))
    await expect(page.locator("#schema-problem")).to_contain_text("schema.yaml")
    assert watch.errors == [] and dialogs == []


async def test_a_token_is_shown_once_works_and_is_revoked(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui()
    page, watch = await _page(ui, browser, "tokens")
    await expect(page.locator("#tokens tbody")).to_contain_text("No tokens yet")
    await page.fill("#token-name", "ci-script")
    async with page.expect_navigation() as created:
        await page.click("#create-token-submit")
    answer = await created.value
    assert answer.status == 201
    secret = (await page.locator("#new-token-secret").inner_text()).strip()
    assert secret.startswith("alyx_admin_")
    assert (await answer.text()).count(secret) == 1
    await expect(page.locator('#tokens tr[data-name="ci-script"] td').nth(2)).to_have_text("*")

    bearer = {"Authorization": f"Bearer {secret}"}
    users = await ui.client.get("/api/admin/users", headers=bearer)
    assert users.status == 200
    # Scripts may use the UI's routes with it too (JSON answers).
    listed = await ui.client.get("/_admin/tokens", headers=bearer)
    assert listed.status == 200 and secret not in await listed.text()

    # Never again: not on the list, not after a reload.
    await page.goto(ui.url("tokens"))
    assert secret not in await page.content()
    await expect(page.locator("#new-token-secret")).to_have_count(0)

    async with page.expect_navigation():
        await page.locator('#tokens tr[data-name="ci-script"] button[data-action="revoke"]').click()
    await expect(page.locator("#tokens-notice")).to_have_text("Revoked the token 'ci-script'.")
    await expect(page.locator('#tokens tr[data-name="ci-script"] td').nth(6)).to_have_text("revoked")
    refused = await ui.client.get("/api/admin/users", headers=bearer)
    assert refused.status == 401
    assert watch.errors == []


async def test_a_token_with_permissions_and_an_expiry(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui()
    page, watch = await _page(ui, browser, "tokens")
    await page.fill("#token-name", "stats only")
    await page.check('input[name="permissions"][value="stats"]')
    await page.fill("#token-expires", "1h")
    async with page.expect_navigation():
        await page.click("#create-token-submit")
    secret = (await page.locator("#new-token-secret").inner_text()).strip()
    bearer = {"Authorization": f"Bearer {secret}"}
    assert (await ui.client.get("/api/admin/stats", headers=bearer)).status == 200
    assert (await ui.client.get("/api/admin/users", headers=bearer)).status == 403
    assert (await ui.client.get("/_admin/users", headers=bearer)).status == 403
    ui.clock.advance(3601)
    expired = await ui.client.get("/api/admin/stats", headers=bearer)
    assert expired.status == 401 and (await expired.json())["code"] == "TOKEN_EXPIRED"
    await page.goto(ui.url("tokens"))
    await expect(page.locator('#tokens tr[data-name="stats only"] td').nth(6)).to_have_text("expired")

    # A bad expiry and a taken name are refused on the form.
    await page.fill("#token-name", "again")
    await page.fill("#token-expires", "soon")
    async with page.expect_navigation() as refused:
        await page.click("#create-token-submit")
    assert (await refused.value).status == 200
    await expect(page.locator("#tokens-error")).to_contain_text("bad duration 'soon'")
    await expect(page.locator("#token-name")).to_have_value("again")
    await page.fill("#token-expires", "")
    async with page.expect_navigation():
        await page.click("#create-token-submit")
    await page.fill("#token-name", "again")
    async with page.expect_navigation() as clash:
        await page.click("#create-token-submit")
    assert (await clash.value).status == 200
    await expect(page.locator("#tokens-error")).to_contain_text("a live token named 'again' exists")
    assert watch.errors == []
