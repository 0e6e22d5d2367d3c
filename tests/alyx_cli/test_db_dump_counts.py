"""`alyx db dump` counts the collections the file lists, empty ones included."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.alyx_cli.test_db import alyx, project  # noqa: F401  (project is a fixture)


def test_a_dump_of_empty_tables_counts_every_collection_it_lists(project: Path) -> None:  # noqa: F811
    target = project / "empty.yaml"

    to_file = alyx("db", "dump", str(target), "-C", str(project))
    to_stdout = alyx("db", "dump", "-", "-C", str(project))

    assert to_file.exit_code == 0, to_file.output
    assert sorted(yaml.safe_load(target.read_text())) == ["authors", "posts"]
    assert to_file.stdout == f"dumped 2 collections, 0 docs to {target}\n"
    assert json.loads(to_stdout.stdout) == {"authors": [], "posts": []}
    assert to_stdout.stderr == "dumped 2 collections, 0 docs\n"


def test_a_seed_counts_the_collections_it_wrote_to(project: Path) -> None:  # noqa: F811
    target = project / "one.json"
    target.write_text(
        json.dumps({"authors": [{"name": "Cy", "email": "cy@example.com", "secret": "s"}], "posts": []})
    )

    result = alyx("db", "seed", str(target), "-C", str(project))

    assert result.exit_code == 0, result.output
    assert result.stdout == "seeded 1 collection, 1 doc\n"
