"""Malformed project files end every command with one `Error:` line, never a traceback.

Each case writes a hostile or mistaken schema.yaml, alyx.yaml, migration or seed file into
a real project and runs the real commands that read it: `alyx migrate status|apply|create`
and `alyx generate` through Click's runner, `alyx dev` and `alyx serve` as processes. The
answer must be exit status 1 and one line naming the file, the line when there is one, and
what to change.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from alyx_cli.main import cli
from tests.servers import cli_environment, free_port

SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:      { type: uuid, primary: true, default: auto }
      title:   { type: string }
      tags:    { type: json, nullable: true }
      count:   { type: int, default: 0 }
      written: { type: timestamp, default: now }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""
TAGS_LINE = "      tags:    { type: json, nullable: true }\n"  # line 7
WRITTEN_LINE = "      written: { type: timestamp, default: now }\n"  # line 9
RULES_LINE = '    rules: { create: "true", read: "true", update: "true", delete: "true" }\n'  # line 10
DEEP = 5000
SECRET = "s" * 40

# Commands that read schema.yaml in process (the server commands run as processes below).
SCHEMA_COMMANDS = (("migrate", "status"), ("migrate", "apply"), ("migrate", "create", "x"), ("generate",))


def alyx(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def environment() -> dict[str, str]:
    return cli_environment(ALYX_AUTH_JWT_SECRET=SECRET)


def run_server_command(project: Path, command: str) -> subprocess.CompletedProcess[str]:
    """`alyx dev` or `alyx serve` as a process; a bad project file stops it before it listens."""
    args = [sys.executable, "-m", "alyx_cli", command, "-p", str(free_port())]
    if command == "dev":
        args.append("--no-watch")
    return subprocess.run(
        args, cwd=project, env=environment(), capture_output=True, text=True, timeout=120
    )  # fmt: skip


def assert_one_error_line(stderr: str, exit_code: int, *parts: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert exit_code == 1, stderr
    assert stderr.startswith("Error: "), stderr
    assert stderr.count("\n") == 1, stderr
    for part in parts:
        assert part in stderr, (part, stderr)


def assert_result_is_one_error(result: Result, *parts: str) -> None:
    assert isinstance(result.exception, SystemExit), result.exception
    assert_one_error_line(result.stderr, result.exit_code, *parts)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    return tmp_path


def deep_list() -> str:
    return "[" * DEEP + "]" * DEEP


def deep_object() -> str:
    return '{"a": ' * DEEP + "1" + "}" * DEEP


def billion_laughs() -> str:
    lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


SCHEMA_CASES = {
    "impossible date": (
        lambda: SCHEMA.replace(WRITTEN_LINE, "      written: { type: timestamp, default: 2026-13-45 }\n"),
        ["schema.yaml:9:", "'2026-13-45' reads as a timestamp but is not a valid one",
         "month must be in 1..12", 'quote it ("...")'],
    ),
    "5000-deep flow list default": (
        lambda: SCHEMA.replace(TAGS_LINE, f"      tags: {{ type: json, default: {deep_list()} }}\n"),
        ["schema.yaml:7:", "nested more than 100 levels deep", "flatten the structure"],
    ),
    "5000-deep JSON object default": (
        lambda: SCHEMA.replace(TAGS_LINE, f"      tags: {{ type: json, default: {deep_object()} }}\n"),
        ["schema.yaml:7:", "nested more than 100 levels deep"],
    ),
    "alias bomb": (
        lambda: billion_laughs().replace("x0:", "version: 1\nx0:"),
        ["schema.yaml:", "nodes through its aliases", "use fewer aliases"],
    ),
    "int default past 64 bits": (
        lambda: SCHEMA.replace("default: 0 }", f"default: {2**70} }}"),
        ["schema.yaml:8:", "is not a whole number within the 64-bit range"],
    ),
    "json default with an integer past 64 bits": (
        lambda: SCHEMA.replace(TAGS_LINE, f"      tags:    {{ type: json, default: [{2**70}] }}\n"),
        ["schema.yaml:7:", "cannot be stored as JSON"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(SCHEMA_CASES))
@pytest.mark.parametrize("command", SCHEMA_COMMANDS, ids=" ".join)
def test_a_malformed_schema_is_one_located_error(project: Path, case: str, command: tuple[str, ...]) -> None:
    text, parts = SCHEMA_CASES[case]
    (project / "schema.yaml").write_text(text(), encoding="utf-8")

    assert_result_is_one_error(alyx(*command), *parts)


@pytest.mark.parametrize("command", ["dev", "serve"])
@pytest.mark.parametrize("case", ["impossible date", "5000-deep flow list default"])
def test_the_servers_refuse_a_malformed_schema_in_one_line(project: Path, case: str, command: str) -> None:
    text, parts = SCHEMA_CASES[case]
    (project / "schema.yaml").write_text(text(), encoding="utf-8")

    result = run_server_command(project, command)

    assert_one_error_line(result.stderr, result.returncode, *parts)


@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_rule_of_400_nested_parentheses_is_one_located_error(project: Path, command: str) -> None:
    rule = "(" * 400 + "true" + ")" * 400
    (project / "schema.yaml").write_text(SCHEMA.replace('read: "true"', f'read: "{rule}"'), encoding="utf-8")

    result = run_server_command(project, command)

    assert_one_error_line(result.stderr, result.returncode, "schema.yaml:10:", "read rule of notes")


def test_a_schema_that_is_not_utf8_is_one_located_error(project: Path) -> None:
    (project / "schema.yaml").write_bytes(SCHEMA.encode().replace(b"title", b"t\xfftle"))

    for command in SCHEMA_COMMANDS:
        assert_result_is_one_error(
            alyx(*command), "schema.yaml:6: ", "is not UTF-8 text", "save the file as UTF-8"
        )


@pytest.mark.parametrize(
    "command", [*SCHEMA_COMMANDS[:3], ("dev",), ("serve",)],
    ids=" ".join,
)  # fmt: skip
def test_a_migration_numbered_past_64_bits_is_one_error(project: Path, command: tuple[str, ...]) -> None:
    (project / "migrations").mkdir()
    name = "99999999999999999999_x.yaml"
    (project / "migrations" / name).write_text("version: 99999999999999999999\noperations: []\n")
    parts = (f"migrations/{name}: the version 99999999999999999999 is too large (at most 999999999999999)",
             "rename the file")  # fmt: skip

    if command[0] in ("dev", "serve"):
        result = run_server_command(project, command[0])
        assert_one_error_line(result.stderr, result.returncode, *parts)
    else:
        assert_result_is_one_error(alyx(*command), *parts)
    assert not (project / "migrations" / "100000000000000000000_x.yaml").exists()


def test_migrate_create_refuses_a_version_past_the_bound(project: Path) -> None:
    (project / "migrations").mkdir()
    (project / "migrations" / "999999999999999_last.yaml").write_text(
        "version: 999999999999999\noperations: []\n"
    )

    result = alyx("migrate", "create", "next")

    assert_result_is_one_error(result, "the next migration version would be 1000000000000000", "renumber")


@pytest.mark.parametrize(
    ("content", "parts"),
    [
        (
            "server: {port: " + "[" * DEEP + "]" * DEEP + "}\n",
            ["alyx.yaml:1:", "nested more than 100 levels deep"],
        ),
        ("server: {port: 8090}\n" + billion_laughs(), ["alyx.yaml:", "through its aliases"]),
        (b"server:\n  port: \xff\xfe\n", ["alyx.yaml: the file is not UTF-8 text", "save it as UTF-8"]),
    ],
    ids=["deep", "alias bomb", "not utf-8"],
)
def test_a_malformed_alyx_yaml_is_one_error(project: Path, content: str | bytes, parts: list[str]) -> None:
    data = content if isinstance(content, bytes) else content.encode()
    (project / "alyx.yaml").write_bytes(data)

    assert_result_is_one_error(alyx("migrate", "status"), *parts)


@pytest.mark.parametrize(
    ("name", "content", "parts"),
    [
        (
            "seed.yaml",
            billion_laughs().replace("x0:", "notes: []\nx0:"),
            ["seed.yaml:", "through its aliases"],
        ),
        ("seed.yaml", "notes: " + "[" * DEEP + "]" * DEEP + "\n", ["seed.yaml:1:", "nested more than 100"]),
        (
            "seed.json",
            '{"notes": ' + "[" * DEEP + "]" * DEEP + "}",
            ["seed.json: invalid JSON: nested too deeply"],
        ),
        ("seed.yaml", "notes: [{title: a, written: 2026-13-45}]\n", ["seed.yaml:1:", "not a valid one"]),
    ],
    ids=["yaml alias bomb", "deep yaml", "deep json", "impossible date"],
)
def test_a_malformed_seed_file_is_one_error(project: Path, name: str, content: str, parts: list[str]) -> None:
    assert alyx("migrate", "apply").exit_code == 0
    (project / name).write_text(content, encoding="utf-8")

    assert_result_is_one_error(alyx("db", "seed", name), *parts)
