"""Every command that reads schema.yaml refuses a bad rule as the server does, before writing.

A rule that names an unknown field, or does not parse, used to pass `alyx migrate apply`
(which recorded it in the history) and every other command, and only `alyx dev` / `alyx
serve` refused it. Now each command runs the same check (parse, then compile every rule)
and ends with the same one located line; the database, migrations/ and the generated
clients are left as they were. A schema.yaml whose YAML does not parse is held to the same
(every command refused it alike already). The commands run for real: in process through Click's
runner, and the servers as processes.
"""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.alyx_cli.test_malformed_files import (
    SCHEMA,
    alyx,
    assert_one_error_line,
    assert_result_is_one_error,
    run_server_command,
)

RULES_LINE = '    rules: { create: "true", read: "true", update: "true", delete: "true" }\n'
NEW_FIELD = "      rating:  { type: float, nullable: true }\n"
BAD_RULES = {
    # A pending safe change (a new field) rides along, so `migrate apply` has something to record.
    "unknown field": (
        '    rules: { create: "true", read: "doc.titel == \'x\'", update: "true", delete: "true" }\n',
        "schema.yaml:11:41: collections.notes.rules.read: the read rule of notes does not compile: "
        "unknown field 'titel' in doc.titel; fields of notes are: id, title, tags, count, written, "
        "rating (CEL column 5: \"doc.titel == 'x'\")",
    ),
    "rule does not parse": (
        '    rules: { create: "true", read: "true", update: "doc.count >", delete: "true" }\n',
        "schema.yaml:11:64: collections.notes.rules.update: the update rule of notes does not compile: "
        "syntax error: unexpected end of expression (CEL column 12: 'doc.count >')",
    ),
    # The YAML itself does not parse (this one every command already refused alike).
    "yaml does not parse": (
        "",
        "schema.yaml:12:1: invalid YAML: expected the node content, but found '<stream end>' (while "
        "parsing a flow node that starts at line 12, column 1) (fix the YAML syntax at this position)",
    ),
}
IN_PROCESS = (
    ("migrate", "status"),
    ("migrate", "apply"),
    ("migrate", "create", "rating"),
    ("generate",),
    ("db", "seed", "seed.json"),
    ("db", "reset", "--yes"),
)


def fingerprint(project: Path) -> tuple[str, int, list[str]]:
    """The database file's bytes, its migration history rows and the project's files."""
    database = project / "data" / "alyx.db"
    digest = hashlib.sha256(database.read_bytes()).hexdigest()
    with closing(sqlite3.connect(database)) as conn:
        history = conn.execute("SELECT count(*) FROM _alyx_migrations").fetchone()[0]
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if "data" not in p.parts)
    return digest, history, files


@pytest.fixture
def migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project migrated with a good schema, then given a new field and a bad rule."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    (tmp_path / "seed.json").write_text('{"notes": [{"title": "kept out"}]}', encoding="utf-8")
    assert alyx("migrate", "apply").exit_code == 0
    return tmp_path


def break_schema(project: Path, case: str) -> str:
    rules, message = BAD_RULES[case]
    text = SCHEMA.replace(RULES_LINE, NEW_FIELD + rules) if rules else SCHEMA + "  broken: [\n"
    (project / "schema.yaml").write_text(text, encoding="utf-8")
    return f"{project / message}"


@pytest.mark.parametrize("case", list(BAD_RULES))
def test_every_command_refuses_a_bad_rule_with_one_line_and_changes_nothing(
    migrated: Path, case: str
) -> None:
    expected = break_schema(migrated, case)
    before = fingerprint(migrated)

    lines = set()
    for command in IN_PROCESS:
        result = alyx(*command)
        assert_result_is_one_error(result, expected)
        lines.add(result.stderr)
    for server in ("dev", "serve"):
        process = run_server_command(migrated, server)
        assert_one_error_line(process.stderr, process.returncode, expected)
        lines.add(process.stderr)

    assert len(lines) == 1, lines
    assert fingerprint(migrated) == before
    assert not (migrated / "migrations").exists()
    assert not (migrated / "generated").exists()


def test_migrate_apply_does_not_create_a_database_for_a_bad_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = break_schema(tmp_path, "unknown field")

    assert_result_is_one_error(alyx("migrate", "apply"), expected)
    assert not (tmp_path / "data" / "alyx.db").exists()
