"""`alyx init`: create a project folder from one of the templates in `scaffolds/`.

The template's files are copied as they are, except that the text `{{ project_name }}`
becomes the project's name. `data/` and `migrations/` are created empty. An existing,
non-empty folder is only written into with `-f`, which overwrites the template's files
and leaves every other file alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
from rich.text import Text

from alyx_cli.output import CommandError, console, reports_errors
from alyx_server.resources import data_dir

__all__ = ["EMPTY_FOLDERS", "TEMPLATES", "command", "create_project"]

TEMPLATES = ("basic", "blog", "todo")
EMPTY_FOLDERS = ("data", "migrations")
PLACEHOLDER = "{{ project_name }}"
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SKIPPED = {"__pycache__", ".DS_Store"}


def create_project(template: str, target: Path, *, project_name: str, force: bool) -> list[Path]:
    """Write `template` into `target`; return the files written, relative to `target`.

    Refuses a `target` that is a file, or a non-empty folder unless `force` is set.
    """
    _check_target(target, force=force)
    source = data_dir("scaffolds") / template
    written: list[Path] = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or _SKIPPED.intersection(relative.parts) or path.suffix == ".pyc":
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(_render(path.read_bytes(), project_name))
        written.append(relative)
    for folder in EMPTY_FOLDERS:
        (target / folder).mkdir(parents=True, exist_ok=True)
    return written


def _check_target(target: Path, *, force: bool) -> None:
    shown = "the current directory" if target == Path(".") else f"{target}/"
    if target.exists() and not target.is_dir():
        raise CommandError(f"{target} exists and is not a directory")
    if not force and target.is_dir() and any(target.iterdir()):
        raise CommandError(f"{shown} is not empty; use -f to overwrite")


def _render(content: bytes, project_name: str) -> bytes:
    """Fill in the project name in text files; binary files pass through untouched."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return content
    return text.replace(PLACEHOLDER, project_name).encode("utf-8")


def _project_name(name: str) -> tuple[Path, str]:
    """The target folder and the project's display name for the NAME argument."""
    if name == ".":
        return Path("."), Path.cwd().name or "alyx-project"
    if not _PROJECT_NAME.fullmatch(name):
        raise click.BadParameter(
            f"{name!r} is not a valid project name: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit",
            param_hint="'NAME'",
        )
    return Path(name), name


def _print_next_steps(target: Path, template: str, file_count: int) -> None:
    out = console()
    where = "the current directory" if target == Path(".") else f"{target}/"
    summary = f" project in {where} ({file_count} files)."
    out.print(Text.assemble("Created a ", (template, "bold"), summary))
    out.print(Text("Next steps:", style="bold"))
    steps = [] if target == Path(".") else [f"cd {target}"]
    steps += [
        "alyx migrate apply    # create data/alyx.db from schema.yaml",
        "alyx dev              # serve it, reloading on changes",
    ]
    for step in steps:
        out.print(Text(f"  {step}", style="cyan"))


@click.command("init", short_help="Create a project from a template.")
@click.argument("name", default=".", metavar="[NAME]")
@click.option(
    "-t",
    "--template",
    type=click.Choice(TEMPLATES),
    default="basic",
    show_default=True,
    help="The project template.",
)
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Write into a non-empty folder, overwriting the template's files.",
)
@click.option("--server", is_flag=True, help="Create a production server folder in NAME (docs/deploy.md).")
@click.option("--admin", "admin_email", metavar="EMAIL", help="--server: the first administrator's email.")
@click.option("--password-stdin", is_flag=True, help="--server: read the admin's password from stdin.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8090, show_default=True, help="--server: port."
)
@click.option(
    "--url", metavar="URL", help="--server: the URL CI reaches it at (default: http://127.0.0.1:PORT)."
)
@reports_errors
def command(
    name: str,
    template: str,
    force: bool,
    server: bool,
    admin_email: str | None,
    password_stdin: bool,
    port: int,
    url: str | None,
) -> None:
    """Create a project in the folder NAME (default: the current directory).

    The folder gets alyx.yaml, schema.yaml, an example function, a README and empty
    data/ and migrations/ folders. With --server, NAME becomes a server folder instead:
    production alyx.yaml, JWT secret, the first administrator and a deploy token.

    \b
    Examples:
      alyx init myapp -t blog
      alyx init . -t todo -f
      alyx init --server /srv/alyx --admin ada@example.com --url https://api.example.com
    """
    if server:
        _init_server(Path(name), admin_email, password_stdin, port, url)
        return
    target, project_name = _project_name(name)
    written = create_project(template, target, project_name=project_name, force=force)
    _print_next_steps(target, template, len(written))


def _init_server(
    root: Path, admin_email: str | None, password_stdin: bool, port: int, url: str | None
) -> None:
    from alyx_cli.commands.admin import read_password
    from alyx_cli.deploy.first_server import create_server

    if root == Path("."):
        raise CommandError("--server needs a folder: alyx init --server DIR")
    email = admin_email or str(click.prompt("Administrator email", err=True))
    created = create_server(
        root.resolve(), port=port, admin_email=email, password=read_password(password_stdin),
        token_name="ci-deploy",
    )  # fmt: skip
    err = console(stderr=True)
    err.print(Text(f"Created an Alyx server in {root}/ with administrator {created.admin_email}."))
    err.print(
        Text(f"Start it with: alyx serve -C {root}   (or a systemd unit: alyx deploy systemd-unit -C {root})")
    )
    err.print(Text("Put these two lines in CI's secrets; the token is shown only now:", style="bold"))
    click.echo(f"ALYX_DEPLOY_URL={url or f'http://127.0.0.1:{port}'}")
    click.echo(f"ALYX_DEPLOY_TOKEN={created.deploy_token}")
