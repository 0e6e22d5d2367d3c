"""The CEL specification's conformance cases against the closure evaluator, SQLite and the fallback.

Every case must pass, except the ones listed in docs/rules.md as unsupported; that table
is generated from this run (`python -m tests.alyx_server.rules.conformance`) and checked
here, so the document cannot drift from the code.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from tests.alyx_server.rules.conformance import REPO_ROOT, conformance_folder, run_case, unsupported_table
from tests.alyx_server.rules.textproto import load_cases

# Cases inside the compiled subset that fail for a documented reason.
KNOWN_DEVIATIONS = {
    "timestamps/timestamp_conversions/toString_timestamp_nanos": "timestamps have microsecond precision",
    "timestamps/timestamp_range/add_duration_nanos_over": "timestamps have microsecond precision",
    "timestamps/timestamp_range/add_duration_nanos_under": "timestamps have microsecond precision",
}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, object]:
    folder = conformance_folder()
    assert folder.is_dir(), f"the CEL conformance cases are missing: expected them at {folder}"
    conn = sqlite3.connect(":memory:")
    return {case.id: (case, run_case(case, conn)) for case in load_cases(folder)}


def test_the_suite_is_all_there(outcomes: dict[str, object]) -> None:
    assert len(outcomes) == 954


def test_every_compiled_case_passes_in_the_closure_evaluator(outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    failing = {
        cid: (case.expr, out.got, out.reason)
        for cid, (case, out) in outcomes.items()
        if out.path == "closure"
        and not out.ok
        and cid not in KNOWN_DEVIATIONS
        and not out.reason.startswith("syntax error")
    }
    assert failing == {}


def test_every_sql_expressible_case_passes_in_sqlite(outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    failing = {cid: case.expr for cid, (case, out) in outcomes.items() if out.sql is False}
    assert failing == {}
    assert sum(1 for _c, out in outcomes.values() if out.sql) > 450


def test_known_deviations_still_deviate(outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    for cid in KNOWN_DEVIATIONS:
        assert not outcomes[cid][1].ok, f"{cid} passes now: remove it from KNOWN_DEVIATIONS"


def test_counts(outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    counts = Counter((out.path, out.ok) for _c, out in outcomes.values())
    assert counts[("closure", True)] >= 870
    assert counts[("fallback", True)] >= 1


def test_docs_list_exactly_the_unsupported_cases(outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    table = unsupported_table([(case, out) for case, out in outcomes.values()], KNOWN_DEVIATIONS)
    docs = (REPO_ROOT / "docs" / "rules.md").read_text()
    assert table in docs, "docs/rules.md is stale: run python -m tests.alyx_server.rules.conformance"
