"""A caller's `where` cannot freeze the server: `matches` runs on RE2, evaluation has a budget.

The attacks are sent to `alyx dev` running as a process of its own (a frozen event loop
then shows as a `/health/live` probe that goes unanswered, and the test process stays
free to notice), while a thread keeps probing `/health/live`. Nothing here times the
attack: the probe must keep being answered, and the attack must get its answer.
Refused patterns are checked over the in-process app (400 naming `where`), over the
WebSocket (an INVALID_FILTER frame) and in schema.yaml (a load error at file:line:column).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import requests
from aiohttp.test_utils import TestClient
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.sync.client import connect

from alyx_server.api.runtime import RUNTIME
from alyx_server.errors import RuleError
from alyx_server.rules.load import compile_schema_rules
from alyx_server.schema.loader import parse_schema
from tests.alyx_server.api.projects import write_project
from tests.servers import AlyxProcess

T = TypeVar("T")

SCHEMA_YAML = """\
version: 1
collections:
  posts:
    fields:
      id:   { type: uuid, primary: true, default: auto }
      body: { type: text }
      tags: { type: json, nullable: true }
    rules: { create: "true", read: "true" }
"""
# 30 a's and a `!`: Python's `re` tries 2^30 ways to split the a's for `^(a+)+$`.
BODY = "a" * 30 + "!"
TAGS = list(range(100))
# Generous bounds for a busy 2-core machine; a frozen loop misses them by far.
PROBE_TIMEOUT = 15.0
ATTACK_TIMEOUT = 60.0


class Probe:
    """A thread asking `/health/live` again and again until stopped; what it saw."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[int] = []
        self.failures: list[str] = []
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            last = time.monotonic()
            while True:
                try:
                    answer = session.get(f"{self.url}/health/live", timeout=PROBE_TIMEOUT)
                    self.answers.append(answer.status_code)
                except requests.RequestException as e:
                    self.failures.append(repr(e))
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last)
                last = now
                if self._stop.wait(0.02):
                    return

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(PROBE_TIMEOUT * 2)

    def assert_answered(self) -> None:
        assert self.failures == [], f"/health/live went unanswered during the attack: {self.failures}"
        assert self.answers and set(self.answers) == {200}, self.answers


def while_probing(server: AlyxProcess, attack: Callable[[], T]) -> T:
    """`attack()`'s result, asserting /health/live kept answering while it ran."""
    with Probe(server.url) as probe:
        result = attack()
    probe.assert_answered()
    return result


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlyxProcess]:
    root = write_project(tmp_path_factory.mktemp("regex") / "project", SCHEMA_YAML)
    server = AlyxProcess(root, "dev").start()
    answer = requests.post(
        f"{server.url}/api/collections/posts", json={"body": BODY, "tags": TAGS}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    try:
        yield server
    finally:
        server.stop()


def _list(server: AlyxProcess, where: str) -> requests.Response:
    return requests.get(
        f"{server.url}/api/collections/posts", params={"where": where}, timeout=ATTACK_TIMEOUT
    )


@pytest.mark.parametrize(
    "where",
    [
        "doc.id.matches('^([0-9a-f-]+)+Z$')",
        "doc.body.matches('^(a+)+$')",
        "matches(doc.body, '^(a|a)+$')",
    ],
)
def test_a_backtracking_pattern_in_where_does_not_freeze_the_server(live: AlyxProcess, where: str) -> None:
    answer = while_probing(live, lambda: _list(live, where))
    assert answer.status_code == 200, answer.text
    assert answer.json()["docs"] == []


def _subscribe(server: AlyxProcess, where: str) -> dict[str, Any]:
    url = server.url.replace("http://", "ws://") + "/api/realtime"
    with connect(url, open_timeout=ATTACK_TIMEOUT, compression=None) as ws:
        assert json.loads(ws.recv(timeout=ATTACK_TIMEOUT))["type"] == "connected"
        payload = {"collection": "posts", "where": where}
        ws.send(json.dumps({"id": "s1", "type": "subscribe", "payload": payload}))
        frame: dict[str, Any] = json.loads(ws.recv(timeout=ATTACK_TIMEOUT))
        return frame


def test_a_backtracking_pattern_in_a_realtime_where_does_not_freeze_the_server(live: AlyxProcess) -> None:
    frame = while_probing(live, lambda: _subscribe(live, "doc.body.matches('^(a+)+$')"))
    assert frame["type"] == "snapshot", frame
    assert frame["payload"]["docs"] == []


def test_a_realtime_where_with_a_pattern_re2_refuses_gets_an_invalid_filter_frame(live: AlyxProcess) -> None:
    frame = _subscribe(live, r"doc.body.matches('(a)\\1')")
    assert frame["type"] == "error", frame
    assert frame["payload"]["code"] == "INVALID_FILTER"
    assert "RE2" in frame["payload"]["message"]
    assert "invalid escape sequence" in frame["payload"]["message"]


def test_nested_loops_past_the_evaluation_budget_leave_the_document_out(live: AlyxProcess) -> None:
    # 100 x 100 x 100 elements: a million steps against a budget of 100,000.
    where = "doc.tags.all(a, doc.tags.all(b, doc.tags.all(c, a == a)))"
    answer = while_probing(live, lambda: _list(live, where))
    assert answer.status_code == 200, answer.text
    assert answer.json()["docs"] == []
    # A loop within the budget still decides as written.
    within = _list(live, "doc.tags.exists(t, t == 99) && doc.tags.all(t, t < 100)")
    assert [d["body"] for d in within.json()["docs"]] == [BODY]


# -- refused patterns -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\\1", "invalid escape sequence: \\1"),
        ("(?=a)", "invalid perl operator: (?="),
        ("(?<!a)b", "invalid perl operator: (?<"),
        ("a" * 1001, "regular expression too long (1,001 characters; at most 1,000)"),
    ],
)
async def test_a_pattern_re2_refuses_in_where_answers_400_naming_where(
    client: TestClient[Any, Any], pattern: str, reason: str
) -> None:
    answer = await client.get("/api/collections/posts", params={"where": f"doc.title.matches('{pattern}')"})
    assert answer.status == 400
    body = await answer.json()
    assert body["code"] == "INVALID_QUERY"
    message = body["error"]
    assert message.startswith("invalid where: ")
    assert reason in message
    if "too long" not in reason:
        assert "matches() uses RE2 syntax: no backreferences or lookaround" in message


def test_a_pattern_re2_refuses_in_a_schema_rule_stops_the_load_at_its_line_and_column() -> None:
    text = SCHEMA_YAML.replace('read: "true"', "read: \"doc.body.matches('(?=x)y')\"")
    schema = parse_schema(text, filename="schema.yaml")
    with pytest.raises(RuleError) as info:
        compile_schema_rules(schema)
    lines = text.splitlines()
    line = next(i for i, t in enumerate(lines, 1) if "matches" in t)
    column = lines[line - 1].index("'(?=x)y'") + 1
    message = str(info.value)
    assert message.startswith(f"schema.yaml:{line}:{column}: "), message
    assert "the read rule of posts does not compile: invalid regular expression '(?=x)y'" in message
    assert "invalid perl operator: (?=" in message


# -- property: random patterns never hold the loop -------------------------------------------
def _regexes() -> st.SearchStrategy[str]:
    atoms = st.sampled_from(["a", "b", "!", ".", "[a-f]", "[^!]", "(?:)", "a?"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        quantifier = st.sampled_from(["+", "*", "?", "{1,5}", "+?", "*?"])
        return st.one_of(
            st.tuples(inner, quantifier).map(lambda t: f"({t[0]}){t[1]}"),
            st.tuples(inner, inner).map(lambda t: t[0] + t[1]),
            st.tuples(inner, inner).map(lambda t: f"({t[0]}|{t[1]})"),
        )

    return st.recursive(atoms, extend, max_leaves=12)


@given(
    pattern=_regexes(),
    anchor=st.sampled_from([("^", "$"), ("", "$"), ("^", ""), ("", "")]),
    field=st.sampled_from(["body", "id"]),
)
# The shapes that backtrack in Python's `re` run first, so a backtracking engine fails at once.
@example(pattern="((a)+)+", anchor=("^", "$"), field="body")
@example(pattern="(a|aa)*(b)?", anchor=("^", "$"), field="body")
@example(pattern="(([a-f]|.)+)+", anchor=("^", "!$"), field="id")
def test_random_patterns_in_where_never_hold_the_loop(
    live: AlyxProcess, pattern: str, anchor: tuple[str, str], field: str
) -> None:
    where = f"doc.{field}.matches('{anchor[0]}{pattern}{anchor[1]}')"
    with Probe(live.url) as probe:
        answer = _list(live, where)
    probe.assert_answered()
    assert answer.status_code == 200, (where, answer.text)
    assert probe.longest_gap < PROBE_TIMEOUT


async def test_a_list_whose_row_checks_add_up_past_the_budget_moves_off_the_loop(
    client: TestClient[Any, Any],
) -> None:
    # Each post costs about 10,200 steps (100 x 101 elements), within one evaluation's
    # budget of 100,000; twenty of them are twice the budget, which the loop does not
    # carry: the list moves to a reader thread (as past SQLite's step budget) and
    # answers in full.
    for i in range(20):
        answer = await client.post("/api/collections/posts", json={"title": f"p{i}", "tags": TAGS})
        assert answer.status == 201
    db = client.server.app[RUNTIME].ready_db()
    moved = db.loop_reads_moved
    where = "doc.tags.all(a, doc.tags.all(b, b >= 0))"
    answer = await client.get("/api/collections/posts", params={"where": where, "limit": "100"})
    assert answer.status == 200
    body = await answer.json()
    assert body["total"] == 20
    assert sorted(d["title"] for d in body["docs"]) == sorted(f"p{i}" for i in range(20))
    assert db.loop_reads_moved == moved + 1
