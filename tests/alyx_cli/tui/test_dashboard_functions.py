"""The Functions tab lists each function with what runs it and a schedule's next and last
runs, read from `/api/admin/functions` of a live server on a real port with real function
workers; the schedules run on an injected clock, ticked by the test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp.test_utils import TestServer
from textual.widgets import DataTable

from alyx_cli.tui.app import DashboardApp
from alyx_cli.tui.client import AdminClient
from alyx_server.api.automation import AUTOMATION
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_cli.tui.test_dashboard import SIZE, admin_token, column, until, url_of
from tests.alyx_server.automation.support import RECORD_PY, TICK_PY, make_app, write_project

PLAIN_PY = """\
from alyx_functions import define_function


def handler(input, ctx):
    return {"ok": True}


hello = define_function(handler=handler)
"""


async def test_the_functions_tab_shows_schedules_with_next_and_last_runs(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    root = write_project(
        tmp_path / "project",
        {
            "fivemin.py": TICK_PY,
            "fivemin.yaml": 'env: { NAME: fivemin }\nschedule: "*/5 * * * *"\ntimezone: Europe/Paris\n',
            "often.py": TICK_PY,
            "often.yaml": "env: { NAME: often }\nevery: 30s\n",
            "record.py": RECORD_PY,
            "record.yaml": "on: { collection: posts, events: [create, update] }\n",
            "hello.py": PLAIN_PY,
        },
    )
    clock = ManualClock("2026-03-02T07:58:10Z")
    app = make_app(root, clock=clock)
    app[AUTOMATION].run_scheduler = False
    server = await aiohttp_server(app)
    dashboard = DashboardApp(AdminClient(url_of(server), admin_token(server)))
    async with dashboard.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        table = dashboard.dashboard.query_one("#function-list", DataTable)
        await until(pilot, lambda: table.row_count == 4, "the functions")
        rows = {
            name: [str(table.get_row_at(i)[k]) for k in range(6)] for i, name in enumerate(column(table, 0))
        }
        assert rows["fivemin"] == [
            "fivemin", "*/5 * * * * (Europe/Paris)", "2026-03-02 08:00:00", "", "", "0",
        ]  # fmt: skip
        assert rows["often"] == ["often", "every 30s", "2026-03-02 07:58:40", "", "", "0"]
        assert rows["record"][:4] == ["record", "after create,update posts", "", ""]
        assert rows["hello"][:3] == ["hello", "called", ""]

        # Past 08:00: both schedules run once; the tab shows the runs and the next times.
        clock.advance(120)
        scheduler = server.app[AUTOMATION].scheduler
        assert scheduler is not None
        assert await scheduler.tick() == 2
        await until(pilot, lambda: "ok" in column(table, 4), "the last runs")
        rows = {
            name: [str(table.get_row_at(i)[k]) for k in range(6)] for i, name in enumerate(column(table, 0))
        }
        assert rows["fivemin"][2:] == ["2026-03-02 08:05:00", "2026-03-02 08:00:10", "ok", "1"]
        assert rows["often"][2:] == ["2026-03-02 08:00:40", "2026-03-02 08:00:10", "ok", "1"]
