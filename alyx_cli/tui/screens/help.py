"""`HelpScreen`: the dashboard's keys and the request filter's syntax."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["HELP_TEXT", "HelpScreen"]

HELP_TEXT = """\
[b]Keys[/b]
  1 … 5          requests · realtime · functions · changes · schema
  tab, shift+tab move between panels; arrows and page keys scroll tables
  /              filter the request log          escape  back to the table
  c              clear the request log           p       pause / resume the log
  ?              this help                       q       quit

[b]Request filter[/b]  space-separated terms, all must hold
  GET  post      the method
  404  4xx       the status, exact or by class (also status:5xx)
  user:ada       the caller's email contains "ada" (user:anonymous)
  worker:2       served by worker 2 (alyx serve --workers)
  notes          anything else: the path contains it

[b]Functions[/b]  the functions with their schedules' next and last runs (UTC) and
               hooks; highlight an invocation to see its logs below it.

Press escape, q or ? to close."""


class HelpScreen(ModalScreen[None]):
    """See the module docstring."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("Alyx dashboard — help", id="help-title")
            yield Static(HELP_TEXT, id="help-body")

    def action_close(self) -> None:
        self.dismiss(None)
