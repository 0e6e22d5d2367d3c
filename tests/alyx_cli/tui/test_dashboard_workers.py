"""The dashboard of one worker shows every worker: two `alyx serve` processes on one
project (ALYX_WORKER=1 and 2), the dashboard reading worker 1 through `App.run_test()`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from textual.widgets import DataTable, Input

from alyx_cli.tui.app import DashboardApp
from alyx_cli.tui.client import AdminClient
from tests.alyx_cli.tui.test_dashboard import SIZE, column, until
from tests.alyx_server.api.test_peers import Workers
from tests.servers import DEADLINE


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    group = Workers(tmp_path)
    try:
        yield group
    finally:
        group.stop()


async def test_the_request_log_and_the_realtime_tab_name_the_worker_of_each_row(workers: Workers) -> None:
    a = workers.start("1")
    b = workers.start("2")
    app = DashboardApp(AdminClient(a.url, workers.token))
    async with app.run_test(size=SIZE) as pilot, aiohttp.ClientSession() as http:
        log = app.dashboard.query_one("#request-log", DataTable)
        changes = app.dashboard.query_one("#change-log", DataTable)
        await until(pilot, lambda: "2 workers" in app.dashboard.status_text, "2 workers shown")
        await until(pilot, lambda: any("worker 2" in c for c in column(changes, 2)), "worker 2 joining")

        async with http.get(b.url + "/api/collections/notes?on=b") as r:
            assert r.status == 200
        async with http.get(a.url + "/api/collections/notes?on=a") as r:
            assert r.status == 200
        rows = lambda: set(zip(column(log, 2), column(log, 6), strict=True))  # noqa: E731
        await until(pilot, lambda: ("/api/collections/notes?on=b", "2") in rows(), "worker 2's request")
        await until(pilot, lambda: ("/api/collections/notes?on=a", "1") in rows(), "worker 1's request")

        app.dashboard.query_one("#request-filter", Input).value = "worker:2"
        await until(pilot, lambda: set(column(log, 6)) == {"2"}, "only worker 2's rows")

        async with http.ws_connect(b.url.replace("http", "ws") + "/api/realtime") as live:
            await live.send_json({"id": 1, "type": "subscribe", "payload": {"collection": "notes"}})
            table = app.dashboard.query_one("#connections", DataTable)
            await until(pilot, lambda: column(table, 5) == ["2"], "worker 2's connection")

            assert b.process is not None
            b.process.kill()
            b.process.wait(timeout=DEADLINE)
            await until(pilot, lambda: table.row_count == 0, "worker 2's connections gone with it")
            await until(pilot, lambda: any(c.endswith(" left") for c in column(changes, 2)), "leaving")
