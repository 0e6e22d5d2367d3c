"""The admin UI under test: the real application on a real port, Debian's chromium.

`ui` (fixture) builds `create_app` with a `ManualClock` and fast bcrypt, on a loopback
port, with one admin account (`ADMIN`, made by `alyx admin create`) and, on request, a
user who is not an admin. `browser` is chromium driven by Playwright's async API (the
same event loop serves the application). `sign_in(page, ui)` signs the admin in through
the form; `Watch(page)` records console errors and every URL the page asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.app import create_app
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.auth.support import PASSWORD, make_auth_settings

# Installed by `make test` (the `test` extra); never `playwright install`: the browser is Debian's.
async_api = pytest.importorskip("playwright.async_api", reason="playwright comes with the test extra")

__all__ = [
    "ADMIN",
    "CHROMIUM",
    "PASSWORD",
    "UI",
    "Watch",
    "async_api",
    "browser",
    "make_ui",
    "sign_in",
]

ADMIN = "root@example.com"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]


@dataclass
class UI:
    """A running application with an admin account, and how to reach its admin UI."""

    client: TestClient[Any, Any]
    project: Path
    clock: ManualClock

    @property
    def origin(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    def url(self, path: str = "") -> str:
        return f"{self.origin}/_admin/{path}"


def alyx(project: Path, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, [*args, "-C", str(project)], input=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


UiFactory = Callable[..., Awaitable[UI]]


@pytest.fixture
async def make_ui(
    tmp_path: Path, clock: ManualClock, aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]
) -> UiFactory:
    """`await make_ui(**settings overrides)`: the application, with the admin account made."""

    async def build(**overrides: object) -> UI:
        project = tmp_path / "project"
        settings = make_auth_settings(project, **overrides)
        client = await aiohttp_client(create_app(settings, clock=clock))
        alyx(project, "admin", "create", ADMIN, "--password-stdin", stdin=PASSWORD + "\n")
        return UI(client, project, clock)

    return build


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: make test installs Debian's chromium"
    async with async_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Watch:
    """What a page did: console errors, page errors, and every URL it requested."""

    page: Any
    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.urls.append(r.url))


async def sign_in(page: Any, ui: UI, email: str = ADMIN, password: str = PASSWORD) -> Any:
    """Sign in through the form; returns the response to the form's submission."""
    await page.goto(ui.url("login"))
    await page.fill("#email", email)
    await page.fill("#password", password)
    async with page.expect_navigation() as navigation:
        await page.click("#sign-in")
    return await navigation.value
