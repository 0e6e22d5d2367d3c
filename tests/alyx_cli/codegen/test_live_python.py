"""The generated Python client against a real server: sync and asyncio round trips."""

from __future__ import annotations

import asyncio
import importlib
import queue
import sys
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.alyx_cli.codegen.conftest import LiveServer, generate_project, round_trip_expectations

PASSWORD = "correct horse 1"


@pytest.fixture(scope="module")
def client_module(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("py-client")
    generate_project(live_server.project, out, ("python",))
    sys.path.insert(0, str(out / "python"))
    try:
        yield importlib.import_module("alyx_client")
    finally:
        sys.path.remove(str(out / "python"))
        for name in [m for m in sys.modules if m == "alyx_client" or m.startswith("alyx_client.")]:
            del sys.modules[name]


def _titles(docs: list[dict[str, Any]]) -> list[str]:
    return [d["title"] for d in docs]


def _wait_for(events: queue.Queue[tuple[list[str], Any]], want: list[str]) -> Any:
    while True:
        titles, change = events.get(timeout=10)
        if titles == want:
            return change


def test_sync_round_trip(client_module: ModuleType, live_server: LiveServer) -> None:
    mod = client_module
    tag = uuid.uuid4().hex[:8]
    saved: list[Any] = []
    a = mod.Alyx(live_server.url, on_tokens=saved.append)
    b = mod.Alyx(live_server.url)
    result: dict[str, Any] = {}
    try:
        session = a.auth.register(f"py-a-{tag}@example.com", PASSWORD)
        b.auth.register(f"py-b-{tag}@example.com", PASSWORD)
        result["registered"] = saved[-1] == a.auth.tokens and a.auth.me()["id"] == session["user"]["id"]
        uid = session["user"]["id"]
        ids = {}
        for t in ("p-a", "p-b", "p-c"):
            ids[t] = a.posts.create(
                {"title": t, "slug": f"py-{tag}-{t}", "author_id": uid, "published": True}
            )["id"]
        listed = a.posts.list(a.posts.query().filter("author_id", "eq", uid).filter("title", "eq", "p-b"))
        result["listed"] = _titles(listed["docs"])
        result["updated_body"] = a.posts.update(ids["p-b"], {"body": "edited"})["body"]

        events: queue.Queue[tuple[list[str], Any]] = queue.Queue()
        window = a.posts.query().filter("author_id", "eq", uid).sort("title").limit(2)
        sub = a.posts.subscribe(window, lambda docs, change: events.put((_titles(docs), change)))
        result["snapshot"] = _titles(sub.docs)
        p0 = a.posts.create({"title": "p-0", "slug": f"py-{tag}-p-0", "author_id": uid, "published": True})
        change = _wait_for(events, ["p-0", "p-a"])
        result["after_insert"] = _titles(sub.docs)
        result["inserted"] = _titles(change.inserts)
        a.posts.delete(p0["id"])
        change = _wait_for(events, ["p-a", "p-b"])
        result["after_delete"] = _titles(sub.docs)
        result["deleted"] = p0["id"] in change.deletes
        sub.unsubscribe()

        result["function"] = a.functions.hello({"name": "Ada"})["message"]
        with pytest.raises(mod.ForbiddenError) as refused:
            b.posts.delete(ids["p-a"])
        result["forbidden_code"] = refused.value.code
        result["forbidden_status"] = refused.value.status
        result["forbidden_message"] = refused.value.message
    finally:
        a.close()
        b.close()
    round_trip_expectations(result)


def test_sync_token_rotation_keeps_the_live_query(client_module: ModuleType, live_server: LiveServer) -> None:
    """A refresh rotates the tokens (the hook sees the new pair) and the subscription is
    re-made with the new token: it still sees inserts."""
    mod = client_module
    tag = uuid.uuid4().hex[:8]
    saved: list[Any] = []
    a = mod.Alyx(live_server.url, on_tokens=saved.append)
    try:
        uid = a.auth.register(f"py-r-{tag}@example.com", PASSWORD)["user"]["id"]
        events: queue.Queue[tuple[list[str], Any]] = queue.Queue()
        query = a.posts.query().filter("author_id", "eq", uid)
        sub = a.posts.subscribe(query, lambda docs, change: events.put((_titles(docs), change)))
        first = a.auth.tokens
        fresh = a.auth.refresh()
        assert fresh["refresh_token"] != first["refresh_token"]
        assert saved[-1] == fresh
        _wait_for(events, [])  # the fresh snapshot after re-subscribing
        a.posts.create({"title": "after", "slug": f"py-{tag}-after", "author_id": uid})
        _wait_for(events, ["after"])
        assert _titles(sub.docs) == ["after"]
        # The retired refresh token is refused, as a typed error with its code.
        stale = mod.Alyx(live_server.url, tokens=first)
        with pytest.raises(mod.UnauthorizedError) as reused:
            stale.auth.refresh()
        assert reused.value.code == "TOKEN_REUSED"
        stale.close()
    finally:
        a.close()


async def test_async_round_trip(client_module: ModuleType, live_server: LiveServer) -> None:
    mod = client_module
    tag = uuid.uuid4().hex[:8]
    async with mod.AsyncAlyx(live_server.url) as a, mod.AsyncAlyx(live_server.url) as b:
        uid = (await a.auth.register(f"pya-a-{tag}@example.com", PASSWORD))["user"]["id"]
        await b.auth.register(f"pya-b-{tag}@example.com", PASSWORD)
        seen: asyncio.Queue[list[str]] = asyncio.Queue()
        window = a.posts.query().filter("author_id", "eq", uid).sort("title").limit(2)
        sub = await a.posts.subscribe(window, lambda docs, change: seen.put_nowait(_titles(docs)))
        assert sub.docs == []
        created = []
        for t in ("p-b", "p-a", "p-c"):
            doc = await a.posts.create(
                {"title": t, "slug": f"pya-{tag}-{t}", "author_id": uid, "published": True}
            )
            created.append(doc)
        while (titles := await asyncio.wait_for(seen.get(), 10)) != ["p-a", "p-b"]:
            pass
        await a.posts.delete(created[1]["id"])  # p-a leaves, p-c moves into the window
        while (titles := await asyncio.wait_for(seen.get(), 10)) != ["p-b", "p-c"]:
            pass
        assert titles == ["p-b", "p-c"]
        assert (await a.functions.hello({"name": "Ada"}))["message"] == "Hello, Ada!"
        with pytest.raises(mod.ForbiddenError) as refused:
            await b.posts.update(created[0]["id"], {"title": "taken"})
        assert refused.value.code == "FORBIDDEN"
        results = await a.batch(
            [a.posts.op_update(created[0]["id"], {"body": "x"}), a.posts.op_get(created[2]["id"])]
        )
        assert [r["status"] for r in results] == [200, 200]
        assert results[0]["body"]["body"] == "x"
        await sub.unsubscribe()
