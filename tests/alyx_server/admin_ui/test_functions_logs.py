"""The functions and logs pages in a real browser, with real function workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.alyx_server.admin_ui.support import ADMIN, PASSWORD, UI, UiFactory, Watch, async_api, sign_in

expect = async_api.expect

XSS = "<img src=x onerror=alert(1)>"

HELLO_PY = f'''
from alyx_functions import define_function


async def handler(input, ctx):
    ctx.log.info("hello", input["name"])
    ctx.log.warn("{XSS}")
    return {{"greeting": "Hello, " + input["name"], "markup": "{XSS}"}}


hello = define_function(handler=handler)
'''
HELLO_YAML = """\
input:
  name: { type: string, minLength: 1 }
rule: "auth != null"
"""
SHOUT_NODE = """import { defineFunction } from "@alyx/functions";

export default defineFunction({
  async handler(input, ctx) {
    ctx.log.info("shouting");
    return { loud: String(input.text ?? "").toUpperCase() };
  },
});
"""
BROKEN_YAML = "timeout: <b>forever</b>\n"


def write_functions(project: Path) -> None:
    folder = project / "functions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hello.py").write_text(HELLO_PY)
    (folder / "hello.yaml").write_text(HELLO_YAML)
    (folder / "shout.mjs").write_text(SHOUT_NODE)
    (folder / "broken.py").write_text(HELLO_PY.replace("hello =", "broken ="))
    (folder / "broken.yaml").write_text(BROKEN_YAML)


async def functions_ui(make_ui: UiFactory, project: Path) -> UI:
    write_functions(project)
    return await make_ui(**{"functions.pool.min_warm": 0, "auth.rate_limit.login": "off"})


async def admin_token(ui: UI) -> str:
    response = await ui.client.post("/api/auth/login", json={"email": ADMIN, "password": PASSWORD})
    assert response.status == 200, await response.text()
    token: str = (await response.json())["tokens"]["access_token"]
    return token


def dialogs_of(page: Any) -> list[str]:
    seen: list[str] = []

    async def dismiss(dialog: Any) -> None:
        seen.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    return seen


async def test_invoke_shows_the_result_and_the_log_lines_as_text(
    make_ui: UiFactory, browser: Any, tmp_path: Path
) -> None:
    ui = await functions_ui(make_ui, tmp_path / "project")
    page = await browser.new_page()
    watch = Watch(page)
    dialogs = dialogs_of(page)
    await sign_in(page, ui)
    await page.goto(ui.url("functions"))
    await expect(page.locator("h1")).to_have_text("Functions")
    hello = page.locator('tr[data-function="hello"]')
    await expect(hello).to_contain_text("python")
    await expect(hello).to_contain_text("auth != null")
    await expect(page.locator('tr[data-function="shout"]')).to_contain_text("node")
    await expect(page.locator('tr[data-function="shout"]')).to_contain_text("admins only")
    broken = page.locator('tr[data-function="broken"]')
    await expect(broken).to_contain_text("cannot load")
    await expect(broken).to_contain_text("<b>forever</b>")

    await hello.locator("a").click()
    await page.wait_for_url(ui.url("functions/hello"))
    manifest = page.locator(".card").first
    await expect(manifest).to_contain_text("name: string")
    await expect(manifest).to_contain_text("none")  # network
    # An input the manifest refuses: the 400 and its field, on the page.
    await page.fill("#invoke-input", '{"name": ""}')
    await page.click("#invoke")
    await expect(page.locator("#result-status")).to_have_text("400 VALIDATION_ERROR")
    await expect(page.locator("#result")).to_contain_text("name")
    # Not JSON: said before anything is sent.
    await page.fill("#invoke-input", '{"name": ')
    await page.click("#invoke")
    await expect(page.locator("#result-error")).to_contain_text("the input is not JSON")

    await page.fill("#invoke-input", '{"name": "Ada"}')
    await page.click("#invoke")
    await expect(page.locator("#result-status")).to_have_text("200 success")
    await expect(page.locator("#result-output")).to_contain_text('"greeting": "Hello, Ada"')
    logs = page.locator("#result-logs li")
    await expect(logs).to_have_text(["info hello Ada", f"warn {XSS}"])
    await expect(page.locator("#result-output")).to_contain_text(XSS)
    assert await page.locator("#invoke-result img").count() == 0

    # The recent invocations: this one, with its logs (rendered by functions.js).
    first = page.locator("#recent tbody tr").first
    await expect(first).to_contain_text("200 ok")
    await expect(first).to_contain_text(ADMIN)
    await first.locator("summary").click()
    await expect(first.locator("li").nth(1)).to_have_text(f"warn {XSS}")
    # A call through the REST API meanwhile appears without a reload (the events stream).
    token = await admin_token(ui)
    answer = await ui.client.post(
        "/api/functions/hello", json={"input": {"name": "Bob"}}, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status == 200, await answer.text()
    request_id = answer.headers["X-Request-Id"]
    await expect(page.locator("#recent tbody tr").first).to_contain_text(request_id)

    # The page rendered by the server shows the same, escaped by the templates.
    await page.reload()
    rows = page.locator("#recent tbody tr")
    await expect(rows).to_have_count(2)  # the refused input did not run: not an invocation
    await expect(rows.first).to_contain_text(request_id)
    await rows.first.locator("summary").click()
    await expect(rows.first.locator("li").nth(1)).to_have_text(f"warn {XSS}")
    await expect(rows.nth(1)).to_contain_text(ADMIN)
    assert await page.locator("main img").count() == 0
    assert dialogs == []
    assert watch.errors == []
    assert all(u.startswith(ui.origin + "/") or u.startswith("ws://") for u in watch.urls), watch.urls


async def test_invoke_without_javascript_and_without_the_csrf_token(
    make_ui: UiFactory, browser: Any, tmp_path: Path
) -> None:
    ui = await functions_ui(make_ui, tmp_path / "project")
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await sign_in(page, ui)
    await page.goto(ui.url("functions/shout"))
    await page.fill("#invoke-input", '{"text": "quiet"}')
    async with page.expect_navigation():
        await page.click("#invoke")
    await expect(page.locator("#result-status")).to_have_text("200 success")
    await expect(page.locator("#result-output")).to_contain_text('"loud": "QUIET"')
    await expect(page.locator("#result-logs li")).to_have_text(["info shouting"])
    # The session's cookie alone does not invoke anything: the CSRF token is required.
    cookies = {c["name"]: c["value"] for c in await context.cookies()}
    answer = await ui.client.post(
        "/_admin/functions/shout/invoke",
        json={"input": {}},
        cookies=cookies,
        headers={"Origin": ui.origin, "Accept": "application/json"},
    )
    assert answer.status == 403
    assert (await answer.json())["code"] == "CSRF_FAILED"
    await context.close()


async def test_the_logs_page_streams_filters_and_pauses(make_ui: UiFactory, browser: Any) -> None:
    ui = await make_ui()
    page = await browser.new_page()
    watch = Watch(page)
    dialogs = dialogs_of(page)
    await sign_in(page, ui)
    await page.goto(ui.url("logs"))
    state = page.locator("#log-state")
    await expect(state).to_contain_text("Live")
    rows = page.locator("#logs tbody tr")

    assert (await ui.client.get("/health")).status == 200
    health = rows.filter(has_text="/health")
    await expect(health).to_have_count(1)
    await expect(health).to_contain_text("GET")
    await expect(health).to_contain_text("200")
    await expect(page.locator("#log-worker option")).to_have_text(["all", "1"])
    # Markup in a path is text.
    answer = await ui.client.get("/api/collections/%3Cimg%20src=x%20onerror=alert(1)%3E/docs")
    assert answer.status == 404
    markup = rows.filter(has_text=XSS)
    await expect(markup).to_have_count(1)
    await expect(markup).to_contain_text("404")
    assert await page.locator("#logs img").count() == 0

    # Filters: text (with exclusion), status class, method.
    await page.fill("#log-text", "health")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("/health")
    await page.fill("#log-text", "/api -_admin")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(XSS)
    await page.fill("#log-text", "")
    await page.select_option("#log-status", "4")
    await expect(rows.filter(has_text="/health")).to_have_count(0)
    await expect(markup).to_have_count(1)
    await page.select_option("#log-status", "")
    assert (await ui.client.post("/api/auth/login", json={})).status == 400
    await page.select_option("#log-method", "POST")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("/api/auth/login")
    await page.select_option("#log-method", "")

    # Paused: a new request waits (counted), and appears on resume.
    await page.click("#log-pause")
    await expect(page.locator("#log-pause")).to_have_attribute("aria-pressed", "true")
    assert (await ui.client.get("/health?while=paused")).status == 200
    await expect(state).to_contain_text("paused, 1 new waiting")
    await expect(rows.filter(has_text="while=paused")).to_have_count(0)
    await page.click("#log-pause")
    await expect(rows.filter(has_text="while=paused")).to_have_count(1)
    await expect(rows.first).to_contain_text("while=paused")
    assert dialogs == []
    assert watch.errors == []
