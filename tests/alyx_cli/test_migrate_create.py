"""`alyx migrate create`: every file it writes is one `alyx migrate apply` accepts.

One case per kind of file: nothing destructive (the commented `sql` example), names YAML
would read as another type, and each destructive change it pre-fills.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from alyx_cli.main import cli


def alyx(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A blog project from `alyx init`, migrated once; commands run inside it."""
    monkeypatch.chdir(tmp_path)
    assert alyx("init", "demo", "-t", "blog").exit_code == 0
    root = tmp_path / "demo"
    monkeypatch.chdir(root)
    assert alyx("migrate", "apply").exit_code == 0
    return root


def file_history(root: Path) -> list[tuple[int, str]]:
    with closing(sqlite3.connect(root / "data" / "alyx.db")) as conn:
        rows = conn.execute("SELECT version, name FROM _alyx_migrations WHERE kind = 'file' ORDER BY id")
        return [(int(r[0]), str(r[1])) for r in rows]


def edit(old: str, new: str) -> Callable[[Path], None]:
    def apply_edit(root: Path) -> None:
        schema = root / "schema.yaml"
        text = schema.read_text()
        assert old in text
        schema.write_text(text.replace(old, new, 1))

    return apply_edit


def unchanged(root: Path) -> None:
    """Nothing destructive pending: the file has no operations, only the sql example."""


SLUG = (
    '      slug:       { type: string, unique: true, maxLength: 200, pattern: "^[a-z0-9]+(-[a-z0-9]+)*$" }\n'
)
TITLE = "      title:      { type: string, minLength: 1, maxLength: 200 }\n"
PUBLISHED_INDEX = "      - { name: idx_posts_published, fields: [published, created_at], order: desc }\n"
COMMENTS = "  comments:\n"

CASES: dict[str, tuple[str, Callable[[Path], None], str | None]] = {
    # id: (migration name, schema edit, an operation the file must hold)
    "nothing destructive": ("rename_slug", unchanged, None),
    "a name YAML reads as null": ("null", unchanged, None),
    "a name YAML reads as a number": ("123", unchanged, None),
    "a name YAML reads as a boolean": ("yes", unchanged, None),
    "drop field": ("drop_slug", edit(SLUG, ""), "drop_field"),
    "drop field, maybe a rename": (
        "rename_maybe",
        edit(SLUG, SLUG.replace("slug:      ", "handle:    ")),
        "drop_field",
    ),
    "stricter constraint": (
        "tags_required",
        edit("{ type: json, nullable: true }", "{ type: json }"),
        "alter_field",
    ),
    "change type": (
        "published_text",
        edit("{ type: bool, default: false }", "{ type: string, default: 'no' }"),
        "alter_field",
    ),
    "change type only": (
        "tags_text",
        edit("{ type: json, nullable: true }", "{ type: text, nullable: true }"),
        "change_type",
    ),
    "required field without default": (
        "add_subtitle",
        edit(TITLE, TITLE + "      subtitle:   { type: string }\n"),
        "add_field",
    ),
    "new unique index": (
        "unique_title",
        edit(
            PUBLISHED_INDEX,
            PUBLISHED_INDEX + "      - { name: idx_posts_title, fields: [title], unique: true }\n",
        ),
        "add_index",
    ),
    "index made unique": (
        "unique_published",
        edit(PUBLISHED_INDEX, PUBLISHED_INDEX.replace("order: desc", "order: desc, unique: true")),
        "drop_index",
    ),
    "drop collection": (
        "drop_comments",
        lambda root: (root / "schema.yaml").write_text((root / "schema.yaml").read_text().split(COMMENTS)[0]),
        "drop_collection",
    ),
}


@pytest.mark.parametrize(("name", "change", "operation"), list(CASES.values()), ids=list(CASES))
def test_every_file_create_writes_is_accepted_by_apply(
    project: Path, name: str, change: Callable[[Path], None], operation: str | None
) -> None:
    change(project)

    created = alyx("migrate", "create", name)

    assert created.exit_code == 0, created.output
    path = project / "migrations" / f"001_{name}.yaml"
    assert created.stdout.splitlines()[0] == f"created migrations/001_{name}.yaml"
    written = yaml.safe_load(path.read_text())
    assert written["version"] == 1
    assert written["name"] == name
    assert isinstance(written["description"], str)
    if operation is not None:
        assert operation in [next(iter(op)) for op in written["operations"]]

    applied = alyx("migrate", "apply")

    assert applied.exit_code == 0, applied.output
    assert applied.stdout.splitlines()[0] == f"applied 001_{name}"
    assert file_history(project) == [(1, name)]
    status = alyx("migrate", "status")
    assert status.exit_code == 0, status.output
    assert status.stdout.splitlines()[-1] == "2 applied, up to date"


def test_the_file_without_destructive_changes_reads_as_written(project: Path) -> None:
    assert alyx("migrate", "create", "rename_slug").exit_code == 0

    text = (project / "migrations" / "001_rename_slug.yaml").read_text()

    assert text.startswith(
        "version: 1\nname: rename_slug\ndescription: Describe what this migration does.\noperations: []\n"
    )
    assert "\n...\n" not in text
    assert "#   - sql:" in text
