"""`alyx admin create|create-token|list-tokens|revoke-token|identities|unlink-identity`:
administrators, their tokens, and accounts' OAuth sign-in identities.

These write the project's database directly (the server need not run; if it does, it
sees new and changed accounts through its change poller), after bringing Alyx's own
tables up to date. Passwords are read from a hidden prompt, asked twice, or from the
first line of standard input with `--password-stdin`, never from the command line where
other users could see them in the process list. A new token is printed once, alone on
stdout, so that scripts can capture it; only its hash is stored.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text

from alyx_cli.output import CommandError, console, reports_errors
from alyx_cli.project import Project, find_project, project_option

if TYPE_CHECKING:
    from alyx_server.auth.users import UserRecord

__all__ = ["command", "read_password"]


@click.group("admin", short_help="Create administrators and admin or deploy tokens.")
def command() -> None:
    """Manage administrators and the tokens that tools and CI use.

    \b
    Example:
      alyx admin create ada@example.com
      alyx admin create-token --name ci --kind deploy --expires 90d
    """


@contextmanager
def _database(project: Project) -> Iterator[sqlite3.Connection]:
    """The project's database with Alyx's tables in place; one write transaction."""
    from alyx_server.migrations import apply_system_migrations

    with project.connect() as conn:
        apply_system_migrations(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def read_password(from_stdin: bool) -> str:
    """A new password: the first line of stdin, or a hidden prompt asked twice."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise CommandError("--password-stdin: standard input held no password")
        return password
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return value


@command.command("create", short_help="Create an administrator account.")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--promote", is_flag=True, help="If the account exists, make it an administrator.")
@project_option
@reports_errors
def create(email: str, password_stdin: bool, promote: bool, project_dir: Path) -> None:
    """Create an administrator (role admin, email verified) with a password.

    \b
    Example:
      alyx admin create ada@example.com
      echo "$ADMIN_PASSWORD" | alyx admin create ada@example.com --password-stdin
    """
    from alyx_server.auth.passwords import check_password_policy, hash_password_now
    from alyx_server.auth.users import insert_user, normalize_email, update_user, user_by_email
    from alyx_server.tools.timestamps import now_timestamp

    project = find_project(project_dir)
    address = normalize_email(email)
    with _database(project) as conn:
        existing = user_by_email(conn, address)
        if existing is not None:
            if not promote:
                raise CommandError(
                    f"{address} already has an account; pass --promote to make it an administrator"
                )
            update_user(conn, existing.id, {"role": "admin"}, now=now_timestamp())
            console().print(f"{address} is now an administrator")
            return
    auth = project.settings.auth
    encoded = check_password_policy(read_password(password_stdin), auth.password)
    password_hash = hash_password_now(encoded, auth.bcrypt_cost)
    with _database(project) as conn:
        user = insert_user(
            conn, email=address, password_hash=password_hash, now=now_timestamp(), role="admin", verified=True
        )
    console().print(f"administrator {user.email} created (id {user.id})")


@command.command("create-token", short_help="Create an admin or deploy token.")
@click.option("--name", required=True, help="A name to recognise the token by (e.g. ci-deploy).")
@click.option("--kind", type=click.Choice(["admin", "deploy"]), default="admin", show_default=True)
@click.option("--expires", metavar="DURATION", help="Lifetime such as 30d or 12h (default: never).")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    metavar="NAME",
    help="Allow one capability (repeatable): users, schema, deploy, ... or * (default: * for "
    "admin, deploy for deploy).",
)
@project_option
@reports_errors
def create_token(
    name: str, kind: str, expires: str | None, permissions: tuple[str, ...], project_dir: Path
) -> None:
    """Create a token and print it once; only its hash is kept.

    \b
    Example:
      alyx admin create-token --name ci --kind deploy --expires 90d
      alyx admin create-token --name dashboard --permission users --permission stats
    """
    from alyx_server.auth.admin_tokens import create_token as store_token
    from alyx_server.tools.durations import parse_duration
    from alyx_server.tools.timestamps import SYSTEM_CLOCK, format_timestamp

    now = SYSTEM_CLOCK.now()
    expires_at = None
    if expires is not None:
        try:
            seconds = parse_duration(expires)
        except ValueError as e:
            raise CommandError(f"--expires: {e}") from e
        expires_at = format_timestamp(now + timedelta(seconds=seconds))
    project = find_project(project_dir)
    with _database(project) as conn:
        secret, token = store_token(
            conn,
            name=name,
            kind="deploy" if kind == "deploy" else "admin",
            permissions=permissions,
            expires_at=expires_at,
            now=format_timestamp(now),
        )
    until = f"until {token.expires_at}" if token.expires_at else "without expiry"
    note = Text(f"{token.kind} token {token.name!r} ({', '.join(token.permissions)}) {until}; ")
    note.append("it is shown only now:", style="bold")
    console(stderr=True).print(note)
    click.echo(secret)


@command.command("list-tokens", short_help="List admin and deploy tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@project_option
@reports_errors
def list_tokens(as_json: bool, project_dir: Path) -> None:
    """List every token with its kind, permissions, expiry and state (never the secret).

    \b
    Example:
      alyx admin list-tokens
    """
    from alyx_server.auth.admin_tokens import list_tokens as stored_tokens
    from alyx_server.tools.timestamps import now_timestamp

    project = find_project(project_dir)
    with _database(project) as conn:
        tokens = stored_tokens(conn)
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in tokens], indent=2))
        return
    if not tokens:
        console().print("no tokens; create one with `alyx admin create-token --name NAME`")
        return
    now = now_timestamp()
    lines = [("id", "name", "kind", "permissions", "expires", "state")]
    for t in tokens:
        state = "revoked" if t.revoked_at else "expired" if t.expires_at and t.expires_at <= now else "live"
        lines.append((t.id, t.name, t.kind, ",".join(t.permissions), _day(t.expires_at), state))
    # Plain aligned columns, never truncated: ids are copied from here into revoke-token.
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for index, line in enumerate(lines):
        text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        console().print(Text(text, style="bold" if index == 0 else ""))


def _day(stamp: str | None) -> str:
    return "never" if stamp is None else stamp[:16].replace("T", " ")


@command.command("revoke-token", short_help="Revoke a token by id or name.")
@click.argument("token")
@project_option
@reports_errors
def revoke_token(token: str, project_dir: Path) -> None:
    """Revoke a token at once: the server refuses it from the next request on.

    \b
    Example:
      alyx admin revoke-token ci
    """
    from alyx_server.auth.admin_tokens import revoke_token as revoke
    from alyx_server.tools.timestamps import now_timestamp

    project = find_project(project_dir)
    with _database(project) as conn:
        revoked = revoke(conn, token, now_timestamp())
    console().print(f"token {revoked.name!r} ({revoked.id}) revoked")


@command.command("identities", short_help="List an account's OAuth sign-in identities.")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@project_option
@reports_errors
def list_identities(email: str, as_json: bool, project_dir: Path) -> None:
    """List the providers an account signs in with (docs/auth.md), and whether it has a password.

    \b
    Example:
      alyx admin identities ada@example.com
    """
    from alyx_server.auth.identities import identities_of

    project = find_project(project_dir)
    with _database(project) as conn:
        user = _account(conn, email)
        found = identities_of(conn, user.id)
    if as_json:
        body = {"identities": [i.public() for i in found], "password": user.password_hash is not None}
        click.echo(json.dumps(body, indent=2))
        return
    console().print(f"{user.email}: password {'set' if user.password_hash else 'not set'}")
    for i in found:
        verified = "verified" if i.email_verified else "unverified"
        console().print(Text(f"{i.id}  {i.provider}  {i.subject}  {i.email or '-'} ({verified})"))


@command.command("unlink-identity", short_help="Unlink a provider from an account.")
@click.argument("email")
@click.argument("identity")
@project_option
@reports_errors
def unlink_identity(email: str, identity: str, project_dir: Path) -> None:
    """Unlink an identity (its id, or the provider's name) from an account; the account's
    last way to sign in is never removed.

    \b
    Example:
      alyx admin unlink-identity ada@example.com github
    """
    from alyx_server.auth.identities import identities_of, remove_identity

    project = find_project(project_dir)
    with _database(project) as conn:
        user = _account(conn, email)
        match = [i for i in identities_of(conn, user.id) if identity in (i.id, i.provider)]
        if len(match) != 1:
            raise CommandError(
                f"{user.email} has {len(match)} identities matching {identity!r}; give its id "
                f"(alyx admin identities {user.email})"
            )
        removed = remove_identity(conn, user.id, match[0].id)
    console().print(f"{removed.provider} identity {removed.subject!r} unlinked from {user.email}")


def _account(conn: sqlite3.Connection, email: str) -> UserRecord:
    from alyx_server.auth.users import normalize_email, user_by_email

    user = user_by_email(conn, normalize_email(email))
    if user is None:
        raise CommandError(f"no account has the email {email!r}")
    return user
