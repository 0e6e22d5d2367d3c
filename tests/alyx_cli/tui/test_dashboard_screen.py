"""What the dashboard's screen shows: the status line below the header, the Schema tab's
field flags, the Realtime tab's whole query. Through `App.run_test()` against a live
server on a real port (or a port nothing listens on)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from textual.widgets import DataTable, Header, Static, Tree

from alyx_cli.tui.app import DashboardApp
from alyx_cli.tui.client import AdminClient
from tests.alyx_cli.tui.test_dashboard import SIZE, admin_token, column, start_server, until, url_of
from tests.servers import free_port

SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string, unique: true }
      tags:  { type: json, nullable: true }
    rules: { create: "true", read: "true", update: "true", delete: "doc.tags[0] == 'x'" }
  comments:
    fields:
      id:      { type: uuid, primary: true, default: auto }
      note_id: { type: uuid, references: notes.id, index: true }
      body:    { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""


@pytest.fixture
async def server(tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await start_server(tmp_path, aiohttp_server, SCHEMA)


def shown_status(app: DashboardApp) -> str:
    """The status line's text, if it is what the screen shows on its row (not covered)."""
    status = app.dashboard.query_one("#status", Static)
    header = app.dashboard.query_one(Header)
    assert status.region.height >= 1
    assert not status.region.overlaps(header.region), (status.region, header.region)
    for y in range(status.region.y, status.region.bottom):
        widget, _ = app.screen.get_widget_at(2, y)
        assert widget is status, (y, widget)
    return str(status.render())


async def test_a_server_that_is_down_is_shown_in_the_status_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    app = DashboardApp(AdminClient(url, "alyx_admin_whatever"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "cannot reach" in app.dashboard.status_text, "the failure")
        await pilot.pause()

        text = shown_status(app)

        assert text.startswith(f"cannot reach {url}: ")
        assert app.dashboard.query_one("#status", Static).has_class("failed")


async def test_a_wrong_token_is_shown_in_the_status_line_with_its_hint(server: TestServer) -> None:
    app = DashboardApp(AdminClient(url_of(server), "alyx_admin_forged"))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "admin token" in app.dashboard.status_text, "the refusal")
        await pilot.pause()

        text = shown_status(app)

        assert text.startswith("the server wants an admin token: ")
        assert "alyx admin create-token" in text


async def test_the_status_line_shows_the_statistics_once_connected(server: TestServer) -> None:
    app = DashboardApp(AdminClient(url_of(server), admin_token(server)))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.dashboard.status_text.startswith("http"), "the statistics")
        await pilot.pause()

        assert shown_status(app).startswith(f"{url_of(server)} · dev · up ")


async def test_the_schema_tab_shows_field_flags_and_rules_as_written(server: TestServer) -> None:
    app = DashboardApp(AdminClient(url_of(server), admin_token(server)))
    async with app.run_test(size=SIZE) as pilot:
        tree = app.dashboard.query_one("#schema-tree", Tree)
        await until(pilot, lambda: "2 collections" in str(tree.root.label), "the schema tree")
        await pilot.press("5")

        leaves = {str(c.label): [str(leaf.label) for leaf in c.children] for c in tree.root.children}

    assert leaves["notes (3 fields)"][:3] == [
        "id: uuid [primary]",
        "title: string [unique]",
        "tags: json [nullable]",
    ]
    assert "delete: doc.tags[0] == 'x'" in leaves["notes (3 fields)"]
    assert leaves["comments (3 fields)"][1] == "note_id: uuid [index, -> notes.id]"


async def test_the_realtime_tab_shows_the_whole_query_sort_included(server: TestServer) -> None:
    app = DashboardApp(AdminClient(url_of(server), admin_token(server)))
    async with app.run_test(size=SIZE) as pilot, aiohttp.ClientSession() as http:
        ws_url = url_of(server).replace("http", "ws") + "/api/realtime"
        async with http.ws_connect(ws_url) as live:
            subscribe = {
                "collection": "comments",
                "filter": {"body": {"$ne": "x"}},
                "where": "doc.body != '[b]'",
                "sort": ["-body", "id"],
                "limit": 5,
                "expand": ["note_id"],
            }
            await live.send_json({"id": 1, "type": "subscribe", "payload": subscribe})
            answer = await live.receive_json()
            while answer.get("id") != 1:
                answer = await live.receive_json()
            assert answer["type"] == "snapshot", answer
            await pilot.press("2")
            table = app.dashboard.query_one("#connections", DataTable)
            await until(pilot, lambda: table.row_count == 1 and "comments" in column(table, 3)[0], "the row")

            query = column(table, 4)[0]

    assert query == "body:ne:x where doc.body != '[b]' sort -body,id limit 5 expand note_id"
