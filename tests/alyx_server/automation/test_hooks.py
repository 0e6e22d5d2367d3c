"""After-write hooks on the real application with real function workers."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.alyx_server.automation.support import RECORD_PY, make_app, rows, wait_for, write_project

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

RECORD_YAML = "on: { collection: posts, events: [create, update, delete] }\n"


async def _admin(client: TestClient[Any, Any]) -> dict[str, str]:
    password = "correct horse battery"
    email = "ann@example.com"
    response = await client.post("/api/auth/register", json={"email": email, "password": password})
    assert response.status == 201, await response.text()
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    token = (await response.json())["tokens"]["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def mixed_writes(client: TestClient[Any, Any], count: int, headers: dict[str, str]) -> int:
    """`count` creates, updates and deletes over a few dozen posts; the number of writes made."""
    rng = random.Random(7)
    live: list[str] = []
    made = 0
    while made < count:
        roll = rng.random()
        if not live or roll < 0.35:
            response = await client.post(
                "/api/collections/posts", json={"title": "t", "n": made}, headers=headers
            )
            assert response.status == 201, await response.text()
            live.append((await response.json())["id"])
        elif roll < 0.85:
            doc_id = rng.choice(live)
            response = await client.patch(
                f"/api/collections/posts/{doc_id}", json={"n": made}, headers=headers
            )
            assert response.status == 200, await response.text()
        else:
            doc_id = live.pop(rng.randrange(len(live)))
            response = await client.delete(f"/api/collections/posts/{doc_id}", headers=headers)
            assert response.status == 204
        made += 1
    return made


async def test_every_event_of_1000_mixed_writes_arrives_once_in_order(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_project(tmp_path / "p", {"record.py": RECORD_PY, "record.yaml": RECORD_YAML})
    client = await aiohttp_client(make_app(root))
    headers = await _admin(client)
    made = await mixed_writes(client, 1000, headers)
    changes = rows(
        root, "SELECT id, operation, doc_id FROM _alyx_changes WHERE collection = 'posts' ORDER BY id"
    )
    assert len(changes) == made
    await wait_for(lambda: rows(root, "SELECT count(*) FROM seen")[0][0] >= made)
    seen = rows(root, "SELECT change_id, event, post_id, n, previous_n, user FROM seen ORDER BY id")
    assert [s[0] for s in seen] == [c[0] for c in changes]  # each once, in commit order
    events = {"INSERT": "create", "UPDATE": "update", "DELETE": "delete"}
    assert [(s[1], s[2]) for s in seen] == [(events[c[1]], c[2]) for c in changes]
    assert {s[5] for s in seen} == {"ann@example.com"}
    # The document after and before each write: an update's previous n is the n the last
    # event of that post carried; a delete carries the previous doc only.
    last: dict[str, Any] = {}
    for _change, event, post, n, previous_n, _user in seen:
        if event == "create":
            assert previous_n is None and n is not None
        elif event == "update":
            assert previous_n == last[post]
        else:
            assert n is None and previous_n == last[post]
        last[post] = n
    # The function's own write lands before the hook's cursor moves past its event.
    cursor_sql = "SELECT change_id, delivered, failed FROM _alyx_hook_cursors WHERE hook = 'record'"
    await wait_for(lambda: rows(root, cursor_sql)[0][0] == changes[-1][0])
    assert rows(root, cursor_sql) == [(changes[-1][0], made, 0)]


WHEN_YAML = """\
on:
  collection: posts
  events: [update]
  when: "doc.flag && !previous.flag"
"""


async def test_when_filters_on_doc_and_previous(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    root = write_project(tmp_path / "p", {"record.py": RECORD_PY, "record.yaml": WHEN_YAML})
    client = await aiohttp_client(make_app(root))
    response = await client.post("/api/collections/posts", json={"title": "a"})
    doc_id = (await response.json())["id"]
    for body in ({"n": 1}, {"flag": True, "n": 2}, {"n": 3}, {"flag": False, "n": 4}, {"flag": True, "n": 5}):
        response = await client.patch(f"/api/collections/posts/{doc_id}", json=body)
        assert response.status == 200
    await wait_for(lambda: rows(root, "SELECT count(*) FROM seen")[0][0] >= 2)
    # The cursor passes every change; only the two that turned the flag on ran the function.
    await wait_for(
        lambda: (
            rows(root, "SELECT change_id FROM _alyx_hook_cursors")[0][0]
            == rows(root, "SELECT max(id) FROM _alyx_changes WHERE collection = 'posts'")[0][0]
        )
    )
    assert [r[0] for r in rows(root, "SELECT n FROM seen ORDER BY id")] == [2, 5]


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("on: { collection: nope }\n", "functions/record.yaml:1:19: on.collection: no collection 'nope'"),
        ('on: { collection: posts, when: "doc.n >" }\n', "functions/record.yaml:1:"),
        (
            "on: { collection: posts, when: \"doc.n > 1 && previous.titel == 'x'\" }\n",
            "functions/record.yaml:1:55: on.when: the when of function record's hook on posts "
            "does not compile: "
            "unknown field 'titel' in previous.titel; fields of posts are: id, title, n, flag",
        ),
        (
            'on:\n  collection: posts\n  when: doc.flag && doc["nn"] > 2\n',
            "functions/record.yaml:3:21: on.when: the when of function record's hook on posts "
            "does not compile: "
            "unknown field 'nn' in doc['nn']",
        ),
        ('on: { collection: posts, when: "[1].all(doc, doc > 0) && doc.n > 0" }\n', None),
    ],
)
async def test_a_bad_hook_is_reported_with_its_line(
    tmp_path: Path, aiohttp_client: ClientFactory, yaml: str, message: str | None
) -> None:
    from alyx_server.api.automation import AUTOMATION

    root = write_project(tmp_path / "p", {"record.py": RECORD_PY, "record.yaml": yaml})
    client = await aiohttp_client(make_app(root))
    hooks = client.app[AUTOMATION].hooks
    assert hooks is not None
    if message is None:  # a macro's own variable named doc is not the document
        assert "record" in hooks.hooks, hooks.problems
        return
    assert hooks.problems["record"].startswith(message), hooks.problems
    assert "record" not in hooks.hooks
