"""`alyx db`: seed, dump, backup, restore and reset on real projects and real SQLite files."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from alyx_cli.commands.db import PROGRESS_THRESHOLD
from alyx_cli.main import cli
from alyx_server.db import open_connection

SCHEMA = """\
version: 1
collections:
  authors:
    fields:
      id:     { type: uuid, primary: true, default: auto }
      name:   { type: string, minLength: 1 }
      email:  { type: string, unique: true }
      secret: { type: string, internal: true, nullable: true }
  posts:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      title:      { type: string, minLength: 1, maxLength: 200 }
      author_id:  { type: uuid, references: authors.id, onDelete: cascade }
      published:  { type: bool, default: false }
      views:      { type: int, default: 0 }
      rating:     { type: float, nullable: true }
      tags:       { type: json, nullable: true }
      cover:      { type: blob, nullable: true }
      created_at: { type: timestamp, default: now }
"""
ADA = "0f8fad5b-d9cb-469f-a165-70867728950e"
BOB = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
NOBODY = "16fd2706-8baf-433b-82eb-8c7fada847da"


def alyx(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_one_line_failure(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.output


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project from `alyx init`, with the test schema, migrated."""
    monkeypatch.chdir(tmp_path)
    assert alyx("init", "demo").exit_code == 0
    root = tmp_path / "demo"
    (root / "schema.yaml").write_text(SCHEMA)
    result = alyx("migrate", "apply", "-C", str(root))
    assert result.exit_code == 0, result.output
    return root


def count(root: Path, table: str) -> int:
    with closing(sqlite3.connect(root / "data" / "alyx.db")) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def write_seed(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def good_seed() -> dict[str, list[dict[str, Any]]]:
    return {
        # posts first: references are checked once everything is inserted.
        "posts": [
            {"title": "Hello", "author_id": ADA, "tags": ["intro", {"n": 1}], "rating": 4.5},
            {"title": "Draft", "author_id": BOB, "published": True, "cover": "AAEC/w=="},
        ],
        "authors": [
            {"id": ADA, "name": "Ada", "email": "ada@example.com", "secret": "s3"},
            {"id": BOB, "name": "Bob", "email": "bob@example.com"},
        ],
    }


# -- seed ---------------------------------------------------------------------------------
def test_seed_inserts_every_document_with_defaults(project: Path) -> None:
    seed = write_seed(project / "seed.json", good_seed())

    result = alyx("db", "seed", str(seed), "-C", str(project))

    assert result.exit_code == 0, result.output
    assert result.stdout == "seeded 2 collections, 4 docs\n"
    with closing(sqlite3.connect(project / "data" / "alyx.db")) as conn:
        rows = conn.execute(
            "SELECT title, published, views, tags, cover, created_at FROM posts ORDER BY title"
        ).fetchall()
    draft, hello = rows
    assert draft[:3] == ("Draft", 1, 0)
    assert draft[4] == b"\x00\x01\x02\xff"
    assert hello[:4] == ("Hello", 0, 0, '["intro",{"n":1}]')
    assert len(hello[5]) == 24 and hello[5].endswith("Z")
    assert count(project, "authors") == 2


def test_a_big_seed_without_a_terminal_prints_only_the_summary(project: Path) -> None:
    authors = [{"name": f"a{i}", "email": f"a{i}@example.com"} for i in range(PROGRESS_THRESHOLD + 100)]
    seed = write_seed(project / "seed.json", {"authors": authors})

    result = alyx("db", "seed", str(seed), "-C", str(project))

    assert result.exit_code == 0, result.output
    assert result.stdout == f"seeded 1 collection, {len(authors)} docs\n"
    assert result.stderr == ""
    assert count(project, "authors") == len(authors)


def test_a_yaml_seed_file_works_too(project: Path) -> None:
    seed = project / "seed.yaml"
    seed.write_text(yaml.safe_dump(good_seed()))

    result = alyx("db", "seed", str(seed), "-C", str(project))

    assert result.exit_code == 0, result.output
    assert count(project, "posts") == 2


def test_an_invalid_document_names_the_row_and_field_and_writes_nothing(project: Path) -> None:
    data = good_seed()
    data["posts"].append({"author_id": ADA})
    seed = write_seed(project / "seed.json", data)

    result = alyx("db", "seed", str(seed), "-C", str(project))

    assert_one_line_failure(result, "seed.json: posts[2].title: title is required")
    assert count(project, "posts") == 0
    assert count(project, "authors") == 0


def test_every_problem_of_the_row_is_listed(project: Path) -> None:
    seed = write_seed(project / "seed.json", {"authors": [{"name": "", "email": 3}]})

    result = alyx("db", "seed", str(seed), "-C", str(project))

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: seed.json: authors[0].name: ")
    assert "email must be a string" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_unique_violation_names_the_row(project: Path) -> None:
    data = good_seed()
    data["authors"][1]["email"] = "ada@example.com"
    seed = write_seed(project / "seed.json", data)

    result = alyx("db", "seed", str(seed), "-C", str(project))

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: seed.json: authors[1].email: ")
    assert "email" in result.stderr.split("email: ", 1)[1]
    assert count(project, "posts") == count(project, "authors") == 0


def test_a_reference_to_nothing_names_the_row_and_field(project: Path) -> None:
    data = good_seed()
    data["posts"].append({"title": "Orphan", "author_id": NOBODY})
    seed = write_seed(project / "seed.json", data)

    result = alyx("db", "seed", str(seed), "-C", str(project))

    assert_one_line_failure(
        result,
        "seed.json: posts[2].author_id: author_id refers to a authors document that does not exist",
    )
    assert count(project, "posts") == count(project, "authors") == 0


def test_an_unknown_collection_suggests_the_closest(project: Path) -> None:
    seed = write_seed(project / "seed.json", {"post": [{"title": "x"}]})

    result = alyx("db", "seed", str(seed), "-C", str(project))

    assert_one_line_failure(
        result,
        "seed.json: unknown collection 'post' (did you mean posts?); collections are: authors, posts",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "seed.json: expected a mapping of collection names to lists of documents"),
        ('{"posts": {"title": "x"}}', "seed.json: posts must be a list of documents"),
        ('{"posts": [1]}', "seed.json: posts[0] must be an object"),
        ('{"posts": [}', "seed.json:1:12: invalid JSON: Expecting value"),
    ],
)
def test_a_malformed_seed_file_is_one_line(project: Path, content: str, message: str) -> None:
    (project / "seed.json").write_text(content)

    result = alyx("db", "seed", str(project / "seed.json"), "-C", str(project))

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}")
    assert result.stderr.count("\n") == 1


def test_seeding_needs_the_database_up_to_date(project: Path) -> None:
    seed = write_seed(project / "seed.json", good_seed())
    schema = project / "schema.yaml"
    schema.write_text(schema.read_text() + "      extra: { type: string, nullable: true }\n")

    result = alyx("db", "seed", str(seed), "-C", str(project))

    assert_one_line_failure(
        result, "data/alyx.db is not up to date with schema.yaml; run `alyx migrate apply` first"
    )


def test_seeding_without_a_database_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    seed = write_seed(tmp_path / "seed.json", good_seed())

    result = alyx("db", "seed", str(seed), "-C", str(tmp_path))

    assert_one_line_failure(result, "no database at data/alyx.db; run `alyx migrate apply` first")
    assert not (tmp_path / "data" / "alyx.db").exists()


# -- dump ---------------------------------------------------------------------------------
def seeded(project: Path) -> None:
    seed = write_seed(project / "seed.json", good_seed())
    assert alyx("db", "seed", str(seed), "-C", str(project)).exit_code == 0


@pytest.mark.parametrize("name", ["dump.json", "dump.yaml"])
def test_a_dump_seeds_an_empty_database_back_to_the_same_documents(project: Path, name: str) -> None:
    seeded(project)
    first = alyx("db", "dump", str(project / name), "-C", str(project))
    assert first.exit_code == 0, first.output
    assert first.stdout == f"dumped 2 collections, 4 docs to {project / name}\n"
    before = (project / name).read_text()

    assert alyx("db", "reset", "--yes", "-C", str(project)).exit_code == 0
    assert count(project, "posts") == 0
    again = alyx("db", "seed", str(project / name), "-C", str(project))
    assert again.exit_code == 0, again.output
    assert alyx("db", "dump", str(project / name), "-C", str(project)).exit_code == 0

    assert (project / name).read_text() == before


def test_a_dump_is_in_the_api_form_with_internal_fields(project: Path) -> None:
    seeded(project)

    result = alyx("db", "dump", "-", "-C", str(project))

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [a["id"] for a in data["authors"]] == sorted([ADA, BOB])
    assert data["authors"][0]["secret"] == "s3"
    draft = next(p for p in data["posts"] if p["title"] == "Draft")
    assert draft["published"] is True
    assert draft["cover"] == "AAEC/w=="
    hello = next(p for p in data["posts"] if p["title"] == "Hello")
    assert hello["tags"] == ["intro", {"n": 1}]
    assert hello["created_at"].endswith("Z")
    assert result.stderr == "dumped 2 collections, 4 docs\n"


def test_the_format_option_wins_over_the_extension(project: Path) -> None:
    seeded(project)
    target = project / "dump.txt"

    assert alyx("db", "dump", str(target), "-f", "yaml", "-C", str(project)).exit_code == 0

    assert yaml.safe_load(target.read_text())["authors"][1]["name"] == "Bob"


# -- backup and restore -------------------------------------------------------------------
class Writer(threading.Thread):
    """Inserts authors on its own connection until stopped, like a running server."""

    def __init__(self, database: Path) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.written = 0
        self.started_writing = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        conn = open_connection(self.database)
        try:
            while not self.stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO authors (id, name, email) VALUES (?, 'w', ?)",
                    (f"00000000-0000-4000-8000-{self.written:012d}", f"w{self.written}@x.io"),
                )
                conn.execute("COMMIT")
                self.written += 1
                if self.written == 20:
                    self.started_writing.set()
        finally:
            conn.close()


@pytest.fixture
def writer(project: Path) -> Iterator[Writer]:
    thread = Writer(project / "data" / "alyx.db")
    thread.start()
    assert thread.started_writing.wait(10)
    yield thread
    thread.stop.set()
    thread.join(10)


def test_a_backup_taken_during_writes_is_a_sound_database(project: Path, writer: Writer) -> None:
    target = project / "backups" / "today.db"

    result = alyx("db", "backup", str(target), "-C", str(project))
    written_after_backup = writer.written + 20
    while writer.written < written_after_backup and writer.is_alive():
        time.sleep(0.001)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"backed up data/alyx.db to {target} (")
    assert not Path(f"{target}-wal").exists()
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        in_backup = conn.execute("SELECT count(*) FROM authors").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM _alyx_migrations").fetchone()[0] == 1
    assert 20 <= in_backup < writer.written


def test_a_backup_does_not_overwrite_without_force(project: Path) -> None:
    target = project / "backup.db"
    target.write_text("keep me")

    refused = alyx("db", "backup", str(target), "-C", str(project))
    assert_one_line_failure(refused, f"{target} already exists; use --force to overwrite it")
    assert target.read_text() == "keep me"

    forced = alyx("db", "backup", str(target), "--force", "-C", str(project))
    assert forced.exit_code == 0, forced.output
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_restore_brings_back_the_backed_up_data(project: Path) -> None:
    seeded(project)
    target = project / "backup.db"
    assert alyx("db", "backup", str(target), "-C", str(project)).exit_code == 0
    assert alyx("db", "reset", "--yes", "-C", str(project)).exit_code == 0
    assert count(project, "posts") == 0

    result = alyx("db", "restore", str(target), "--yes", "-C", str(project))

    assert result.exit_code == 0, result.output
    assert f"restored data/alyx.db from {target}" in result.stdout
    assert count(project, "posts") == 2
    assert count(project, "authors") == 2
    with closing(sqlite3.connect(project / "data" / "alyx.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_restore_refuses_what_is_not_an_alyx_database(project: Path) -> None:
    text_file = project / "notes.db"
    text_file.write_text("not a database at all, just some text that is long enough" * 20)
    other = project / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")

    not_sqlite = alyx("db", "restore", str(text_file), "--yes", "-C", str(project))
    not_alyx = alyx("db", "restore", str(other), "--yes", "-C", str(project))

    assert_one_line_failure(not_sqlite, f"{text_file} is not an SQLite database (file is not a database)")
    assert_one_line_failure(
        not_alyx, f"{other} is an SQLite database but not an Alyx one (it has no _alyx_migrations table)"
    )


def test_restore_asks_and_refuses_without_a_terminal(project: Path) -> None:
    seeded(project)
    target = project / "backup.db"
    assert alyx("db", "backup", str(target), "-C", str(project)).exit_code == 0

    result = alyx("db", "restore", str(target), "-C", str(project))

    assert_one_line_failure(
        result,
        # The backup carries the local files (backup.db.files/), so the restore replaces them too.
        f"Replace data/alyx.db and data/storage with {target}? Its current data will be lost. "
        "Pass --yes to confirm (there is no terminal to ask on)",
    )


def test_restore_refuses_a_database_in_use(project: Path) -> None:
    target = project / "backup.db"
    assert alyx("db", "backup", str(target), "-C", str(project)).exit_code == 0
    server = open_connection(project / "data" / "alyx.db")
    try:
        server.execute("SELECT count(*) FROM posts").fetchone()
        result = alyx("db", "restore", str(target), "--yes", "-C", str(project))
    finally:
        server.close()

    assert_one_line_failure(
        result,
        "data/alyx.db is in use by another process (is `alyx dev` or `alyx serve` running?); "
        "stop it and try again",
    )


# -- reset --------------------------------------------------------------------------------
def test_reset_with_yes_empties_the_database_and_migrates_again(project: Path) -> None:
    seeded(project)

    result = alyx("db", "reset", "--yes", "-C", str(project))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["reset data/alyx.db", "  + authors", "  + posts"]
    assert count(project, "posts") == count(project, "authors") == 0
    assert count(project, "_alyx_migrations") == 1
    assert [p.name for p in (project / "data").iterdir() if "reset" in p.name] == []


def test_reset_without_yes_and_without_a_terminal_refuses(project: Path) -> None:
    seeded(project)

    result = alyx("db", "reset", "-C", str(project))

    assert_one_line_failure(
        result,
        "Delete every document and user in data/alyx.db and start again? "
        "Pass --yes to confirm (there is no terminal to ask on)",
    )
    assert count(project, "posts") == 2


def test_a_reset_that_cannot_migrate_keeps_the_old_database(project: Path) -> None:
    seeded(project)
    (project / "migrations" / "001_broken.yaml").write_text("version: 1\nname: broken\n")

    result = alyx("db", "reset", "--yes", "-C", str(project))

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert count(project, "posts") == 2


# -- the real program ---------------------------------------------------------------------
def run_alyx(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alyx_cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_real_program_seeds_dumps_and_fails_in_one_line(project: Path) -> None:
    write_seed(project / "seed.json", good_seed())
    write_seed(project / "bad.json", {"posts": [{"title": 5, "author_id": ADA}]})

    seeded_ok = run_alyx("db", "seed", "seed.json", cwd=project)
    dumped = run_alyx("db", "dump", "out.yaml", cwd=project)
    failed = run_alyx("db", "seed", "bad.json", cwd=project)

    assert seeded_ok.returncode == 0, seeded_ok.stderr
    assert seeded_ok.stdout == "seeded 2 collections, 4 docs\n"
    assert dumped.returncode == 0, dumped.stderr
    assert len(yaml.safe_load((project / "out.yaml").read_text())["posts"]) == 2
    assert failed.returncode == 1
    assert failed.stderr == "Error: bad.json: posts[0].title: title must be a string\n"
    assert failed.stdout == ""
    assert count(project, "posts") == 2


def test_db_help_shows_an_example() -> None:
    for sub in ("seed", "dump", "backup", "restore", "reset"):
        result = alyx("db", sub, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output
        assert "-C, --dir" in result.output


def run_on_a_terminal(args: list[str], answer: str, cwd: Path) -> tuple[int, str]:
    """Run the real program with a pseudo-terminal as stdin/stdout/stderr; answer its prompt."""
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "alyx_cli", *args],
        cwd=cwd,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "NO_COLOR": "1"},
    )
    os.close(terminal)
    seen = b""
    while b"[y/N]" not in seen:
        chunk = os.read(controller, 1024)
        assert chunk, seen
        seen += chunk
    os.write(controller, answer.encode() + b"\n")
    returncode = process.wait(timeout=60)
    try:
        while chunk := os.read(controller, 1024):
            seen += chunk
    except OSError:
        pass  # the terminal closes when the program ends
    os.close(controller)
    return returncode, re.sub(r"\x1b\[[0-9;]*m", "", seen.decode())


def test_on_a_terminal_reset_asks_and_no_keeps_the_data(project: Path) -> None:
    seeded(project)

    declined, output = run_on_a_terminal(["db", "reset"], "n", project)
    assert declined == 1, output
    assert "Delete every document and user in data/alyx.db and start again? [y/N]" in output
    assert count(project, "posts") == 2

    accepted, output = run_on_a_terminal(["db", "reset"], "y", project)
    assert accepted == 0, output
    assert "reset data/alyx.db" in output
    assert count(project, "posts") == 0
