"""`DashboardScreen`: five tabs fed by the admin event stream, and a status line.

    Requests   the live request log (newest last), filtered by the box above it; the
               `worker` column names the worker process that served each request
    Realtime   connections and their subscriptions, on every worker
    Functions  each function, what runs it (a schedule, a hook) and a schedule's next and
               last runs; below, invocations and the highlighted one's logs
    Changes    reloads of the dev loop, committed data changes, workers joining and leaving
    Schema     collections, fields and rules as a tree

The screen only renders: `DashboardApp` reads the stream and calls `handle(kind, payload)`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Log, Static, TabbedContent, TabPane, Tree

from alyx_cli.tui.filters import RequestFilter

__all__ = ["KEEP_ROWS", "OWN_PATHS", "TABS", "DashboardScreen"]

KEEP_ROWS = 2000
# The dashboards' own reads of the admin API, kept out of the request log.
OWN_PATHS = ("/api/admin/events", "/api/admin/schema", "/api/admin/stats", "/api/admin/functions")
TABS = ("requests", "realtime", "functions", "changes", "schema")


def _clock(stamp: object) -> str:
    """`2026-01-31T12:00:01.123Z` -> `12:00:01`."""
    text = str(stamp or "")
    return text[11:19] if len(text) >= 19 else text


def _moment(stamp: object) -> str:
    """`2026-01-31T12:00:01.123Z` -> `2026-01-31 12:00:01` (UTC); empty for none."""
    text = str(stamp or "")
    return f"{text[:10]} {text[11:19]}" if len(text) >= 19 else text


def _runs_on(entry: dict[str, Any]) -> str:
    """What runs a function: `every 30s`, `*/5 * * * * (Europe/Paris)`, `after create posts`,
    `before update posts`, or `called` (by clients only), joined by `; `."""
    parts: list[str] = []
    schedule = entry.get("schedule")
    if isinstance(schedule, dict):
        if schedule.get("schedule"):
            zone = schedule.get("timezone") or "UTC"
            parts.append(str(schedule["schedule"]) + ("" if zone == "UTC" else f" ({zone})"))
        elif schedule.get("every") is not None:
            every = float(schedule["every"])
            parts.append(f"every {every:g}s")
    for key, word in (("hook", "after"), ("before", "before")):
        hook = entry.get(key)
        if isinstance(hook, dict):
            if hook.get("error"):
                parts.append(f"{word}: not run ({hook['error']})")
            else:
                parts.append(f"{word} {','.join(hook.get('events') or [])} {hook.get('collection')}")
    return "; ".join(parts) or "called"


def _status_cell(status: object) -> Text:
    code = int(status) if isinstance(status, int) else 0
    style = "red" if code >= 500 else "yellow" if code >= 400 else "green"
    return Text(str(status), style=style)


def _query_text(sub: dict[str, Any]) -> str:
    """`title:eq:x where doc.n > 1 sort -created_at,title limit 20 expand author_id`."""
    parts = [str(term) for term in sub.get("filter") or []]
    if sub.get("where"):
        parts.append(f"where {sub['where']}")
    if sub.get("sort"):
        parts.append(f"sort {','.join(str(s) for s in sub['sort'])}")
    if sub.get("limit") is not None:
        parts.append(f"limit {sub['limit']}")
    if sub.get("expand"):
        parts.append(f"expand {','.join(str(e) for e in sub['expand'])}")
    return " ".join(parts)


def _log_line(entry: object) -> str:
    if isinstance(entry, dict):
        level = entry.get("level", "info")
        message = entry.get("message", entry.get("msg", ""))
        return f"{level:<5} {message}"
    return str(entry)


class DashboardScreen(Screen[None]):
    """See the module docstring."""

    BINDINGS = [
        *(Binding(str(i), f"show_tab('{name}')", name.title(), show=False) for i, name in enumerate(TABS, 1)),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "leave_filter", "Back", show=False),
        Binding("c", "clear_requests", "Clear"),
        Binding("p", "pause", "Pause"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.requests: deque[dict[str, Any]] = deque(maxlen=KEEP_ROWS)
        self.invocations: list[dict[str, Any]] = []
        # Each worker's latest realtime summary (a server with several workers sends one each).
        self.realtime: dict[str, dict[str, Any]] = {}
        self.filter = RequestFilter()
        self.paused = False
        self.status_text = "connecting…"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.status_text, id="status")
        with TabbedContent(initial="requests", id="tabs"):
            with TabPane("1 Requests", id="requests"):
                yield Input(placeholder="filter: GET 4xx user:ada /api/collections …", id="request-filter")
                yield DataTable(id="request-log", cursor_type="row", zebra_stripes=True)
            with TabPane("2 Realtime", id="realtime"):
                yield DataTable(id="connections", cursor_type="row")
            with TabPane("3 Functions", id="functions"):
                yield DataTable(id="function-list", cursor_type="row")
                yield DataTable(id="invocations", cursor_type="row")
                yield Log(id="invocation-logs", max_lines=500)
            with TabPane("4 Changes", id="changes"):
                yield DataTable(id="change-log", cursor_type="row")
            with TabPane("5 Schema", id="schema"):
                yield Tree("schema", id="schema-tree")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#request-log", DataTable).add_columns(
            "time", "method", "path", "status", "ms", "user", "worker"
        )
        self.query_one("#connections", DataTable).add_columns(
            "connection", "user", "ip", "subscription", "query", "worker"
        )
        self.query_one("#function-list", DataTable).add_columns(
            "function", "runs on", "next run", "last run", "last status", "runs"
        )
        self.query_one("#invocations", DataTable).add_columns("time", "function", "status", "result", "ms")
        self.query_one("#change-log", DataTable).add_columns("time", "kind", "what")

    # -- actions ---------------------------------------------------------------------------
    def action_show_tab(self, name: str) -> None:
        self.query_one("#tabs", TabbedContent).active = name
        focus = {"requests": "#request-log", "realtime": "#connections", "functions": "#invocations"}
        target = focus.get(name, "#change-log" if name == "changes" else "#schema-tree")
        self.query_one(target).focus()

    def action_filter(self) -> None:
        self.action_show_tab("requests")
        self.query_one("#request-filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one("#request-log", DataTable).focus()

    def action_clear_requests(self) -> None:
        self.requests.clear()
        self._render_requests()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._render_requests()
        self.set_status(self.status_text)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "request-filter":
            self.filter = RequestFilter(event.value)
            self._render_requests()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "request-filter":
            self.action_leave_filter()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "invocations" or event.row_key.value is None:
            return
        index = int(event.row_key.value)
        if 0 <= index < len(self.invocations):
            self._show_logs(self.invocations[index])

    # -- status ----------------------------------------------------------------------------
    def set_status(self, text: str, *, failed: bool = False) -> None:
        self.status_text = text
        shown = f"{text} · paused" if self.paused else text
        status = self.query_one("#status", Static)
        status.update(Text(shown))  # an error message is text, not markup
        status.set_class(failed, "failed")

    # -- events ----------------------------------------------------------------------------
    def handle(self, kind: str, payload: dict[str, Any]) -> None:
        """Render one event of the stream."""
        if kind == "request":
            self._add_request(payload)
        elif kind == "realtime":
            self.realtime[str(payload.get("worker", ""))] = payload
            self._render_realtime()
        elif kind == "worker":
            name, state = str(payload.get("worker", "")), str(payload.get("state", ""))
            if state == "left" and self.realtime.pop(name, None) is not None:
                self._render_realtime()
            self._add_change(None, "worker", f"worker {name} (pid {payload.get('pid')}) {state}")
        elif kind == "invocation":
            self._add_invocation(payload)
        elif kind == "change":
            what = f"{payload.get('op')} {payload.get('collection')} {payload.get('doc_id')}"
            self._add_change(payload.get("time"), "data", what)
        elif kind == "reload":
            style = "" if payload.get("ok") else "red"
            self._add_change(
                payload.get("time"),
                f"reload {payload.get('what')}",
                Text(str(payload.get("summary")), style=style),
            )
        elif kind == "hello":
            for reload in payload.get("recent", []):
                self.handle("reload", reload)
        elif kind == "dropped":
            self._add_change(
                None, "dashboard", f"{payload.get('count')} events missed (the dashboard fell behind)"
            )

    def _request_row(self, r: dict[str, Any]) -> tuple[object, ...]:
        path = Text(str(r.get("path")))  # not markup: a path may hold `[`
        return (_clock(r.get("time")), r.get("method"), path, _status_cell(r.get("status")),
                f"{float(r.get('duration_ms') or 0):.1f}", r.get("user") or "",
                str(r.get("worker") or ""))  # fmt: skip

    def _add_request(self, request: dict[str, Any]) -> None:
        if str(request.get("path", "")).startswith(OWN_PATHS):
            return
        self.requests.append(request)
        if self.paused or not self.filter.matches(request):
            return
        table = self.query_one("#request-log", DataTable)
        if table.row_count >= KEEP_ROWS:
            self._render_requests()
            return
        table.add_row(*self._request_row(request))
        if table.cursor_row >= table.row_count - 2:
            table.move_cursor(row=table.row_count - 1)

    def _render_requests(self) -> None:
        table = self.query_one("#request-log", DataTable)
        table.clear()
        for request in self.requests:
            if self.filter.matches(request):
                table.add_row(*self._request_row(request))
        if table.row_count:
            table.move_cursor(row=table.row_count - 1)

    def _render_realtime(self) -> None:
        table = self.query_one("#connections", DataTable)
        table.clear()
        connections = subscriptions = 0
        for worker, summary in sorted(self.realtime.items()):
            connections += int(summary.get("connections") or 0)
            subscriptions += int(summary.get("subscriptions") or 0)
            for client in summary.get("clients", []):
                for sub in client.get("subscriptions") or [None]:
                    query = Text("" if sub is None else _query_text(sub))  # not markup: `[` stays
                    table.add_row(
                        client.get("id"), client.get("user") or "anonymous", client.get("ip") or "",
                        f"{sub['id']} {sub['collection']}" if sub else "(none)", query, worker,
                    )  # fmt: skip
        label = f"2 Realtime ({connections}/{subscriptions})"
        self.query_one("#tabs", TabbedContent).get_tab("realtime").label = label

    def _add_invocation(self, invocation: dict[str, Any]) -> None:
        self.invocations.append(invocation)
        error = invocation.get("error") or {}
        result = (
            Text("ok", style="green")
            if invocation.get("success")
            else Text(str(error.get("code") or error.get("message") or "failed"), style="red")
        )
        table = self.query_one("#invocations", DataTable)
        table.add_row(
            _clock(invocation.get("time")), invocation.get("function"),
            _status_cell(invocation.get("status")), result,
            f"{float(invocation.get('duration_ms') or 0):.1f}", key=str(len(self.invocations) - 1),
        )  # fmt: skip
        table.move_cursor(row=table.row_count - 1)
        self._show_logs(invocation)

    def _show_logs(self, invocation: dict[str, Any]) -> None:
        log = self.query_one("#invocation-logs", Log)
        log.clear()
        log.write_line(f"— {invocation.get('function')} —")
        for entry in invocation.get("logs") or []:
            log.write_line(_log_line(entry))
        error = invocation.get("error")
        if isinstance(error, dict) and error.get("message"):
            log.write_line(f"error {error['message']}")

    def _add_change(self, stamp: object, kind: str, what: str | Text) -> None:
        table = self.query_one("#change-log", DataTable)
        table.add_row(_clock(stamp) if stamp else "", kind, what)
        table.move_cursor(row=table.row_count - 1)

    def show_functions(self, body: dict[str, Any]) -> None:
        """Render `/api/admin/functions`: each function, what runs it, and for a schedule its
        next and last runs (UTC), the last run's status and the count of runs."""
        table = self.query_one("#function-list", DataTable)
        row = table.cursor_row
        table.clear()
        for entry in body.get("functions") or []:
            if not isinstance(entry, dict):
                continue
            schedule = entry.get("schedule") if isinstance(entry.get("schedule"), dict) else {}
            assert isinstance(schedule, dict)
            status = str(schedule.get("last_status") or "")
            if schedule.get("running"):
                status = "running"
            style = "red" if status == "failed" else "green" if status == "ok" else ""
            table.add_row(
                entry.get("name"), Text(_runs_on(entry)), _moment(schedule.get("next_run")),
                _moment(schedule.get("last_run")), Text(status, style=style),
                str(schedule["runs"]) if "runs" in schedule else "", key=str(entry.get("name")),
            )  # fmt: skip
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def show_schema(self, body: dict[str, Any]) -> None:
        """Render `/api/admin/schema` as a tree: collections, fields, indexes, rules."""
        tree = self.query_one("#schema-tree", Tree)
        tree.clear()
        collections = body.get("collections", [])
        tree.root.set_label(
            f"schema ({len(collections)} collections, checksum {str(body.get('checksum'))[:12]})"
        )
        # Labels are Text, not markup strings: `[primary, -> users.id]` or a rule such as
        # `doc.tags[0]` would otherwise be read as Rich markup tags and vanish.
        for c in collections:
            node = tree.root.add(Text(f"{c['name']} ({len(c['fields'])} fields)"), expand=True)
            for f in c["fields"]:
                flags = f" [{', '.join(f['flags'])}]" if f.get("flags") else ""
                node.add_leaf(Text(f"{f['name']}: {f['type']}{flags}"))
            if c.get("indexes"):
                node.add_leaf(Text(f"indexes: {', '.join(c['indexes'])}"))
            for action, rule in c.get("rules", {}).items():
                node.add_leaf(Text(f"{action}: {rule if rule is not None else '(admins only)'}"))
        tree.root.expand()
