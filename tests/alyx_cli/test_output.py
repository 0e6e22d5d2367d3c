"""The CLI's one translation point: Alyx and OS errors become one line on stderr."""

from __future__ import annotations

import click
from click.testing import CliRunner

from alyx_cli.output import console, reports_errors
from alyx_server.errors import AlyxError, Location, MigrationError, SchemaError


def command_raising(error: BaseException) -> click.Command:
    @click.command()
    @reports_errors
    def fails() -> None:
        raise error

    return fails


def test_a_located_error_is_one_line_with_file_line_and_hint() -> None:
    error = SchemaError(
        "unknown type 'strng'",
        Location("schema.yaml", 12, 5, "collections.posts.fields.title.type"),
        hint="did you mean 'string'?",
    )

    result = CliRunner().invoke(command_raising(error))

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: schema.yaml:12:5: collections.posts.fields.title.type: "
        "unknown type 'strng' (did you mean 'string'?)\n"
    )
    assert result.stdout == ""


def test_brackets_in_a_message_are_printed_as_they_are() -> None:
    error = MigrationError("3 rows have NULL in posts.slug [see migrations/002_slug.yaml]")

    result = CliRunner().invoke(command_raising(error))

    assert result.stderr == "Error: 3 rows have NULL in posts.slug [see migrations/002_slug.yaml]\n"


def test_a_long_message_is_not_wrapped_and_not_coloured() -> None:
    message = "x" * 300
    result = CliRunner().invoke(command_raising(AlyxError(message)))

    assert result.stderr == f"Error: {message}\n"


def test_an_os_error_names_the_reason_and_the_file() -> None:
    error = PermissionError(13, "Permission denied", "data/alyx.db")

    result = CliRunner().invoke(command_raising(error))

    assert result.exit_code == 1
    assert result.stderr == "Error: Permission denied: data/alyx.db\n"


def test_an_os_error_without_errno_keeps_its_sentence() -> None:
    error = FileNotFoundError("Alyx's scaffolds/ folder is missing; reinstall Alyx")

    result = CliRunner().invoke(command_raising(error))

    assert result.stderr == "Error: Alyx's scaffolds/ folder is missing; reinstall Alyx\n"


def test_other_exceptions_are_not_disguised() -> None:
    result = CliRunner().invoke(command_raising(KeyError("bug")))

    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError)


def test_the_console_writes_plain_text_when_not_a_terminal() -> None:
    @click.command()
    def hello() -> None:
        console().print("[bold]as written[/bold]", style="green")

    result = CliRunner().invoke(hello)

    assert result.stdout == "[bold]as written[/bold]\n"
