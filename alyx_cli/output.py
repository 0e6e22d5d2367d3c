"""What the `alyx` commands print, and how they fail.

Commands print through a Rich console: `console()` for results on stdout,
`console(stderr=True)` for progress and errors. Colour appears only on a terminal (and
never with NO_COLOR set), lines are not re-wrapped, and strings are never read as Rich markup
(style with `rich.text.Text` instead), so a message holding `[...]` prints as written.

Failures: a command wrapped with `@reports_errors` (or a block inside
`with translated_errors():`) turns `AlyxError` and `OSError` into a `CommandError`, which
Click shows as one line, `Error: <message>`, on stderr and exit status 1, without a
traceback. This is the CLI's one translation point for Alyx's error tree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.text import Text

from alyx_server.errors import AlyxError

__all__ = [
    "CommandError",
    "console",
    "describe_os_error",
    "reports_errors",
    "translated_errors",
]

P = ParamSpec("P")
R = TypeVar("R")


def console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A Rich console on stdout (stderr, or `file`), coloured only when it is a terminal.

    Made per call, not at import, so that it writes to the stream in place at the time
    (Click's test runner swaps them) and decides about colour for that stream: Rich
    styles nothing when the stream is not a terminal, or when NO_COLOR is set.
    """
    return Console(
        file=file, stderr=stderr, highlight=False, markup=False, emoji=False, soft_wrap=True
    )


class CommandError(click.ClickException):
    """A command failed in a way the user can act on: one line on stderr, exit status 1."""

    def show(self, file: IO[str] | None = None) -> None:
        out = console(stderr=True, file=file)
        line = Text("Error: ", style="bold red")
        line.append(self.format_message())
        out.print(line)


def describe_os_error(error: OSError) -> str:
    """`Permission denied: demo/data` rather than `[Errno 13] Permission denied: 'demo/data'`."""
    reason = error.strerror or str(error)
    if error.filename is None:
        return reason
    where = str(error.filename)
    if error.filename2 is not None:
        where += f" -> {error.filename2}"
    return f"{reason}: {where}"


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise `AlyxError` and `OSError` raised in the block as `CommandError`."""
    try:
        yield
    except AlyxError as error:
        raise CommandError(str(error)) from error
    except OSError as error:
        raise CommandError(describe_os_error(error)) from error


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a Click command callback so that Alyx and OS errors end it with one line.

    Put it under the `@click.command()` decorators, right above the function.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with translated_errors():
            return command(*args, **kwargs)

    return run
