"""The CEL specification's conformance cases against the closure evaluator, SQLite and the fallback.

Every case must pass, except the ones listed in docs/rules.md as unsupported; that table
is generated from this run (`python -m tests.alyx_server.rules.conformance`) and checked
here, so the document cannot drift from the code.
"""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from alyx_server.rules.compile_py import compile_node
from alyx_server.rules.syntax import parse
from alyx_server.rules.values import CelEvalError
from tests.alyx_server.rules.conformance import (
    CONFORMANCE_ENV,
    REPO_ROOT,
    conformance_folder,
    extensions_folder,
    run_case,
    unsupported_table,
)
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
    assert counts[("closure", True)] >= 900
    # Nothing reaches cel-python: wrapper types compile, other protobuf messages are refused.
    assert counts[("fallback", True)] == 0


def test_docs_list_exactly_the_unsupported_cases(outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    table = unsupported_table([(case, out) for case, out in outcomes.values()], KNOWN_DEVIATIONS)
    docs = (REPO_ROOT / "docs" / "rules.md").read_text()
    assert table in docs, "docs/rules.md is stale: run python -m tests.alyx_server.rules.conformance"


# Extension cases that need what Alyx deliberately lacks; each must raise, never answer.
EXTENSION_SKIPS = {
    cid: "protobuf message literals (Alyx documents hold no protobuf messages)"
    for cid in (
        "optionals/optionals/has_optional_ofNonZeroValue_struct_optional_ofNonZeroValue_map_optindex_field",
        "optionals/optionals/optional_ofNonZeroValue_struct_optional_ofNonZeroValue_map_optindex_field",
        "optionals/optionals/struct_map_optindex_field",
        "optionals/optionals/struct_optional_ofNonZeroValue_map_optindex_field",
        "optionals/optionals/struct_map_optindex_field_nested",
        "optionals/optionals/struct_list_optindex_field",
        "optionals/optionals/empty_struct_optindex_hasValue",
        "optionals/optionals/optional_empty_struct_optindex_hasValue",
        "optionals/optionals/struct_optindex_value",
        "optionals/optionals/optional_struct_optindex_value",
        "optionals/optionals/optional_struct_optindex_index_value",
        "string_ext/format_errors/object not allowed",
        "string_ext/format_errors/object inside list",
        "string_ext/format_errors/object inside map",
    )
}


@pytest.fixture(scope="module")
def extension_outcomes() -> dict[str, object]:
    folder = extensions_folder()
    assert folder.is_dir(), f"the CEL extension cases are missing: expected them at {folder}"
    conn = sqlite3.connect(":memory:")
    return {case.id: (case, run_case(case, conn)) for case in load_cases(folder)}


def test_every_extension_file_runs(extension_outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    files = Counter(case.file for case, _out in extension_outcomes.values())
    assert set(files) == {"bindings_ext", "macros2", "math_ext", "optionals", "string_ext"}
    assert len(extension_outcomes) == 536


def test_every_extension_case_passes_or_is_a_listed_skip(extension_outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    failing = {
        cid: (case.expr, out.got, out.reason)
        for cid, (case, out) in extension_outcomes.items()
        if not out.ok and cid not in EXTENSION_SKIPS
    }
    assert failing == {}
    for cid in EXTENSION_SKIPS:
        assert not extension_outcomes[cid][1].ok, f"{cid} passes now: remove it from EXTENSION_SKIPS"


def test_skipped_extension_cases_raise_rather_than_answer(extension_outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    for cid in EXTENSION_SKIPS:
        case = extension_outcomes[cid][0]
        with pytest.raises(Exception) as caught:
            compile_node(parse(case.expr), CONFORMANCE_ENV)({})
        assert "protobuf" in str(caught.value) or "syntax error" in str(caught.value)


def test_extension_cases_in_sqlite_agree(extension_outcomes: dict[str, tuple]) -> None:  # type: ignore[type-arg]
    failing = {cid: case.expr for cid, (case, out) in extension_outcomes.items() if out.sql is False}
    assert failing == {}
    assert sum(1 for _c, out in extension_outcomes.values() if out.sql) > 250


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # A leading dot names the global variable, also where a macro binds the same name.
        (".y == 1", True),
        ("[1, 2].all(y, .y == 1)", True),
        ("[5].exists(y, y == 5 && .y == 1)", True),
        ("cel.bind(y, 7, y == 7 && .y == 1)", True),
        ("[1].all(i, y, .y == 1 && y == 1)", True),
        # true and 1 are different keys in CEL (one key in a Python dict).
        ("{true: 'a', 1: 'b'}[1] == 'b' && {true: 'a', 1: 'b'}[true] == 'a'", True),
        ("size({true: 1, 1: 2, 1u: 3}) == 2", "error"),
        ("size({true: 1, 1: 2}) == 2", True),
        ("{1: 'b', true: 'a'}.exists(k, k == true) && 1 in {1: 'b', true: 'a'}", True),
        ("{true: 1} == {1: 1}", False),
        # Wrapper types are their values; other messages never compile.
        ("google.protobuf.DoubleValue{} != null", True),
        ("google.protobuf.Int32Value{value: 2147483648}", "error"),
    ],
)
def test_names_keys_and_wrappers(expr: str, expected: object) -> None:
    fn = compile_node(parse(expr), CONFORMANCE_ENV)
    if expected == "error":
        with pytest.raises(CelEvalError):
            fn({"y": 1})
    else:
        assert fn({"y": 1}) is expected


def test_protobuf_messages_are_refused_not_answered() -> None:
    for expr in (
        "TestAllTypes{} == null",
        "google.protobuf.Any{} == null",
        "google.protobuf.Value{number_value: 1.0}",
    ):
        with pytest.raises(Exception, match=r"protobuf message type|has one field"):
            compile_node(parse(expr), CONFORMANCE_ENV)
