"""The semantics of SPEC §10, asserted on what a real WebSocket client receives."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.realtime.support import LiveClient, register

Client = TestClient  # type: ignore[type-arg]


async def create(client: Client, token: str | None = None, **doc: object) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await client.post("/api/collections/posts", json=doc, headers=headers)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def update(client: Client, doc_id: str, **changes: object) -> dict[str, Any]:
    resp = await client.patch(f"/api/collections/posts/{doc_id}", json=changes)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def delete(client: Client, doc_id: str) -> None:
    resp = await client.delete(f"/api/collections/posts/{doc_id}")
    assert resp.status == 204, await resp.text()


def changes_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    (delta,) = messages
    assert delta["type"] == "delta", delta
    payload: dict[str, Any] = delta["payload"]
    return payload


async def test_the_semantics_table(client: Client) -> None:
    live = await LiveClient.connect(client)
    snap = await live.subscribe({"collection": "posts", "filter": {"n": {"$gte": 10}}})
    sub = snap["payload"]["subscription_id"]
    assert snap["payload"]["docs"] == [] and snap["payload"]["total"] == 0

    # insert not matching: nothing
    low = await create(client, title="low", n=1)
    assert await live.sync() == []
    # insert matching: insert, total
    high = await create(client, title="high", n=10)
    got = changes_of(await live.sync())
    assert got == {"subscription_id": sub, "changes": {"inserts": [high]}, "total": 1}
    # update entering: insert
    entered = await update(client, low["id"], n=11)
    got = changes_of(await live.sync())
    assert got["changes"] == {"inserts": [entered]} and got["total"] == 2
    # update staying: update with the whole doc, total unchanged
    stayed = await update(client, high["id"], title="higher")
    got = changes_of(await live.sync())
    assert got == {"subscription_id": sub, "changes": {"updates": [stayed]}}
    # update leaving: delete
    await update(client, low["id"], n=2)
    got = changes_of(await live.sync())
    assert got["changes"] == {"deletes": [low["id"]]} and got["total"] == 1
    # delete of a doc that does not match: nothing; of one that does: delete
    await delete(client, low["id"])
    assert await live.sync() == []
    await delete(client, high["id"])
    got = changes_of(await live.sync())
    assert got["changes"] == {"deletes": [high["id"]]} and got["total"] == 0


async def test_changes_in_one_tick_are_coalesced(client: Client) -> None:
    live = await LiveClient.connect(client)
    await live.subscribe({"collection": "posts"})
    ops = [{"method": "POST", "collection": "posts", "body": {"title": f"t{i}", "n": i}} for i in range(5)]
    resp = await client.post("/api/batch", json={"operations": ops})
    assert resp.status == 200
    got = changes_of(await live.sync())
    assert sorted(d["title"] for d in got["changes"]["inserts"]) == ["t0", "t1", "t2", "t3", "t4"]
    assert got["total"] == 5


async def test_live_window_push_out_and_refill_with_order(client: Client) -> None:
    docs = {n: await create(client, title=f"n{n}", n=n) for n in (1, 2, 3, 4)}
    live = await LiveClient.connect(client)
    snap = await live.subscribe({"collection": "posts", "sort": ["-n"], "limit": 2})
    ids = {n: d["id"] for n, d in docs.items()}
    assert snap["payload"]["order"] == [ids[4], ids[3]]
    assert snap["payload"]["total"] == 4

    # A doc that sorts first pushes the last one out.
    top = await create(client, title="n9", n=9)
    got = changes_of(await live.sync())
    assert got["changes"] == {"inserts": [top], "deletes": [ids[3]]}
    assert got["order"] == [top["id"], ids[4]] and got["total"] == 5

    # A doc leaving a full window is replaced by the next one from the database.
    await delete(client, top["id"])
    got = changes_of(await live.sync())
    assert got["changes"]["deletes"] == [top["id"]]
    assert [d["id"] for d in got["changes"]["inserts"]] == [ids[3]]
    assert got["order"] == [ids[4], ids[3]] and got["total"] == 4

    # Moving inside the window changes the order and sends the updated doc.
    moved = await update(client, ids[3], n=8)
    got = changes_of(await live.sync())
    assert got["changes"] == {"updates": [moved]} and got["order"] == [ids[3], ids[4]]

    # A doc beyond the window changing without entering it sends nothing.
    await update(client, ids[1], title="renamed")
    assert await live.sync() == []

    # A held doc sinking below the window is swapped for the next doc.
    await update(client, ids[4], n=0)
    got = changes_of(await live.sync())
    assert got["changes"]["deletes"] == [ids[4]]
    assert [d["id"] for d in got["changes"]["inserts"]] == [ids[2]]
    assert got["order"] == [ids[3], ids[2]]


async def test_window_ties_are_broken_by_the_primary_key(client: Client) -> None:
    made = [await create(client, title="same", n=5) for _ in range(4)]
    live = await LiveClient.connect(client)
    snap = await live.subscribe({"collection": "posts", "sort": ["n"], "limit": 3})
    by_id = sorted(d["id"] for d in made)
    assert snap["payload"]["order"] == by_id[:3]
    await delete(client, by_id[0])
    got = changes_of(await live.sync())
    assert got["order"] == by_id[1:4]


async def test_read_rule_hides_docs_and_a_doc_becoming_private_is_deleted(client: Client) -> None:
    alice, alice_token = await register(client, "alice@example.com")
    bob, bob_token = await register(client, "bob@example.com")
    a = await LiveClient.connect(client, f"/api/realtime?token={alice_token}")
    b = await LiveClient.connect(client, f"/api/realtime?token={bob_token}")
    anon = await LiveClient.connect(client)
    for live in (a, b, anon):
        await live.subscribe({"collection": "posts"})

    hidden = await create(client, alice_token, title="diary", owner=alice, private=True)
    assert [m["payload"]["changes"] for m in await a.sync()] == [{"inserts": [hidden]}]
    assert await b.sync() == [] and await anon.sync() == []

    public = await create(client, bob_token, title="news", owner=bob)
    for live in (a, b, anon):
        assert [m["payload"]["changes"] for m in await live.sync()] == [{"inserts": [public]}]

    # Bob's post becomes private: whoever may no longer read it gets a delete.
    private = await update(client, public["id"], private=True)
    assert [m["payload"]["changes"] for m in await b.sync()] == [{"updates": [private]}]
    for live in (a, anon):
        assert [m["payload"]["changes"] for m in await live.sync()] == [{"deletes": [public["id"]]}]


async def test_a_doc_beyond_a_full_window_becoming_private_changes_total(client: Client) -> None:
    docs = [await create(client, title=f"n{n}", n=n) for n in range(4)]
    live = await LiveClient.connect(client)
    snap = await live.subscribe({"collection": "posts", "sort": ["n"], "limit": 2})
    assert snap["payload"]["total"] == 4
    await update(client, docs[3]["id"], private=True)
    got = changes_of(await live.sync())
    assert got["total"] == 3 and got["changes"] == {}
    assert got["order"] == [docs[0]["id"], docs[1]["id"]]


async def test_writes_of_another_process_arrive(client: Client, project: Path) -> None:
    live = await LiveClient.connect(client)
    await live.subscribe({"collection": "posts", "filter": {"owner": "ext"}})
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        'c.execute("INSERT INTO posts (id, title, owner, n, private) '
        "VALUES ('ext-1', 'outside', 'ext', 3, 0)\"); "
        "c.commit()"
    )
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script, str(project / "data" / "alyx.db")], check=False
    )
    assert done.returncode == 0
    delta = await live.until("delta")
    inserted = delta["payload"]["changes"]["inserts"]
    assert [(d["id"], d["title"], d["n"], d["private"]) for d in inserted] == [("ext-1", "outside", 3, False)]
    conn = sqlite3.connect(project / "data" / "alyx.db")
    try:
        conn.execute("DELETE FROM posts WHERE id = 'ext-1'")
        conn.commit()
    finally:
        conn.close()
    delta = await live.until("delta")
    assert delta["payload"]["changes"] == {"deletes": ["ext-1"]}


async def test_token_expiring_mid_connection_pauses_delivery_until_auth(
    client: Client, clock: ManualClock
) -> None:
    alice, token = await register(client, "alice@example.com")
    live = await LiveClient.connect(client, headers={"Authorization": f"Bearer {token}"})
    snap = await live.subscribe(
        {"collection": "posts", "sort": ["n"], "limit": 10},
    )
    sub = snap["payload"]["subscription_id"]
    first = await create(client, title="before", owner=alice, private=True, n=1)
    assert [m["type"] for m in await live.sync()] == ["delta"]

    clock.advance(16 * 60)  # past auth.jwt.access_ttl (15m)
    await create(client, title="during", owner=alice, private=True, n=2)
    got = await live.sync()
    assert [m["payload"] for m in got] == [
        {
            "code": "TOKEN_EXPIRED",
            "message": "the access token has expired: deliveries are paused; send auth with a fresh token",
        }
    ]
    await create(client, title="still paused", n=3)
    assert await live.sync() == []
    answer = await live.subscribe({"collection": "posts"})
    assert answer["payload"]["code"] == "TOKEN_EXPIRED"

    resp = await client.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": "correct-horse-1"}
    )
    fresh = (await resp.json())["tokens"]["access_token"]
    await live.send("auth", {"token": fresh}, "re")
    got = await live.sync()
    assert [m["type"] for m in got] == ["snapshot"]
    again = got[0]
    assert again["id"] == snap["id"] and again["payload"]["subscription_id"] == sub
    assert [d["title"] for d in again["payload"]["docs"]] == ["before", "during", "still paused"]
    assert again["payload"]["docs"][0] == first
    await create(client, title="after", n=4)
    assert [m["type"] for m in await live.sync()] == ["delta"]


async def test_expired_query_token_is_reported_at_once(client: Client, clock: ManualClock) -> None:
    _alice, token = await register(client, "alice@example.com")
    clock.advance(16 * 60)
    live = await LiveClient.connect(client, f"/api/realtime?token={token}")
    err = await live.until("error")
    assert err["payload"] == {
        "code": "TOKEN_EXPIRED",
        "message": "the access token has expired; refresh it or log in again",
    }
