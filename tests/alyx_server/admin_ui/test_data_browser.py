"""The data browser in a real browser: CRUD round trip, live table, escaping, CSRF, queries,
keyset pages and bulk delete (alyx_server/admin_ui/data.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.alyx_server.admin_ui.data_support import admin_token, data_ui, rest_headers
from tests.alyx_server.admin_ui.support import UI, UiFactory, Watch, async_api, sign_in

expect = async_api.expect
XSS = "<img src=x onerror=alert(1)>"


async def _post(ui: UI, token: str, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await ui.client.post(f"/api/collections/{collection}", json=body, headers=rest_headers(token))
    assert response.status == 201, await response.text()
    doc: dict[str, Any] = await response.json()
    return doc


def _answer(page: Any, *, accept: bool, questions: list[str] | None = None) -> None:
    """Answer the page's next confirmation dialog."""

    async def answer(dialog: Any) -> None:
        if questions is not None:
            questions.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    page.once("dialog", answer)


async def _ids(page: Any) -> list[str]:
    ids: list[str] = await page.locator("#docs tbody tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    return ids


async def test_create_edit_delete_round_trip_with_inline_errors(
    make_ui: UiFactory, tmp_path: Path, browser: Any
) -> None:
    ui = await data_ui(make_ui, tmp_path)
    token = admin_token(ui)
    author = await _post(ui, token, "authors", {"name": "Ada"})
    page = await browser.new_page()
    watch = Watch(page)
    await sign_in(page, ui)
    await page.goto(ui.url("data"))
    await page.click("#collections >> text=posts")
    await page.click("#new-doc")
    await expect(page.locator("h1")).to_have_text("New posts document")

    # Too long a title and broken JSON: both shown next to their fields, input kept.
    await page.fill("#f-title", "x" * 41)
    await page.fill("#f-tags", '{"a": ')
    await page.fill("#f-author_id", author["id"])
    await page.click("#save-doc")
    await expect(page.locator("#err-tags")).to_contain_text("tags is not valid JSON")
    await page.fill("#f-tags", '{"a": [1, 2]}')
    await page.click("#save-doc")
    await expect(page.locator("#err-title")).to_contain_text("title")
    await expect(page.locator("#err-title")).to_contain_text("40")
    await expect(page.locator("#f-title")).to_have_attribute("aria-invalid", "true")
    assert await page.input_value("#f-title") == "x" * 41
    assert await page.input_value("#f-tags") == '{"a": [1, 2]}'
    # The message is the REST API's, word for word.
    rest = await ui.client.post(
        "/api/collections/posts", json={"title": "x" * 41}, headers=rest_headers(token)
    )
    details = (await rest.json())["details"]
    assert await page.locator("#err-title").inner_text() == details[0]["message"]

    await page.fill("#f-title", "Hello")
    await page.click("#save-doc")
    await expect(page.locator("#saved-notice")).to_have_text("Created.")
    await expect(page.locator('[data-field="title"]')).to_have_text("Hello")
    await expect(page.locator('[data-field="status"]')).to_have_text("draft")
    assert '"a"' in await page.locator('[data-field="tags"]').inner_text()
    assert "secret" not in await page.locator("#doc").inner_text(), "internal fields are not shown"
    doc_id = await page.locator("#doc-id").inner_text()
    # The reference is a link to the author's page.
    await page.click('[data-field="author_id"] a')
    await expect(page.locator('[data-field="name"]')).to_have_text("Ada")
    await page.go_back()

    # Edit: a value below min is refused inline; then saved.
    await page.click("#edit-doc")
    await page.fill("#f-views", "-1")
    await page.click("#save-doc")
    await expect(page.locator("#err-views")).to_contain_text("views")
    await page.fill("#f-views", "7")
    await page.select_option("#f-published", "true")
    await page.click("#save-doc")
    await expect(page.locator("#saved-notice")).to_have_text("Saved.")
    await expect(page.locator('[data-field="views"]')).to_have_text("7")
    stored = await ui.client.get(f"/api/collections/posts/{doc_id}", headers=rest_headers(token))
    assert (await stored.json())["published"] is True

    # Delete, after the confirmation.
    _answer(page, accept=True)
    await page.click("#delete-doc")
    await expect(page.locator("#deleted-notice")).to_have_text("Deleted 1 document.")
    gone = await ui.client.get(f"/api/collections/posts/{doc_id}", headers=rest_headers(token))
    assert gone.status == 404
    assert watch.errors == []
    assert all(u.startswith(ui.origin + "/") for u in watch.urls), watch.urls


async def test_a_doc_written_through_rest_appears_without_reload(
    make_ui: UiFactory, tmp_path: Path, browser: Any
) -> None:
    ui = await data_ui(make_ui, tmp_path)
    token = admin_token(ui)
    await _post(ui, token, "posts", {"title": "first"})
    page = await browser.new_page()
    watch = Watch(page)
    await sign_in(page, ui)
    await page.goto(ui.url("data/posts"))
    await expect(page.locator("#live")).to_have_attribute("data-live", "on")
    await page.evaluate("window.sameDocument = true")
    await _post(ui, token, "posts", {"title": "written elsewhere"})
    await expect(page.locator("#docs")).to_contain_text("written elsewhere")
    await _post(ui, token, "authors", {"name": "not in this table"})
    assert await page.evaluate("window.sameDocument") is True, "the page was reloaded"
    assert watch.errors == []


async def test_hostile_values_render_as_text(make_ui: UiFactory, tmp_path: Path, browser: Any) -> None:
    ui = await data_ui(make_ui, tmp_path)
    token = admin_token(ui)
    doc = await _post(ui, token, "posts", {"title": XSS, "body": "<script>alert(2)</script>",
                                           "tags": {"<script>": "<b>bold</b>"}})  # fmt: skip
    page = await browser.new_page()
    dialogs: list[str] = []

    async def record(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", record)
    watch = Watch(page)
    await sign_in(page, ui)
    await page.goto(ui.url("data/posts"))
    row = page.locator(f'#docs tr[data-id="{doc["id"]}"]')
    await expect(row).to_contain_text(XSS)
    await expect(row).to_contain_text('{"<script>":"<b>bold</b>"}')
    assert await page.locator("#docs img, #docs b, #docs script").count() == 0
    await page.goto(ui.url(f"data/posts/doc/{doc['id']}"))
    await expect(page.locator('[data-field="title"]')).to_have_text(XSS)
    await expect(page.locator('[data-field="tags"]')).to_contain_text('"<script>": "<b>bold</b>"')
    assert await page.locator("main img, main b, main script").count() == 0
    await page.goto(ui.url(f"data/posts/doc/{doc['id']}/edit"))
    assert await page.input_value("#f-title") == XSS
    # A where= with markup in it comes back in the error message and the input as text.
    hostile = 'doc.nope == "<img src=x onerror=alert(3)>"'
    await page.goto(ui.url("data/posts?" + urlencode({"where": hostile})))
    await expect(page.locator("#query-error")).to_contain_text("<img src=x onerror=alert(3)>")
    assert await page.input_value("#where") == hostile
    assert await page.locator("main img").count() == 0
    assert dialogs == []
    assert watch.errors == []


async def test_changes_without_the_csrf_token_are_refused(
    make_ui: UiFactory, tmp_path: Path, browser: Any
) -> None:
    ui = await data_ui(make_ui, tmp_path)
    token = admin_token(ui)
    doc = await _post(ui, token, "posts", {"title": "keep me"})
    page = await browser.new_page()
    await sign_in(page, ui)
    await page.goto(ui.url("data/posts"))
    for path, form in (
        ("data/posts/delete", {"id": doc["id"]}),
        (f"data/posts/doc/{doc['id']}/delete", {}),
        (f"data/posts/doc/{doc['id']}/edit", {"title": "changed"}),
        ("data/posts/new", {"title": "made"}),
    ):
        refused = await page.request.post(ui.url(path), form=form, max_redirects=0)
        assert refused.status == 403, path
        assert "CSRF" in await refused.text()
        wrong = await page.request.post(ui.url(path), form={**form, "csrf_token": "x" * 43}, max_redirects=0)
        assert wrong.status == 403, path
    stored = await ui.client.get(f"/api/collections/posts/{doc['id']}", headers=rest_headers(token))
    assert (await stored.json())["title"] == "keep me"
    listed = await ui.client.get("/api/collections/posts", headers=rest_headers(token))
    assert (await listed.json())["total"] == 1


async def test_a_bad_where_or_sort_shows_the_rest_error(
    make_ui: UiFactory, tmp_path: Path, browser: Any
) -> None:
    ui = await data_ui(make_ui, tmp_path)
    token = admin_token(ui)
    for n in (3, 1, 2):
        await _post(ui, token, "items", {"n": n, "label": f"item {n}"})
    page = await browser.new_page()
    await sign_in(page, ui)
    await page.goto(ui.url("data/items"))
    await page.fill("#where", "doc.nope > 1")
    await page.click("#apply")
    rest = await ui.client.get(
        "/api/collections/items", params={"where": "doc.nope > 1"}, headers=rest_headers(token)
    )
    message = (await rest.json())["error"]
    await expect(page.locator("#query-error")).to_have_text(message)
    await expect(page.locator("#no-docs")).to_be_visible()
    assert await page.input_value("#where") == "doc.nope > 1", "the query stays in the form"
    await page.fill("#where", "doc.n >= 2")
    await page.fill("#sort", "-zzz")
    await page.click("#apply")
    await expect(page.locator("#query-error")).to_contain_text("unknown field 'zzz' in sort")
    await page.fill("#sort", "-n")
    await page.click("#apply")
    await expect(page.locator("#query-error")).to_have_count(0)
    cells = await page.locator("#docs tbody tr td:nth-child(3)").all_inner_texts()
    assert cells == ["3", "2"]
    await page.goto(ui.url("data/items?after=not-a-cursor"))
    await expect(page.locator("#query-error")).to_contain_text("invalid after cursor")


async def test_keyset_pages_forward_and_back(make_ui: UiFactory, tmp_path: Path, browser: Any) -> None:
    ui = await data_ui(make_ui, tmp_path)
    token = admin_token(ui)
    for n in range(250):
        await _post(ui, token, "items", {"n": n % 7})
    page = await browser.new_page()
    watch = Watch(page)
    await sign_in(page, ui)
    await page.goto(ui.url("data/items?limit=100"))
    first = await _ids(page)
    assert first == [str(i) for i in range(1, 101)]
    await expect(page.locator("#page-prev")).to_have_count(0)
    await page.click("#page-next")
    assert await _ids(page) == [str(i) for i in range(101, 201)]
    await page.click("#page-next")
    assert await _ids(page) == [str(i) for i in range(201, 251)]
    await expect(page.locator("#page-next")).to_have_count(0)
    await page.click("#page-prev")
    assert await _ids(page) == [str(i) for i in range(101, 201)]
    await page.click("#page-prev")
    assert await _ids(page) == first
    await expect(page.locator("#page-prev")).to_have_count(0)
    # With a sort on a field full of ties: every doc once, in order, both ways.
    await page.goto(ui.url("data/items?limit=60&sort=-n"))
    seen: list[str] = []
    pages = [await _ids(page)]
    while await page.locator("#page-next").count():
        await page.click("#page-next")
        pages.append(await _ids(page))
    seen = [i for p in pages for i in p]
    expected = sorted(range(1, 251), key=lambda i: (-((i - 1) % 7), -i))
    assert seen == [str(i) for i in expected]
    for earlier in reversed(pages[:-1]):
        await page.click("#page-prev")
        assert await _ids(page) == earlier
    assert watch.errors == []


async def test_keyset_pages_over_a_nullable_sort_key(make_ui: UiFactory, tmp_path: Path) -> None:
    """NULLs sort first; every doc comes once, forwards and backwards, both directions."""
    ui = await data_ui(make_ui, tmp_path)
    token = admin_token(ui)
    for n in range(40):
        await _post(ui, token, "items", {"n": n, "label": None if n % 3 == 0 else f"l{n % 5}"})
    headers = {**rest_headers(token), "Accept": "text/html"}
    rest = await ui.client.get(
        "/api/collections/items", params={"limit": "1000"}, headers=rest_headers(token)
    )
    docs = (await rest.json())["docs"]
    for sort in ("label", "-label", "label,-n", "-label,n"):
        # The REST API's order (offset paging) is the reference.
        ordered = await ui.client.get(
            "/api/collections/items", params={"limit": "1000", "sort": sort}, headers=rest_headers(token)
        )
        expected = [str(d["id"]) for d in (await ordered.json())["docs"]]
        assert len(expected) == len(docs)
        url = f"/_admin/data/items?limit=7&sort={sort}"
        pages: list[list[str]] = []
        while url:
            response = await ui.client.get(url, headers=headers)
            html = await response.text()
            assert response.status == 200, html
            pages.append(re.findall(r'<tr data-id="([^"]+)"', html))
            found = re.search(r'<a href="([^"]+)" id="page-next"', html)
            url = found.group(1).replace("&amp;", "&") if found else ""
        assert [i for p in pages for i in p] == expected, sort
        # And back from the last page.
        url = re.search(r'<a href="([^"]+)" id="page-prev"', html).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
        back: list[list[str]] = []
        while url:
            html = await (await ui.client.get(url, headers=headers)).text()
            back.append(re.findall(r'<tr data-id="([^"]+)"', html))
            found = re.search(r'<a href="([^"]+)" id="page-prev"', html)
            url = found.group(1).replace("&amp;", "&") if found else ""
        assert list(reversed(back)) == pages[:-1], sort


async def test_bulk_delete_of_the_checked_rows(make_ui: UiFactory, tmp_path: Path, browser: Any) -> None:
    ui = await data_ui(make_ui, tmp_path)
    token = admin_token(ui)
    for n in range(6):
        await _post(ui, token, "items", {"n": n})
    page = await browser.new_page()
    watch = Watch(page)
    await sign_in(page, ui)
    await page.goto(ui.url("data/items"))
    await expect(page.locator("#delete-selected")).to_be_disabled()
    for doc_id in ("2", "3", "5"):
        await page.check(f'#docs tr[data-id="{doc_id}"] input[name="id"]')
    await expect(page.locator("#delete-selected")).to_have_text("Delete selected (3)")
    questions: list[str] = []
    _answer(page, accept=True, questions=questions)
    await page.click("#delete-selected")
    await expect(page.locator("#deleted-notice")).to_have_text("Deleted 3 documents.")
    assert questions and "Delete the selected" in questions[0]
    assert await _ids(page) == ["1", "4", "6"]
    listed = await ui.client.get("/api/collections/items", headers=rest_headers(token))
    assert [d["id"] for d in (await listed.json())["docs"]] == [1, 4, 6]
    # Select all, then the dialog dismissed: nothing is deleted.
    await page.check("#select-all")
    _answer(page, accept=False)
    await page.click("#delete-selected")
    assert await _ids(page) == ["1", "4", "6"]
    assert watch.errors == []
