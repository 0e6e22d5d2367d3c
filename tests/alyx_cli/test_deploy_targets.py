"""`alyx deploy`: where it ships and with which token, through the real CLI.

The server URL comes from --url, --target, ALYX_DEPLOY_URL or alyx.yaml's deploy.targets;
the token from --token, ALYX_DEPLOY_TOKEN or a token_file outside the project, never from
alyx.yaml. Each wrong way is refused with one line saying how to fix it. Resolution that
succeeds is seen in the next error: the URL of a closed loopback port that could not be
reached.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from alyx_cli.deploy.plan_view import render_plan
from alyx_cli.deploy.targets import resolve_target
from alyx_cli.main import cli
from alyx_server.config import load_settings
from tests.servers import free_port

SCHEMA = "version: 1\ncollections: {}\n"


def deploy(project: Path, *args: str, **env: str) -> Result:
    """`alyx deploy ARGS -C project` with only the ALYX_DEPLOY_* variables given in `env`."""
    environ: dict[str, str | None] = {"ALYX_DEPLOY_URL": None, "ALYX_DEPLOY_TOKEN": None, **env}
    subcommand = list(args[:1]) if args[:1] and not args[0].startswith("-") else []
    rest = args[len(subcommand) :]
    return CliRunner().invoke(cli, ["deploy", *subcommand, *rest, "-C", str(project)], env=environ)


def error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0].removeprefix("Error: ")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    (root / "schema.yaml").write_text(SCHEMA)
    return root


@pytest.fixture
def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_without_a_url_it_says_the_three_ways_to_give_one(project: Path) -> None:
    assert error_line(deploy(project, "status")) == (
        "no server to deploy to: pass --url URL, set ALYX_DEPLOY_URL, or add "
        "deploy.targets.production.url to alyx.yaml"
    )


def test_without_a_token_it_names_the_server_and_how_to_get_one(project: Path, closed_url: str) -> None:
    message = error_line(deploy(project, "status", "--url", closed_url))
    assert message.startswith(
        f"no deploy token for {closed_url}: pass --token TOKEN, set ALYX_DEPLOY_TOKEN, or "
    )
    assert "alyx admin create-token --name ci --kind deploy" in message


def test_url_and_token_from_flags_or_the_environment(project: Path, closed_url: str) -> None:
    refused = f"cannot reach {closed_url}: connection refused or host unreachable"
    assert refused in error_line(deploy(project, "status", "--url", closed_url + "/", "--token", "t"))
    assert refused in error_line(
        deploy(project, "history", ALYX_DEPLOY_URL=closed_url, ALYX_DEPLOY_TOKEN="t")
    )


def test_server_options_before_a_subcommand_count(project: Path, closed_url: str) -> None:
    args = ["deploy", "--url", closed_url, "--token", "t", "-C", str(project), "status"]
    result = CliRunner().invoke(cli, args, env={"ALYX_DEPLOY_URL": None, "ALYX_DEPLOY_TOKEN": None})
    assert f"cannot reach {closed_url}" in error_line(result)
    result = CliRunner().invoke(cli, ["deploy", "--yes", "history", "-C", str(project)])
    assert error_line(result) == "--yes is an option of alyx deploy itself, not of history"


def test_a_token_in_alyx_yaml_is_refused(project: Path, closed_url: str) -> None:
    (project / "alyx.yaml").write_text(
        f"deploy:\n  targets:\n    production:\n      url: {closed_url}\n      token: abc\n"
    )
    assert error_line(deploy(project, "status", ALYX_DEPLOY_TOKEN="t")) == (
        "alyx.yaml: deploy.targets.production.token: a deploy token must not be kept in alyx.yaml, "
        "which is committed with the project; set ALYX_DEPLOY_TOKEN, or token_file: a file outside "
        "the project"
    )


def test_a_token_file_inside_the_project_is_refused(project: Path, closed_url: str) -> None:
    (project / "deploy.token").write_text("secret\n")
    targets = (
        f"deploy.targets.production.url: {closed_url}\ndeploy.targets.production.token_file: deploy.token\n"
    )
    (project / "alyx.yaml").write_text(targets)
    assert error_line(deploy(project, "status")) == (
        "alyx.yaml: deploy.targets.production.token_file: deploy.token is inside the project, which "
        "is committed and shipped; keep the token in a file outside it (e.g. "
        "~/.config/alyx/production.token)"
    )


def test_a_token_file_outside_the_project_is_read(project: Path, closed_url: str, tmp_path: Path) -> None:
    token_file = tmp_path / "production.token"
    (project / "alyx.yaml").write_text(
        f"deploy:\n  targets:\n    production:\n      url: {closed_url}\n      token_file: {token_file}\n"
    )
    missing = error_line(deploy(project, "status"))
    assert missing == (
        "alyx.yaml: deploy.targets.production.token_file: "
        f"cannot read {token_file}: No such file or directory"
    )
    token_file.write_text("\n")
    assert error_line(deploy(project, "status")).endswith(
        f"{token_file} is empty; put the deploy token on its first line"
    )
    token_file.write_text("the-token\n")
    target = resolve_target(project, url=None, token=None, target=None, environ={})
    assert (target.url, target.token, target.name) == (closed_url, "the-token", "production")
    # The environment's token wins over the file; --token over both.
    assert (
        resolve_target(project, url=None, token=None, target=None, environ={"ALYX_DEPLOY_TOKEN": "env"}).token
        == "env"
    )
    assert (
        resolve_target(
            project, url=None, token="flag", target=None, environ={"ALYX_DEPLOY_TOKEN": "env"}
        ).token
        == "flag"
    )


def test_targets_by_name(project: Path, closed_url: str) -> None:
    (project / "alyx.yaml").write_text(
        f"deploy:\n  targets:\n    staging:\n      url: {closed_url}\n    eu:\n      url: https://eu.example.com\n"
    )
    assert error_line(deploy(project, "status", ALYX_DEPLOY_TOKEN="t")) == (
        "alyx.yaml names several deploy targets (eu, staging) and none is `production`: "
        "pick one with --target NAME"
    )
    assert f"cannot reach {closed_url}" in error_line(
        deploy(project, "status", "--target", "staging", ALYX_DEPLOY_TOKEN="t")
    )
    assert error_line(deploy(project, "status", "--target", "prod", ALYX_DEPLOY_TOKEN="t")) == (
        "--target prod: no deploy.targets.prod in alyx.yaml (targets: eu, staging)"
    )
    assert error_line(deploy(project, "status", "--target", "eu", "--url", closed_url)) == (
        "--url and --target are exclusive: pass one of them"
    )
    # ALYX_DEPLOY_URL wins over the targets of alyx.yaml; --target over ALYX_DEPLOY_URL.
    chosen = resolve_target(
        project, url=None, token="t", target=None, environ={"ALYX_DEPLOY_URL": "http://x:1"}
    )
    assert chosen.url == "http://x:1"
    chosen = resolve_target(
        project, url=None, token="t", target="eu", environ={"ALYX_DEPLOY_URL": "http://x:1"}
    )
    assert chosen.url == "https://eu.example.com"


def test_bad_urls_and_target_keys_are_named(project: Path) -> None:
    assert error_line(deploy(project, "status", "--url", "example.com", "--token", "t")) == (
        "--url: 'example.com' is not an http:// or https:// URL of an Alyx server"
    )
    (project / "alyx.yaml").write_text("deploy:\n  targets:\n    production:\n      host: example.com\n")
    assert error_line(deploy(project, "status")) == (
        "alyx.yaml: deploy.targets.production.host: unknown key (a target has deploy.targets.NAME.url, "
        "deploy.targets.NAME.token_file; NAME is letters, digits, - and _)"
    )
    (project / "alyx.yaml").write_text("deploy:\n  targets:\n    production:\n      token_file: /tmp/x\n")
    assert error_line(deploy(project, "status")) == (
        "alyx.yaml: deploy.targets.production: no url (e.g. url: https://api.example.com)"
    )


def test_the_server_skips_deploy_targets_and_the_deploy_variables(project: Path) -> None:
    (project / "alyx.yaml").write_text(
        "server:\n  port: 9001\ndeploy:\n  targets:\n    production:\n      url: https://api.example.com\n"
    )
    environ = {"ALYX_DEPLOY_URL": "https://api.example.com", "ALYX_DEPLOY_TOKEN": "t"}
    assert load_settings(project, mode="dev", environ=environ).server.port == 9001


def test_without_a_terminal_and_without_yes_it_refuses_before_uploading(
    project: Path, closed_url: str
) -> None:
    result = deploy(project, "--url", closed_url, "--token", "t")
    assert error_line(result) == (
        "no terminal to confirm the plan on: pass --yes to deploy without asking, "
        "or --dry-run to only see the plan"
    )


PLAN = {
    "plan_id": "p1",
    "bundle_sha256": "ab" * 32,
    "version": 4,
    "schema": {
        "changes": [
            {"collection": "posts", "op": "add_field", "field": "slug", "destructive": False,
             "text": "add field posts.slug (string, nullable)"},
            {"collection": "posts", "op": "remove_field", "field": "old", "destructive": True,
             "text": "drop field posts.old"},
        ],
        "migrations": ["20260101120000_rename_slug.yaml"],
    },
    "functions": {"added": ["stats"], "changed": ["hello"], "removed": ["legacy"]},
    "config": {"changed": [
        {"key": "rules.eval_budget", "from": 100000, "to": 50000, "restart": False},
        {"key": "logging.format", "from": "console", "to": "json", "restart": True},
    ]},
    "warnings": ["destructive: drops field posts.old (a database backup is taken first)"],
    "destructive": True, "needs_restart": True, "backup": True, "empty": False,
}  # fmt: skip


def shown(plan: dict[str, object]) -> str:
    out = StringIO()
    Console(file=out, width=200, highlight=False, markup=False).print(
        render_plan(plan, "production (https://x)")
    )
    return out.getvalue()


def test_the_plan_shows_every_kind_of_change() -> None:
    assert shown(PLAN).splitlines() == [
        "Deploy plan for production (https://x) (version 4)",
        "Schema changes:",
        "  add field posts.slug (string, nullable)",
        "  ! drop field posts.old",
        "Migrations to run:",
        "  20260101120000_rename_slug.yaml",
        "Functions:",
        "  + stats (added)",
        "  ~ hello (changed)",
        "  - legacy (removed)",
        "Config keys:",
        "  ~ rules.eval_budget: 100000 -> 50000",
        "  ~ logging.format: console -> json (needs a restart of the server)",
        "Warnings:",
        "  ! destructive: drops field posts.old (a database backup is taken first)",
        "A copy of the database is taken before this deploy (for rollback --restore-backup).",
    ]


def test_an_empty_plan_says_so() -> None:
    assert shown({"version": 2, "empty": True}).splitlines() == [
        "Deploy plan for production (https://x) (version 2)",
        "  nothing to change: the server already runs this project",
    ]
