"""Model-based test: every subscriber's materialised view equals a fresh REST query.

A hypothesis state machine drives a real server (create_app with OwnerPolicy, a real
port, real WebSocket clients) on an event loop of its own: several users create, update,
delete and batch-write posts over REST, and after every step each subscription of each
user, as its client materialised it from snapshot and deltas (in `order` for live
windows), must equal the REST list with the same filter, sort and limit as that user,
`total` included.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from alyx_server.app import create_app
from tests.alyx_server.realtime.support import LiveClient, OwnerPolicy, register, settings_for, write_project

USERS = ("anon", "alice", "bob")
TITLES = ("a", "b", "c", "d")
_serial = itertools.count()


def subscriptions(ids: dict[str, str | None]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(subscribe payload, the equivalent REST query) pairs."""
    alice = ids["alice"]
    return [
        ({"collection": "posts", "filter": {"n": {"$gte": 3}}}, {"filter": "n:gte:3", "limit": "1000"}),
        ({"collection": "posts", "sort": ["-n", "title"], "limit": 3}, {"sort": "-n,title", "limit": "3"}),
        (
            {"collection": "posts", "filter": {"owner": alice}, "sort": ["n"], "limit": 2},
            {"filter": f"owner:eq:{alice}", "sort": "n", "limit": "2"},
        ),
        (
            {
                "collection": "posts",
                "filter": {"private": False, "n": {"$lt": 5}},
                "sort": "title",
                "limit": 4,
            },
            {"filter": ["private:eq:false", "n:lt:5"], "sort": "title", "limit": "4"},  # type: ignore[dict-item]
        ),
        (
            {"collection": "posts", "filter": {"title": {"$in": ["a", "b"]}}},
            {"filter": "title:in:a,b", "limit": "1000"},
        ),
    ]


class Server:
    """A real server on a loop of its own, driven synchronously by the state machine."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"alyx-live-{next(_serial)}-"))
        self.loop = asyncio.new_event_loop()
        self.client: TestClient[Any, Any] = self.run(self._start())
        self.tokens: dict[str, str | None] = {"anon": None}
        self.ids: dict[str, str | None] = {"anon": None}
        for name in USERS[1:]:
            self.ids[name], self.tokens[name] = self.run(register(self.client, f"{name}@example.com"))
        self.lives: dict[str, LiveClient] = {}
        self.subs: list[tuple[str, str, dict[str, Any]]] = []
        for name in USERS:
            self.run(self._connect(name))

    async def _start(self) -> TestClient[Any, Any]:
        app = create_app(settings_for(write_project(self.root / "project")), policy=OwnerPolicy())
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        return client

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def headers(self, user: str) -> dict[str, str]:
        token = self.tokens[user]
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _connect(self, user: str) -> None:
        live = self.lives[user] = await LiveClient.connect(self.client, headers=self.headers(user))
        for payload, rest in subscriptions(self.ids):
            snap = await live.subscribe(payload)
            assert snap["type"] == "snapshot", snap
            self.subs.append((user, snap["payload"]["subscription_id"], rest))

    def close(self) -> None:
        async def stop() -> None:
            for live in self.lives.values():
                await live.close()
            await self.client.close()

        self.run(stop())
        self.loop.close()


class LiveModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = Server()
        self.docs: list[str] = []

    def teardown(self) -> None:
        self.server.close()

    def _write(self, user: str, method: str, path: str, body: Any = None) -> Any:
        """The response body; None when the user may not read the doc (404, like a missing one)."""

        async def go() -> Any:
            resp = await self.server.client.request(
                method, path, json=body, headers=self.server.headers(user)
            )
            if resp.status == 404 and path != "/api/collections/posts":
                return None
            assert resp.status < 300, await resp.text()
            return await resp.json() if resp.status != 204 else {}

        return self.server.run(go())

    @rule(
        user=st.sampled_from(USERS), n=st.integers(0, 6), title=st.sampled_from(TITLES), private=st.booleans()
    )
    def create(self, user: str, n: int, title: str, private: bool) -> None:
        doc = {"title": title, "n": n, "private": private, "owner": self.server.ids[user]}
        created = self._write(user, "POST", "/api/collections/posts", doc)
        self.docs.append(created["id"])

    @precondition(lambda self: bool(self.docs))
    @rule(
        pick=st.integers(0, 10_000),
        user=st.sampled_from(USERS),
        changes=st.fixed_dictionaries(
            {},
            optional={
                "n": st.integers(0, 6),
                "title": st.sampled_from(TITLES),
                "private": st.booleans(),
                "owner": st.sampled_from(USERS),
            },
        ),
    )
    def update(self, pick: int, user: str, changes: dict[str, Any]) -> None:
        if "owner" in changes:
            changes["owner"] = self.server.ids[changes["owner"]]
        doc_id = self.docs[pick % len(self.docs)]
        self._write(user, "PATCH", f"/api/collections/posts/{doc_id}", changes)

    @precondition(lambda self: bool(self.docs))
    @rule(pick=st.integers(0, 10_000), user=st.sampled_from(USERS))
    def delete(self, pick: int, user: str) -> None:
        doc_id = self.docs[pick % len(self.docs)]
        if self._write(user, "DELETE", f"/api/collections/posts/{doc_id}") is not None:
            self.docs.remove(doc_id)

    @precondition(lambda self: len(self.docs) >= 2)
    @rule(pick=st.integers(0, 10_000), n=st.integers(0, 6), user=st.sampled_from(USERS))
    def batch(self, pick: int, n: int, user: str) -> None:
        """Several changes in one transaction: one tick, coalesced deltas."""
        first, second = self.docs[pick % len(self.docs)], self.docs[(pick + 1) % len(self.docs)]
        ops = [
            {"method": "PATCH", "collection": "posts", "id": first, "body": {"n": n}},
            {"method": "DELETE", "collection": "posts", "id": second},
            {
                "method": "POST",
                "collection": "posts",
                "body": {"title": "c", "n": 6 - n, "owner": self.server.ids[user]},
            },
        ]
        result = self._write(user, "POST", "/api/batch", {"operations": ops})
        if result is None:
            return
        self.docs.remove(second)
        self.docs.append(result["results"][2]["body"]["id"])

    @invariant()
    def views_equal_rest(self) -> None:
        self.server.run(self._compare())

    async def _compare(self) -> None:
        server = self.server
        for live in server.lives.values():
            await live.sync()
        for user, sub_id, rest in server.subs:
            resp = await server.client.get(
                "/api/collections/posts", params=rest, headers=server.headers(user)
            )
            expected = await resp.json()
            view = server.lives[user].views[sub_id]
            if "sort" in rest:
                assert view.listed() == expected["docs"], (user, rest)
            else:
                assert sorted(view.docs.values(), key=lambda d: d["id"]) == sorted(
                    expected["docs"], key=lambda d: d["id"]
                ), (user, rest)
            assert view.total == expected["total"], (user, rest, view.total, expected["total"])


def test_every_view_equals_a_fresh_rest_query() -> None:
    current = settings()
    run_state_machine_as_test(
        LiveModel,
        settings=settings(current, max_examples=min(current.max_examples, 20), stateful_step_count=12),
    )
