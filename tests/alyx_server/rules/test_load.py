"""Rules compile at schema load with located errors; where=; realtime helpers; cel-python's parser."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import celpy
import pytest

from alyx_server.errors import InvalidQuery, RuleError
from alyx_server.rules.cel import FallbackProgram, celpy_environment
from alyx_server.rules.load import compile_schema_rules, compile_where
from alyx_server.rules.policy import RequestInfo
from alyx_server.schema.loader import parse_schema
from tests.alyx_server.rules.support import AUTH, REQUEST

BASE = """\
version: 1
collections:
  posts:
    fields:
      id:        { type: uuid, primary: true, default: auto }
      author_id: { type: uuid }
      published: { type: bool, default: false }
      created_at: { type: timestamp, default: now }
    rules:
      read: "{rule}"
"""


def _schema(rule: str) -> object:
    return parse_schema(BASE.replace("{rule}", rule), filename="schema.yaml")


@pytest.mark.parametrize(
    ("rule", "column", "message"),
    [
        ("doc.autor_id == auth.id", 18, "unknown field 'autor_id' in doc.autor_id; fields of posts are: id,"),
        ("doc.published &&", 30, "syntax error: unexpected end of expression"),
        ("user.id == doc.author_id", 14, "undeclared reference to 'user' (known: auth, doc, request)"),
        ("doc.published || lower(auth.id) == 'x'", 31, "unknown function 'lower'"),
    ],
)
def test_a_bad_rule_stops_the_load_with_file_line_column_collection_and_action(
    rule: str, column: int, message: str
) -> None:
    with pytest.raises(RuleError) as info:
        compile_schema_rules(_schema(rule))  # type: ignore[arg-type]
    text = str(info.value)
    assert text.startswith(f"schema.yaml:10:{column}: collections.posts.rules.read: ")
    assert "the read rule of posts does not compile" in text
    assert message in text


def test_where_errors_are_invalid_query_with_the_column() -> None:
    posts = _schema("true").get("posts")  # type: ignore[attr-defined]
    with pytest.raises(InvalidQuery) as info:
        compile_where(posts, "doc.published && doc.nope")
    assert info.value.status == 400
    assert "invalid where: unknown field 'nope'" in info.value.message
    assert "at column 22" in info.value.message


def test_realtime_can_read_and_equality_constraints() -> None:
    rules = compile_schema_rules(_schema("auth != null && doc.author_id == auth.id && doc.published"))  # type: ignore[arg-type]
    read = rules.get("posts", "read")
    assert read is not None
    mine = {"id": "d1", "author_id": "u1", "published": True, "created_at": "2026-01-01T00:00:00.000Z"}
    assert read.can_read(AUTH, mine) is True
    assert read.can_read(None, mine) is False
    assert read.can_read(AUTH, {**mine, "author_id": "u2"}) is False
    assert read.equality_constraints(AUTH) == {"author_id": "u1", "published": True}
    assert read.equality_constraints(None) == {"published": True}


def test_predicate_binds_auth_and_request_as_parameters() -> None:
    rules = compile_schema_rules(_schema("doc.published || (auth != null && auth.id == doc.author_id)"))  # type: ignore[arg-type]
    read = rules.get("posts", "read")
    assert read is not None
    predicate = read.to_predicate(AUTH, REQUEST)
    assert predicate.check is None
    assert predicate.sql == '("published" OR (1 AND (? IS "author_id")))'
    assert predicate.params == ("u1",)
    anonymous = read.to_predicate(None, REQUEST)
    assert anonymous.sql == '("published" OR (0 AND NULL))'


def test_rules_compare_timestamps_with_request_time() -> None:
    rules = compile_schema_rules(_schema("doc.created_at < request.time"))  # type: ignore[arg-type]
    read = rules.get("posts", "read")
    assert read is not None
    doc = {"id": "d1", "author_id": "u1", "published": False, "created_at": "2026-01-30T00:00:00.000Z"}
    assert read.allows(None, REQUEST, doc) is True
    assert read.to_predicate(None, REQUEST).params == ("2026-01-31T00:00:00.000Z",)


def test_predicate_is_built_once_per_immutable_caller() -> None:
    rules = compile_schema_rules(_schema("auth != null && doc.author_id == auth.id"))  # type: ignore[arg-type]
    read = rules.get("posts", "read")
    assert read is not None and read.uses_auth and not read.uses_request
    frozen = MappingProxyType(AUTH)
    first = read.to_predicate(frozen, REQUEST)
    assert read.to_predicate(frozen, REQUEST) is first
    assert first.params == ("u1",)
    # Another caller with another id gets its own predicate, not the cached one.
    other = MappingProxyType({**AUTH, "id": "u2"})
    assert read.to_predicate(other, REQUEST).params == ("u2",)
    # A mutable dict is never cached: a changed value is always seen.
    mutable = dict(AUTH)
    assert read.to_predicate(mutable, REQUEST).params == ("u1",)
    mutable["id"] = "u3"
    assert read.to_predicate(mutable, REQUEST).params == ("u3",)
    # A rule reading `request` is bound per request (its time changes).
    timed = rules_for("doc.created_at < request.time")
    later = RequestInfo("GET", "127.0.0.1", datetime(2026, 2, 1, tzinfo=UTC), {})
    assert timed.to_predicate(frozen, REQUEST).params != timed.to_predicate(frozen, later).params


def test_free_names_see_through_macro_scopes() -> None:
    assert not rules_for("true").uses_auth and not rules_for("true").uses_request
    shadowed = rules_for("[1, 2].exists(auth, auth > 1)")
    assert not shadowed.uses_auth
    reads = rules_for("[1].exists(x, x == size(request.query)) && auth != null")
    assert reads.uses_auth and reads.uses_request


def rules_for(rule: str) -> Any:
    read = compile_schema_rules(_schema(rule)).get("posts", "read")  # type: ignore[arg-type]
    assert read is not None
    return read


def test_celpy_environments_of_both_runner_classes_live_in_one_process() -> None:
    compiled = celpy_environment(celpy.CompiledRunner)
    assert compiled.program(compiled.compile("1 + 1")).evaluate({}) == 2
    interpreted = celpy_environment(celpy.InterpretedRunner)
    assert interpreted.program(interpreted.compile("2 + 2")).evaluate({}) == 4
    compiled = celpy_environment(celpy.CompiledRunner)
    assert compiled.program(compiled.compile("3 + 3")).evaluate({}) == 6
    assert FallbackProgram("[1, 2].exists(x, x == 2)")({}) is True


def test_a_schema_compiled_again_reuses_its_rules_syntax_trees_and_errors_are_not_kept() -> None:
    from alyx_server.rules.syntax import CelSyntaxError, parse

    text = BASE.replace("{rule}", "auth != null && doc.published == true")
    first = compile_schema_rules(parse_schema(text)).get("posts", "read")
    second = compile_schema_rules(parse_schema(text)).get("posts", "read")
    assert first is not None and second is not None
    assert first is not second and first.node is second.node  # parsed once, compiled twice
    for _ in range(2):  # a bad text fails every time: its error is never taken for a tree
        with pytest.raises(CelSyntaxError):
            parse("auth != null &&")
    bad = BASE.replace("{rule}", "doc.nope == 1")
    for _ in range(2):  # an unknown field is still checked against each schema
        with pytest.raises(RuleError, match="nope"):
            compile_schema_rules(parse_schema(bad))
