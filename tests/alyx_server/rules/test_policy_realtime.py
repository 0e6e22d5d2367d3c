"""What realtime asks an AccessPolicy, once per subscription: the read decision bound to
the caller (`read_check`), the doc fields it reads (`read_fields`) and the equalities
every readable doc has (`read_routes`), answered by CelAccess, OpenAccess and a policy
that narrows OpenAccess."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alyx_server.rules import AccessPolicy, Auth, OpenAccess, RequestInfo
from alyx_server.rules.access import CelAccess
from alyx_server.rules.load import compile_schema_rules
from alyx_server.schema.loader import parse_schema
from alyx_server.schema.model import Collection
from tests.alyx_server.rules.support import AUTH as ALICE
from tests.alyx_server.rules.support import REQUEST

SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:        { type: uuid, primary: true, default: auto }
      author_id: { type: uuid }
      published: { type: bool, default: false }
    rules:
      read: "auth != null && doc.author_id == auth.id && doc.published"
  notices:
    fields:
      id:   { type: uuid, primary: true, default: auto }
      text: { type: string }
    rules:
      read: "true"
  vault:
    fields:
      id: { type: uuid, primary: true, default: auto }
"""
MINE = {"id": "d1", "author_id": "u1", "published": True}
THEIRS = {"id": "d2", "author_id": "u2", "published": True}


def _cel() -> tuple[AccessPolicy, dict[str, Collection]]:
    schema = parse_schema(SCHEMA, filename="schema.yaml")
    policy: AccessPolicy = CelAccess(compile_schema_rules(schema))
    return policy, {c.name: c for c in schema.collections}


def test_cel_read_rule_bound_to_the_caller() -> None:
    policy, c = _cel()
    check = policy.read_check(c["posts"], ALICE, REQUEST, [1000, 1000])
    assert callable(check)
    assert check(MINE) is True
    assert check(THEIRS) is False
    assert check({**MINE, "published": False}) is False
    assert policy.read_fields(c["posts"]) == frozenset({"author_id", "published"})
    assert policy.read_routes(c["posts"], ALICE) == {"author_id": "u1", "published": True}
    assert policy.read_routes(c["posts"], None) == {"published": True}


def test_cel_rule_that_reads_no_doc_is_decided_once() -> None:
    policy, c = _cel()
    assert policy.read_check(c["notices"], None, REQUEST, None) is True
    assert policy.read_fields(c["notices"]) == frozenset()
    assert policy.read_routes(c["notices"], None) == {}


def test_cel_collection_without_a_read_rule_reads_nothing() -> None:
    policy, c = _cel()
    assert policy.read_check(c["vault"], ALICE, REQUEST, None) is False
    assert policy.read_fields(c["vault"]) == frozenset()
    assert policy.read_routes(c["vault"], ALICE) == {}


def test_open_access_reads_everything_without_reading_docs() -> None:
    _policy, c = _cel()
    policy: AccessPolicy = OpenAccess()
    assert policy.read_check(c["posts"], None, REQUEST, None) is True
    assert policy.read_fields(c["posts"]) == frozenset()
    assert policy.read_routes(c["posts"], None) == {}


class Published(OpenAccess):
    """A policy as a user would narrow OpenAccess: only published posts are readable."""

    def can_read(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, doc: Mapping[str, Any]
    ) -> bool:
        return bool(doc.get("published"))


def test_a_policy_narrowing_open_access_is_asked_per_doc() -> None:
    _policy, c = _cel()
    policy: AccessPolicy = Published()
    check = policy.read_check(c["posts"], ALICE, REQUEST, None)
    assert callable(check)
    assert check(MINE) is True
    assert check({**MINE, "published": False}) is False
    assert policy.read_fields(c["posts"]) is None  # unknown: any change may matter
    assert policy.read_routes(c["posts"], ALICE) == {}
