"""The dashboard through `App.run_test()` against a live server on a real port.

Requests, writes and subscriptions are made with a real HTTP client while the dashboard
reads the admin event stream; the tests wait (bounded) for rows to appear.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static, Tree

from alyx_cli.main import cli
from alyx_cli.tui.app import DashboardApp
from alyx_cli.tui.client import AdminClient
from alyx_cli.tui.filters import RequestFilter
from alyx_cli.tui.screens.help import HelpScreen
from alyx_server.app import create_app
from alyx_server.config import default_settings
from tests.schemas import NOTES

SCHEMA = NOTES
WAIT = 15.0  # a bound on waits, never an assertion about speed
SIZE = (160, 48)


async def start_server(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]], schema: str
) -> TestServer:
    """The real application on a real port, serving a project with `schema`."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "schema.yaml").write_text(schema, encoding="utf-8")
    settings = default_settings(root, "dev", overrides={"auth.bcrypt_cost": 4, "logging.level": "warning"})
    return await aiohttp_server(create_app(settings))


@pytest.fixture
async def server(tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await start_server(tmp_path, aiohttp_server, SCHEMA)


def admin_token(server: TestServer) -> str:
    from alyx_server.api.runtime import RUNTIME

    project = server.app[RUNTIME].settings.project_dir
    result = CliRunner().invoke(cli, ["admin", "create-token", "--name", "dash", "-C", str(project)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def until(pilot: Pilot[None], check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not check():
            await pilot.pause(0.05)
    assert check(), what


def column(table: DataTable[Any], index: int) -> list[str]:
    return [str(table.get_row_at(row)[index]) for row in range(table.row_count)]


async def test_rows_appear_as_requests_are_made_and_the_filter_narrows_them(server: TestServer) -> None:
    app = DashboardApp(AdminClient(url_of(server), admin_token(server)))
    async with app.run_test(size=SIZE) as pilot, aiohttp.ClientSession() as http:
        log = app.dashboard.query_one("#request-log", DataTable)
        await until(pilot, lambda: app.dashboard.status_text.startswith("http"), "the status line")
        base = url_of(server)
        async with http.post(base + "/api/collections/notes", json={"title": "one"}) as r:
            assert r.status == 201
        async with http.get(base + "/api/collections/missing") as r:
            assert r.status == 404
        await until(pilot, lambda: "/api/collections/missing" in column(log, 2), "the 404 row")
        assert "/api/collections/notes" in column(log, 2)

        await pilot.press("slash")
        assert app.focused is app.dashboard.query_one("#request-filter", Input)
        for key in "4xx":
            await pilot.press(key)
        await until(pilot, lambda: column(log, 2) == ["/api/collections/missing"], "only the 404")
        await pilot.press("escape")
        assert app.focused is log

        app.dashboard.query_one("#request-filter", Input).value = "POST notes"
        await until(pilot, lambda: set(column(log, 2)) == {"/api/collections/notes"}, "only the POST")
        assert set(column(log, 1)) == {"POST"}

        changes = app.dashboard.query_one("#change-log", DataTable)
        await until(pilot, lambda: any("INSERT notes" in c for c in column(changes, 2)), "the change row")


async def test_tabs_show_connections_and_the_schema_and_help_opens(server: TestServer) -> None:
    app = DashboardApp(AdminClient(url_of(server), admin_token(server)))
    async with app.run_test(size=SIZE) as pilot, aiohttp.ClientSession() as http:
        tree = app.dashboard.query_one("#schema-tree", Tree)
        await until(pilot, lambda: "1 collections" in str(tree.root.label), "the schema tree")
        assert [str(n.label) for n in tree.root.children] == ["notes (2 fields)"]

        ws_url = url_of(server).replace("http", "ws") + "/api/realtime"
        async with http.ws_connect(ws_url) as live:
            await live.send_json({"id": 1, "type": "subscribe", "payload": {"collection": "notes"}})
            await pilot.press("2")
            table = app.dashboard.query_one("#connections", DataTable)
            await until(
                pilot, lambda: table.row_count == 1 and "notes" in column(table, 3)[0], "the subscription"
            )
            assert app.focused is table

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_a_refused_token_is_shown_in_the_status_line(server: TestServer) -> None:
    app = DashboardApp(AdminClient(url_of(server), "alyx_admin_forged"))
    async with app.run_test(size=SIZE) as pilot:
        status = app.dashboard.query_one("#status", Static)
        await until(
            pilot, lambda: "the server wants an admin token" in app.dashboard.status_text, "a refusal"
        )
        assert status.has_class("failed")


@pytest.mark.parametrize(
    ("text", "method", "path", "status", "user", "expected"),
    [
        ("", "GET", "/x", 200, None, True),
        ("get", "GET", "/x", 200, None, True),
        ("POST", "GET", "/x", 200, None, False),
        ("4xx", "GET", "/x", 404, None, True),
        ("status:5xx", "GET", "/x", 404, None, False),
        ("404", "GET", "/x", 404, None, True),
        ("user:ada", "GET", "/x", 200, "ada@example.com", True),
        ("user:anonymous", "GET", "/x", 200, None, True),
        ("NOTES 2xx", "GET", "/api/collections/notes", 201, None, True),
        ("notes 2xx", "GET", "/api/collections/posts", 201, None, False),
    ],
)
def test_request_filter_terms(
    text: str, method: str, path: str, status: int, user: str | None, expected: bool
) -> None:
    request = {"method": method, "path": path, "status": status, "user": user}
    assert RequestFilter(text).matches(request) is expected
