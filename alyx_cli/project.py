"""The project a command works on: its folder, settings, schema and database file.

Commands that act on a project take `-C/--dir DIR` (default: the current directory).
The folder must hold a `schema.yaml`; `alyx.yaml` is optional (every key has a default).
Settings load as under `alyx dev`, so `database.path` and `ALYX_*` variables mean the same
for `alyx migrate` and `alyx db` as for the development server.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from alyx_cli.output import CommandError

if TYPE_CHECKING:
    from alyx_server.config import Settings
    from alyx_server.schema.model import Schema

# Settings, schema loader and database layer are imported where they are used, so that
# `alyx --help` does not load them.

__all__ = [
    "MIGRATIONS_FOLDER",
    "SCHEMA_FILE",
    "Project",
    "database_errors",
    "find_project",
    "project_option",
]

SCHEMA_FILE = "schema.yaml"
MIGRATIONS_FOLDER = "migrations"

F = TypeVar("F", bound=Callable[..., object])


def project_option(command: F) -> F:
    """The `-C/--dir DIR` option shared by every command that works on a project."""
    option = click.option(
        "-C",
        "--dir",
        "project_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default=False,
        help="The project folder (default: the current directory).",
    )
    return option(command)


@dataclass(frozen=True, slots=True)
class Project:
    """A located project: its folder and settings; schema and database are opened on demand."""

    root: Path
    settings: Settings

    @property
    def schema_file(self) -> Path:
        return self.root / SCHEMA_FILE

    @property
    def migrations_dir(self) -> Path:
        return self.root / MIGRATIONS_FOLDER

    @property
    def database_path(self) -> Path:
        return self.settings.database.path

    def show(self, path: Path) -> str:
        """`path` relative to the project folder when it is inside it (`data/alyx.db`)."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    @property
    def database_name(self) -> str:
        return self.show(self.database_path)

    def load_schema(self) -> Schema:
        """schema.yaml, checked as the server checks it (rules compiled with the project's
        `rules.lookup_depth`), or a located error."""
        from alyx_server.rules.load import load_schema_rules

        return load_schema_rules(self.schema_file, self.settings.rules.lookup_depth).schema

    def require_database(self) -> None:
        """Refuse commands that need data when no database file has been created yet."""
        if not self.database_path.is_file():
            raise CommandError(f"no database at {self.database_name}; run `alyx migrate apply` first")

    @contextmanager
    def connect(self, *, create: bool = True) -> Iterator[sqlite3.Connection]:
        """The project's database with Alyx's pragmas, closed afterwards.

        With `create=False` and no database file yet, an empty in-memory database stands in,
        so that read-only commands (`migrate status`) never create files. When the block
        wrote anything, the servers running on the file are told at once (db/notify.py):
        `alyx admin revoke-token` refuses the token on the next request to any of them.
        """
        from alyx_server.db import open_connection
        from alyx_server.db.notify import announce

        if not create and not self.database_path.exists():
            conn = sqlite3.connect(":memory:", isolation_level=None)
        else:
            self.database_path.parent.mkdir(parents=True, exist_ok=True)
            with database_errors(self.database_name):
                conn = open_connection(self.database_path, synchronous=self.settings.database.synchronous)
        try:
            with database_errors(self.database_name):
                yield conn
        finally:
            wrote = conn.total_changes > 0
            conn.close()
            if wrote:
                try:
                    announce(self.database_path)
                except OSError as error:
                    # Running servers still find the change with their poller.
                    click.echo(f"warning: could not tell running servers about the change: {error}", err=True)


@contextmanager
def database_errors(name: str) -> Iterator[None]:
    """Report SQLite errors raised in the block as one line naming the database file."""
    try:
        yield
    except sqlite3.Error as error:
        from alyx_server.db.maintenance import database_error

        raise CommandError(str(database_error(name, error))) from error


def find_project(directory: Path) -> Project:
    """The project in `directory`: it must have a schema.yaml; settings come from alyx.yaml."""
    from alyx_server.config import load_settings

    root = directory.resolve()
    if not root.is_dir():
        raise CommandError(f"{directory} is not a folder")
    if not (root / SCHEMA_FILE).is_file():
        raise CommandError(f"no {SCHEMA_FILE} in {root}; run `alyx init` first")
    return Project(root, load_settings(root, mode="dev"))
