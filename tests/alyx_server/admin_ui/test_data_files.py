"""File fields in the data browser, in a real browser: uploads on create and edit
(multipart forms with their CSRF token), links and image thumbnails, removing and
appending files, and files deleted after the write that released them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from tests.alyx_server.admin_ui.data_support import admin_token, rest_headers
from tests.alyx_server.admin_ui.support import UI, UiFactory, Watch, async_api, sign_in

expect = async_api.expect
SCHEMA = """\
version: 1
collections:
  albums:
    fields:
      id:       { type: uuid, primary: true, default: auto }
      title:    { type: string, minLength: 1 }
      cover:    { type: file, nullable: true, mimeTypes: [image/png], thumbs: [32x32] }
      pages:    { type: file, nullable: true, maxFiles: 3 }
      contract: { type: file, nullable: true, protected: true }
"""


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (60, 40), "green").save(out, "PNG")
    return out.getvalue()


async def _ui(make_ui: UiFactory, tmp_path: Path) -> UI:
    project = tmp_path / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    (project / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n", encoding="utf-8")
    return await make_ui()


def _stored(ui: UI) -> list[Path]:
    root = ui.project / "data" / "storage" / "albums"
    return (
        sorted(p for p in root.rglob("*") if p.is_file() and "thumbs" not in p.parts) if root.exists() else []
    )


async def test_upload_show_replace_and_remove_files(make_ui: UiFactory, tmp_path: Path, browser: Any) -> None:
    ui = await _ui(make_ui, tmp_path)
    token = admin_token(ui)
    image, contract = _png(), b"%PDF-1.4 contract"
    page = await browser.new_page()
    watch = Watch(page)
    await sign_in(page, ui)
    await page.goto(ui.url("data/albums/new"))
    assert await page.get_attribute("#doc-form", "enctype") == "multipart/form-data"

    # An HTML file named .png is refused next to its field, and nothing stays stored.
    await page.fill("#f-title", "Trip")
    html = b"<html><script>1</script></html>"
    await page.set_input_files("#f-cover", files=[{"name": "x.png", "mimeType": "image/png", "buffer": html}])
    await page.click("#save-doc")
    await expect(page.locator("#err-cover")).to_contain_text("text/html")
    assert _stored(ui) == []

    await page.set_input_files(
        "#f-cover", files=[{"name": "me.png", "mimeType": "image/png", "buffer": image}]
    )
    await page.set_input_files("#f-pages", files=[
        {"name": "one.txt", "mimeType": "text/plain", "buffer": b"page one"},
        {"name": "two.txt", "mimeType": "text/plain", "buffer": b"page two"},
    ])  # fmt: skip
    await page.set_input_files("#f-contract", files=[
        {"name": "c.pdf", "mimeType": "application/pdf", "buffer": contract}])  # fmt: skip
    await page.click("#save-doc")
    await expect(page.locator("#saved-notice")).to_have_text("Created.")
    doc_id = await page.locator("#doc-id").inner_text()
    assert len(_stored(ui)) == 4

    # Links and a thumbnail that loads (the page's own origin, same CSP).
    cover = page.locator('[data-field="cover"]')
    await expect(cover.locator("img.thumb")).to_have_count(1)
    width = await cover.locator("img.thumb").evaluate("img => img.complete ? img.naturalWidth : -1")
    assert width == 32
    href = await cover.locator("a.file-link").get_attribute("href")
    assert href is not None
    got = await page.request.get(ui.origin + href)
    assert got.status == 200 and await got.body() == image
    # A protected file opens for the admin too.
    link = await page.locator('[data-field="contract"] a.file-link').get_attribute("href")
    assert await (await page.request.get(ui.origin + str(link))).body() == contract
    stored = await (
        await ui.client.get(f"/api/collections/albums/{doc_id}", headers=rest_headers(token))
    ).json()
    assert [p["size"] for p in stored["pages"]] == [8, 8]

    # Edit: remove one page, append another, replace the cover.
    await page.click("#edit-doc")
    first = stored["pages"][0]["name"]
    await page.check(f'input[name="pages-"][value="{first}"]')
    await page.set_input_files("#f-pages", files=[{"name": "three.txt", "mimeType": "text/plain",
                                                   "buffer": b"page three"}])  # fmt: skip
    await page.set_input_files(
        "#f-cover", files=[{"name": "new.png", "mimeType": "image/png", "buffer": _png()}]
    )
    await page.click("#save-doc")
    await expect(page.locator("#saved-notice")).to_have_text("Saved.")
    after = await (
        await ui.client.get(f"/api/collections/albums/{doc_id}", headers=rest_headers(token))
    ).json()
    assert [p["size"] for p in after["pages"]] == [8, 10]
    assert after["cover"]["name"].startswith("new_")
    assert len(_stored(ui)) == 4  # the old cover and the removed page are gone after the commit

    # The table links each file.
    await page.goto(ui.url("data/albums"))
    await expect(page.locator("#docs a.file-link")).to_have_count(4)
    assert watch.errors == []
