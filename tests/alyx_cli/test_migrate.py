"""`alyx migrate`: status, apply, create, rollback on a real project and its SQLite file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from alyx_cli.main import cli

SLUG_LINE = (
    '      slug:       { type: string, unique: true, maxLength: 200, pattern: "^[a-z0-9]+(-[a-z0-9]+)*$" }\n'
)
VIEW_COUNT_LINE = "      view_count: { type: int, default: 0 }\n"


def alyx(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A blog project from `alyx init`, not migrated yet; commands run inside it."""
    monkeypatch.chdir(tmp_path)
    assert alyx("init", "demo", "-t", "blog").exit_code == 0
    root = tmp_path / "demo"
    monkeypatch.chdir(root)
    return root


def columns(root: Path, table: str) -> list[str]:
    with closing(sqlite3.connect(root / "data" / "alyx.db")) as conn:
        return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]


def history(root: Path) -> list[tuple[object, str, str]]:
    with closing(sqlite3.connect(root / "data" / "alyx.db")) as conn:
        rows = conn.execute("SELECT version, name, kind FROM _alyx_migrations ORDER BY id")
        return [(r[0], str(r[1]), str(r[2])) for r in rows]


def make_destructive(root: Path) -> None:
    """Drop posts.slug (destructive) and add posts.view_count (safe) in schema.yaml."""
    schema = root / "schema.yaml"
    text = schema.read_text()
    assert SLUG_LINE in text
    text = text.replace(SLUG_LINE, "").replace("      tags:", VIEW_COUNT_LINE + "      tags:", 1)
    schema.write_text(text)


def test_status_before_anything_lists_the_collections_to_create(project: Path) -> None:
    result = alyx("migrate", "status")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["migration", "┃", "kind", "┃", "applied", "at", "┃", "state", "┃", "detail"]
    assert any("+ posts" in line and "pending (safe)" in line for line in lines)
    assert any("+ comments" in line and "auto" in line for line in lines)
    assert lines[-1] == "0 applied, 2 safe change(s) to apply"
    assert "\x1b[" not in result.output
    assert not (project / "data" / "alyx.db").exists()


def test_apply_creates_the_tables_and_says_what_it_did(project: Path) -> None:
    result = alyx("migrate", "apply")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Alyx system tables: 001_change_feed, ")
    assert lines[1:] == ["+ posts", "+ comments"]
    assert "slug" in columns(project, "posts")
    assert history(project) == [(None, "auto", "auto")]

    again = alyx("migrate", "apply")
    assert again.stdout == "nothing to apply: data/alyx.db is up to date\n"


def test_a_destructive_change_is_refused_naming_the_file_to_write(project: Path) -> None:
    assert alyx("migrate", "apply").exit_code == 0
    make_destructive(project)

    result = alyx("migrate", "apply")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: schema.yaml has destructive changes: ")
    assert result.stderr.count("\n") == 1
    assert "- posts.slug (drops column posts.slug and its data)" in result.stderr
    assert "alyx migrate create drop_slug" in result.stderr
    assert "migrations/001_drop_slug.yaml" in result.stderr
    assert "Traceback" not in result.output
    assert "slug" in columns(project, "posts")
    assert "view_count" not in columns(project, "posts")


def test_status_shows_safe_and_blocked_changes(project: Path) -> None:
    assert alyx("migrate", "apply").exit_code == 0
    make_destructive(project)

    result = alyx("migrate", "status")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("- posts.slug" in line and "BLOCKED" in line for line in lines)
    assert any("+ posts.view_count" in line and "pending (safe)" in line for line in lines)
    assert any(line.startswith("auto ") and " ok " in line for line in lines)
    assert "1 applied, 1 safe change(s) to apply, 1 destructive change(s) blocked" in lines
    assert "Write a migration: alyx migrate create drop_slug" in result.stdout


def test_create_writes_a_prefilled_file_that_apply_runs(project: Path) -> None:
    assert alyx("migrate", "apply").exit_code == 0
    make_destructive(project)

    created = alyx("migrate", "create", "drop_slug")

    assert created.exit_code == 0, created.output
    assert created.stdout.splitlines()[0] == "created migrations/001_drop_slug.yaml"
    text = (project / "migrations" / "001_drop_slug.yaml").read_text()
    assert "version: 1\nname: drop_slug\n" in text
    assert "- drop_field: {collection: posts, field: slug}" in text

    applied = alyx("migrate", "apply")

    assert applied.exit_code == 0, applied.output
    assert applied.stdout.splitlines() == ["applied 001_drop_slug", "+ posts.view_count"]
    assert "slug" not in columns(project, "posts")
    assert "view_count" in columns(project, "posts")
    assert history(project) == [
        (None, "auto", "auto"),
        (1, "drop_slug", "file"),
        (None, "auto", "auto"),
    ]
    status = alyx("migrate", "status")
    assert any(line.startswith("001_drop_slug ") and " ok " in line for line in status.stdout.splitlines())


def test_rollback_undoes_the_newest_migrations_and_warns_about_data(project: Path) -> None:
    assert alyx("migrate", "apply").exit_code == 0
    make_destructive(project)
    assert alyx("migrate", "create", "drop_slug").exit_code == 0
    assert alyx("migrate", "apply").exit_code == 0

    one = alyx("migrate", "rollback")

    assert one.exit_code == 0, one.output
    assert one.stdout == "rolled back auto\n"
    assert "data removed by a migration is not brought back" in one.stderr
    assert "view_count" not in columns(project, "posts")

    two = alyx("migrate", "rollback", "1")

    assert two.stdout == "rolled back 001_drop_slug\n"
    assert "slug" in columns(project, "posts")
    assert history(project) == [(None, "auto", "auto")]


def test_an_edited_migration_is_reported_and_blocks_apply(project: Path) -> None:
    assert alyx("migrate", "apply").exit_code == 0
    make_destructive(project)
    assert alyx("migrate", "create", "drop_slug").exit_code == 0
    assert alyx("migrate", "apply").exit_code == 0
    migration = project / "migrations" / "001_drop_slug.yaml"
    migration.write_text(migration.read_text() + "# edited later\n")

    status = alyx("migrate", "status")
    applied = alyx("migrate", "apply")

    assert any(line.startswith("001_drop_slug ") and "EDITED" in line for line in status.stdout.splitlines())
    assert "1 edited file(s)" in status.stdout
    assert applied.exit_code == 1
    assert applied.stderr.startswith(
        "Error: migrations/001_drop_slug.yaml was edited after it was applied on "
    )
    assert applied.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("migrate", "rollback"), "no database at data/alyx.db; run `alyx migrate apply` first"),
        (
            ("migrate", "create", "Drop-Slug"),
            "migration name 'Drop-Slug' must use only a-z, 0-9 and _ (e.g. drop_slug)",
        ),
    ],
)
def test_failures_are_one_line(project: Path, args: tuple[str, ...], message: str) -> None:
    result = alyx(*args)

    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.output


def test_rolling_back_more_than_applied_is_refused(project: Path) -> None:
    assert alyx("migrate", "apply").exit_code == 0

    result = alyx("migrate", "rollback", "3")

    assert result.stderr == "Error: cannot roll back 3: only 1 migrations are applied\n"
    assert history(project) == [(None, "auto", "auto")]


def test_a_folder_without_schema_says_to_run_init(tmp_path: Path) -> None:
    result = alyx("migrate", "status", "-C", str(tmp_path))

    assert result.exit_code == 1
    assert result.stderr == f"Error: no schema.yaml in {tmp_path.resolve()}; run `alyx init` first\n"
    assert list(tmp_path.iterdir()) == []


def test_a_bad_schema_is_one_located_line(project: Path) -> None:
    schema = project / "schema.yaml"
    schema.write_text(schema.read_text().replace("type: bool", "type: boolean", 1))

    result = alyx("migrate", "apply")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {schema}:")
    assert "collections.posts.fields.published" in result.stderr
    assert result.stderr.count("\n") == 1


def test_migrate_help_shows_an_example() -> None:
    for sub in ("status", "apply", "rollback", "create"):
        result = alyx("migrate", sub, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output
        assert "-C, --dir" in result.output


def test_the_real_program_applies_and_reports_status(project: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alyx_cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=project.parent,
        )

    applied = run("migrate", "apply", "-C", "demo")
    make_destructive(project)
    refused = run("migrate", "apply", "-C", "demo")
    status = run("migrate", "status", "-C", "demo")

    assert applied.returncode == 0, applied.stderr
    assert "+ posts" in applied.stdout.splitlines()
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: schema.yaml has destructive changes:")
    assert "Traceback" not in refused.stderr
    assert status.returncode == 0, status.stderr
    assert "BLOCKED" in status.stdout
    assert "\x1b[" not in status.stdout
