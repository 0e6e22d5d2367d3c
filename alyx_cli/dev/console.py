"""What `alyx dev` prints while it watches: one timestamped line per change handled.

    12:00:01 schema.yaml changed · + posts.view_count · migration applied · clients regenerated
    12:00:07 functions/hello.py changed · hello reloaded
    12:00:09 schema.yaml changed · not applied
             schema.yaml:7:5: collections.posts.fields.title: unknown option 'maxLenght'

A line that reports a failure is red, and the failure's message follows on indented
lines; the server keeps serving what it served before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from rich.text import Text

from alyx_cli.output import console

__all__ = ["SEPARATOR", "DevConsole", "ReloadLine"]

SEPARATOR = " · "
_INDENT = " " * 9


@dataclass(frozen=True, slots=True)
class ReloadLine:
    """One handled change: the subject (`schema.yaml changed`), what was done, and any failure."""

    subject: str
    parts: tuple[str, ...] = ()
    problem: str | None = None
    what: str = "schema"

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def summary(self) -> str:
        """The line without its timestamp, the problem's first line included."""
        lines = _problem_lines(self.problem)
        return SEPARATOR.join((self.subject, *self.parts, *lines[:1]))


@dataclass(slots=True)
class DevConsole:
    """Prints `ReloadLine`s to a stream (stdout by default) with the local time."""

    file: IO[str] | None = None
    now: Callable[[], datetime] = datetime.now

    def show(self, line: ReloadLine) -> None:
        stamp = self.now().strftime("%H:%M:%S")
        text = Text(f"{stamp} ", style="dim")
        text.append(SEPARATOR.join((line.subject, *line.parts)), style=None if line.ok else "red")
        out = console(file=self.file)
        out.print(text)
        for extra in _problem_lines(line.problem):
            out.print(Text(_INDENT + extra, style="red"))

    def show_all(self, lines: Sequence[ReloadLine]) -> None:
        for line in lines:
            self.show(line)


def _problem_lines(problem: str | None) -> list[str]:
    if not problem:
        return []
    return [part for part in problem.splitlines() if part.strip()]
