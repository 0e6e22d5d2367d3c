"""`alyx dev` prints the admin UI's address and a one-time sign-in link that works once."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.alyx_server.admin_ui.support import ADMIN, PASSWORD, alyx, async_api
from tests.servers import DEADLINE, AlyxProcess

expect = async_api.expect
LINK = re.compile(r"^Admin UI: (\S+) - sign in as (\S+) with (\S+) \(works once, for 15 min\)$", re.M)


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "schema.yaml").write_text("version: 1\ncollections: {}\n", encoding="utf-8")
    (project / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n", encoding="utf-8")
    return project


def _console_line(server: AlyxProcess, pattern: re.Pattern[str]) -> re.Match[str]:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        found = pattern.search(server.output())
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern.pattern} in:\n{server.output()}")


async def test_alyx_dev_prints_a_one_time_sign_in_link(tmp_path: Path, browser: Any) -> None:
    project = _project(tmp_path)
    with AlyxProcess(project, "dev") as server:
        hint = _console_line(server, re.compile(r"^Admin UI: (\S+) \((.*)\)$", re.M))
        assert hint[1] == f"{server.url}/_admin/"
        assert "alyx admin create <email>" in hint[2]
    alyx(project, "admin", "create", ADMIN, "--password-stdin", stdin=PASSWORD + "\n")
    with AlyxProcess(project, "dev") as server:
        found = _console_line(server, LINK)
        assert found[1] == f"{server.url}/_admin/" and found[2] == ADMIN
        link = found[3]
        assert link.startswith(f"{server.url}/_admin/link/")
        page = await browser.new_page()
        await page.goto(link)
        assert page.url == f"{server.url}/_admin/"
        await expect(page.locator("h1")).to_have_text("Overview")
        # Once only: another browser cannot use it again.
        other = await (await browser.new_context()).new_page()
        response = await other.goto(link)
        assert response is not None and response.status == 401
        await expect(other.locator("#signin-message")).to_contain_text("already used")
