"""`DashboardApp`: the Textual application of `alyx tui` and `alyx dev --tui`.

It shows `DashboardScreen` and feeds it from the server: the event stream (reconnecting
every `RETRY` seconds when it drops), the schema at start and after each schema reload,
and every `STATS_EVERY` seconds the statistics for the status line and the functions
with their schedules' next and last runs.
"""

from __future__ import annotations

import asyncio
import contextlib

from textual import work
from textual.app import App
from textual.binding import Binding

from alyx_cli.tui.client import AdminClient, DashboardError
from alyx_cli.tui.screens.dashboard import DashboardScreen
from alyx_cli.tui.screens.help import HelpScreen

__all__ = ["RETRY", "STATS_EVERY", "DashboardApp"]

RETRY = 2.0
STATS_EVERY = 2.0


class DashboardApp(App[None]):
    """See the module docstring."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "Alyx"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, client: AdminClient) -> None:
        super().__init__()
        self.client = client
        self.dashboard = DashboardScreen()
        self.sub_title = client.url

    async def on_mount(self) -> None:
        await self.push_screen(self.dashboard)
        self.stream_events()
        self.poll_stats()
        self.poll_functions()
        self.load_schema()

    async def on_unmount(self) -> None:
        await self.client.close()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    @work(exclusive=True, group="events")
    async def stream_events(self) -> None:
        """Read the event stream for the app's life, reconnecting when it drops."""
        while True:
            try:
                async for kind, payload in self.client.events():
                    self.dashboard.handle(kind, payload)
                    if kind == "reload" and payload.get("what") == "schema":
                        self.load_schema()
            except DashboardError as e:
                self.dashboard.set_status(str(e), failed=True)
            await asyncio.sleep(RETRY)

    @work(exclusive=True, group="schema")
    async def load_schema(self) -> None:
        try:
            self.dashboard.show_schema(await self.client.schema())
        except DashboardError as e:
            self.dashboard.set_status(str(e), failed=True)

    @work(exclusive=True, group="stats")
    async def poll_stats(self) -> None:
        while True:
            try:
                s = await self.client.stats()
            except DashboardError as e:
                self.dashboard.set_status(str(e), failed=True)
            else:
                self.dashboard.set_status(_status_line(self.client.url, s))
            await asyncio.sleep(STATS_EVERY)

    @work(exclusive=True, group="functions")
    async def poll_functions(self) -> None:
        """The Functions tab's list; a server without functions (503) leaves it empty, and
        a refusal is the status line's to show."""
        while True:
            with contextlib.suppress(DashboardError):
                self.dashboard.show_functions(await self.client.functions())
            await asyncio.sleep(STATS_EVERY)


def _status_line(url: str, s: dict[str, object]) -> str:
    requests = s.get("requests") if isinstance(s.get("requests"), dict) else {}
    realtime = s.get("realtime") if isinstance(s.get("realtime"), dict) else {}
    functions = s.get("functions") if isinstance(s.get("functions"), dict) else {}
    assert isinstance(requests, dict) and isinstance(realtime, dict) and isinstance(functions, dict)
    workers = s.get("workers")
    count = len(workers) if isinstance(workers, list) else 1
    return (
        f"{url} · {s.get('mode')}{f' · {count} workers' if count > 1 else ''} · "
        f"up {float(str(s.get('uptime') or 0)):.0f}s · "
        f"{requests.get('total', 0)} requests ({requests.get('errors', 0)} errors) · "
        f"{realtime.get('connections', 0)} connections, {realtime.get('subscriptions', 0)} subscriptions · "
        f"{functions.get('count', 0)} functions, {functions.get('invocations', 0)} invocations"
    )
