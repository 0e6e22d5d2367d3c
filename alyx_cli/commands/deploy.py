"""`alyx deploy`: ship the project to a running Alyx server, see its history, roll back.

`alyx deploy` builds the bundle (schema.yaml, migrations/, functions/ and the deployable
alyx.yaml keys), uploads it to `POST /api/admin/deploy/prepare`, shows the plan the server
computed against its live state, asks (or takes `--yes`), then calls
`POST /api/admin/deploy/execute`. The server does the rest all or nothing (docs/deploy.md).
Where the server is and which token to send: alyx_cli/deploy/targets.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.text import Text

from alyx_cli.deploy.targets import DeployTarget, resolve_target
from alyx_cli.output import CommandError, console, reports_errors
from alyx_cli.project import project_option

if TYPE_CHECKING:
    from alyx_cli.deploy.client import DeployClient

__all__ = ["command", "git_state", "systemd_unit"]

F = TypeVar("F", bound=Callable[..., object])


def _server_options(command: F) -> F:
    """--target, --url and --token, shared by every subcommand that talks to a server."""
    for option in reversed(
        [
            click.option(
                "--target", metavar="NAME", help="A server named in alyx.yaml (deploy.targets.NAME)."
            ),
            click.option("--url", metavar="URL", help="The server's base URL (default: ALYX_DEPLOY_URL)."),
            click.option(
                "--token",
                metavar="TOKEN",
                help="A deploy token (default: ALYX_DEPLOY_TOKEN or the target's token_file).",
            ),
        ]
    ):
        command = option(command)
    return command


def _target(project_dir: Path, url: str | None, token: str | None, target: str | None) -> DeployTarget:
    """The server of a subcommand; options given before its name (`alyx deploy --url U
    history`) count as if given after it."""
    given = click.get_current_context().find_object(_GroupOptions)
    if given is not None:
        url, token, target = url or given.url, token or given.token, target or given.target
        project_dir = given.project_dir if project_dir == Path(".") else project_dir
    return resolve_target(project_dir.resolve(), url=url, token=token, target=target, environ=os.environ)


@dataclass(frozen=True, slots=True)
class _GroupOptions:
    url: str | None
    token: str | None
    target: str | None
    project_dir: Path


def _shown(target: DeployTarget) -> str:
    return f"{target.name} ({target.url})" if target.name else target.url


@click.group("deploy", invoke_without_command=True, short_help="Ship the project to a running server.")
@_server_options
@click.option("--dry-run", is_flag=True, help="Upload the bundle and show the plan; change nothing.")
@click.option("-y", "--yes", is_flag=True, help="Deploy without asking (needed without a terminal).")
@click.option("-m", "--message", metavar="TEXT", help="A note kept in the deploy history.")
@click.option("--history", "show_history", is_flag=True, help="The same as alyx deploy history.")
@click.option(
    "--rollback", "rollback_to", metavar="VERSION", type=int, help="The same as alyx deploy rollback VERSION."
)
@project_option
@click.pass_context
@reports_errors
def command(
    ctx: click.Context,
    target: str | None,
    url: str | None,
    token: str | None,
    dry_run: bool,
    yes: bool,
    message: str | None,
    show_history: bool,
    rollback_to: int | None,
    project_dir: Path,
) -> None:
    """Deploy the project to a server: upload, show the plan, confirm, apply all or nothing.

    \b
    Examples:
      alyx deploy --dry-run
      alyx deploy --yes -m "add slugs"
      ALYX_DEPLOY_URL=https://api.example.com ALYX_DEPLOY_TOKEN=... alyx deploy --yes

    --history and --rollback VERSION (SPEC §13's spelling) are the history and rollback
    subcommands.
    """
    if show_history or rollback_to is not None:
        _spec_alias(ctx, show_history, rollback_to, dry_run=dry_run, message=message)
        return
    if ctx.invoked_subcommand is not None:
        for flag, given in (("--dry-run", dry_run), ("--yes", yes), ("--message", message is not None)):
            if given:
                raise CommandError(
                    f"{flag} is an option of alyx deploy itself, not of {ctx.invoked_subcommand}"
                )
        ctx.obj = _GroupOptions(url, token, target, project_dir)
        return
    if not (yes or dry_run or _interactive()):
        raise CommandError(
            "no terminal to confirm the plan on: pass --yes to deploy without asking, "
            "or --dry-run to only see the plan"
        )
    from alyx_cli.deploy.client import DeployClient
    from alyx_server.config import load_settings
    from alyx_server.deploy.bundle import build_bundle
    from alyx_server.deploy.project_files import checking_environment

    root = project_dir.resolve()
    if not (root / "schema.yaml").is_file():
        raise CommandError(f"no schema.yaml in {root}; run alyx deploy in the project folder or pass -C DIR")
    server = _target(root, url, token, target)
    # A project whose alyx.yaml does not load is not shipped; ${VAR}s are the server's to fill.
    load_settings(root, mode="dev", environ=checking_environment(os.environ))
    bundle = build_bundle(root)
    client = DeployClient(server)
    commit, dirty = git_state(root)
    plan = _prepare(client, bundle.data, bundle.sha256, message)
    from alyx_cli.deploy.plan_view import render_plan

    console().print(render_plan(plan, _shown(server)))
    if dry_run:
        console().print("dry run: nothing was changed")
        return
    if plan.get("empty"):
        return
    if not yes and not click.confirm(f"Deploy this to {_shown(server)}?", default=False, err=True):
        raise CommandError("deploy cancelled; nothing was changed")
    payload: dict[str, object] = {"plan_id": plan.get("plan_id"), "bundle_sha256": bundle.sha256}
    fields: dict[str, object] = {
        "message": message,
        "git_commit": commit,
        "git_dirty": dirty if commit else None,
    }
    payload |= {name: value for name, value in fields.items() if value is not None}
    with console(stderr=True).status("applying the plan on the server"):
        done = client.execute(payload)
    console().print(
        f"deployed version {done.get('version')} to {_shown(server)} in {done.get('duration_ms')} ms"
    )


def _spec_alias(
    ctx: click.Context, show_history: bool, rollback_to: int | None, *, dry_run: bool, message: str | None
) -> None:
    """`alyx deploy --history` / `--rollback VERSION`: run that subcommand."""
    alias = "--history" if show_history else "--rollback"
    if show_history and rollback_to is not None:
        raise CommandError("--history and --rollback go one at a time")
    if ctx.invoked_subcommand is not None:
        raise CommandError(f"{alias} is alyx deploy {alias[2:]}; leave out {ctx.invoked_subcommand}")
    for flag, given in (("--dry-run", dry_run), ("--message", message is not None)):
        if given:
            raise CommandError(f"{flag} does not go with {alias} (alyx deploy {alias[2:]})")
    params = ctx.params
    common = {name: params[name] for name in ("target", "url", "token", "project_dir")}
    if show_history:
        ctx.invoke(history, **common)
    else:
        ctx.invoke(rollback, version=rollback_to, restore_backup=False, **common)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _prepare(client: DeployClient, data: bytes, sha256: str, message: str | None) -> dict[str, Any]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from alyx_cli.deploy.client import UploadBody

    params = {"message": message} if message else {}
    columns = (TextColumn("uploading the bundle"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=console(stderr=True), transient=True) as progress:
        task = progress.add_task("upload", total=len(data))
        body = UploadBody(data, lambda n: progress.advance(task, n))
        plan: dict[str, Any] = client.prepare(body, sha256, params)
    return plan


def git_state(project: Path) -> tuple[str | None, bool]:
    """The project's git commit and whether its work tree has changes; (None, False) outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, timeout=30, check=False
        )
        if head.returncode != 0:
            return None, False
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=project, capture_output=True, text=True,
            timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    return head.stdout.strip() or None, bool(status.stdout.strip())


@command.command("history", short_help="List the server's deployments, newest first.")
@_server_options
@project_option
@reports_errors
def history(target: str | None, url: str | None, token: str | None, project_dir: Path) -> None:
    """List the deployments the server keeps: version, outcome, when, by which token, message.

    \b
    Example:
      alyx deploy history
    """
    from alyx_cli.deploy.client import DeployClient

    server = _target(project_dir, url, token, target)
    rows = DeployClient(server).history().get("deployments") or []
    if not rows:
        console().print(f"no deployments on {_shown(server)} yet")
        return
    for row in rows:
        line = Text(f"v{row.get('version')}  ", style="bold")
        line.append(
            f"{row.get('outcome')}  {row.get('created_at')}  {str(row.get('bundle_sha256', ''))[:12]}"
        )
        if row.get("rollback_of") is not None:
            line.append(f"  rollback of v{row.get('rollback_of')}")
        if row.get("token_name"):
            line.append(f"  by {row.get('token_name')}")
        if row.get("git_commit"):
            line.append(
                f"  git {str(row.get('git_commit'))[:10]}{' (dirty)' if row.get('git_dirty') else ''}"
            )
        if row.get("message"):
            line.append(f"  {row.get('message')}")
        console().print(line)


@command.command("rollback", short_help="Go back to an earlier deployment.")
@click.argument("version", type=int, required=False)
@click.option("--restore-backup", is_flag=True, help="Restore the database copy taken before that deploy.")
@_server_options
@project_option
@reports_errors
def rollback(
    version: int | None,
    restore_backup: bool,
    target: str | None,
    url: str | None,
    token: str | None,
    project_dir: Path,
) -> None:
    """Restore VERSION's functions, config and schema (default: the one before the current).

    Migrations applied since run their down steps; a step that cannot be undone without losing
    data is refused and named, unless --restore-backup restores the database copy the server
    took just before that deploy.

    \b
    Example:
      alyx deploy rollback
      alyx deploy rollback 3 --restore-backup
    """
    from alyx_cli.deploy.client import DeployClient

    server = _target(project_dir, url, token, target)
    payload: dict[str, object] = {"restore_backup": restore_backup}
    if version is not None:
        payload["version"] = version
    with console(stderr=True).status("rolling back on the server"):
        done = DeployClient(server).rollback(payload)
    back = (
        f"rolled back {_shown(server)} to version {done.get('rollback_of')} as version {done.get('version')}"
    )
    if done.get("restored_backup"):
        back += f", database restored from {done.get('restored_backup')}"
    console().print(f"{back} in {done.get('duration_ms')} ms")


@command.command("status", short_help="Show the server's current version.")
@_server_options
@project_option
@reports_errors
def status(target: str | None, url: str | None, token: str | None, project_dir: Path) -> None:
    """Show the version the server runs and whether a deploy is in progress.

    \b
    Example:
      alyx deploy status
    """
    from alyx_cli.deploy.client import DeployClient

    server = _target(project_dir, url, token, target)
    answer = DeployClient(server).status()
    running = "a deploy is running" if answer.get("running") else "idle"
    console().print(f"{_shown(server)}: version {answer.get('version')}, {running}")


@command.command("systemd-unit", short_help="Print a systemd unit that runs the server.")
@click.option("--user", "run_as", default="alyx", show_default=True, help="The account the server runs as.")
@project_option
@reports_errors
def systemd_unit_command(run_as: str, project_dir: Path) -> None:
    """Print a systemd service for `alyx serve` in the project folder (see docs/deploy.md).

    \b
    Example:
      alyx deploy systemd-unit -C /srv/alyx > /etc/systemd/system/alyx.service
    """
    click.echo(systemd_unit(project_dir.resolve(), Path(sys.executable).with_name("alyx"), run_as), nl=False)


def systemd_unit(project: Path, alyx: Path, user: str) -> str:
    """The text of alyx.service: `alyx serve` in `project` as `user`, restarted on failure."""
    return f"""[Unit]
Description=Alyx server ({project})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
WorkingDirectory={project}
ExecStart={alyx} serve
# alyx serve stops on SIGTERM after finishing in-flight requests; SIGTERM goes to it
# alone (mixed), which stops its workers and their function processes in order.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=30
# systemctl reload: restart the workers one at a time, with no failed request.
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
# Hardening: the server writes only its own folder.
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=strict
ProtectHome=true
ReadWritePaths={project}

[Install]
WantedBy=multi-user.target
"""
