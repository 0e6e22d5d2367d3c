"""The realtime protocol over a real WebSocket: every message type and error code."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from alyx_server.app import create_app
from tests.alyx_server.realtime.conftest import ClientFactory
from tests.alyx_server.realtime.support import LiveClient, OwnerPolicy, register, settings_for

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def overrides() -> dict[str, object]:
    # The byte bound of the send queue is raised above the 8 MB that a client falling
    # behind holds below (test_queue_bytes.py tests the bound itself).
    return {
        "realtime.max_subscriptions_per_client": 3,
        "realtime.max_message_size": "2KiB",
        "realtime.max_queued_bytes": "32MiB",
    }


async def create(client: Client, collection: str = "posts", **doc: object) -> dict[str, object]:
    resp = await client.post(f"/api/collections/{collection}", json=doc)
    assert resp.status == 201, await resp.text()
    body: dict[str, object] = await resp.json()
    return body


async def error_of(live: LiveClient, message_id: object = None) -> dict[str, str]:
    data = await live.until("error")
    assert data.get("id") == message_id, data
    assert set(data["payload"]) == {"code", "message"}
    payload: dict[str, str] = data["payload"]
    return payload


async def test_connected_comes_first_then_ping_answers_pong(client: Client) -> None:
    live = await LiveClient.connect(client)
    assert live.client_id
    await live.send("ping", None, 7)
    assert await live.receive() == {"id": 7, "type": "pong", "payload": {}}
    await live.send("ping")
    assert await live.receive() == {"type": "pong", "payload": {}}


async def test_snapshot_echoes_the_id_and_hides_internal_fields(client: Client) -> None:
    await create(client, title="a", n=1)
    await create(client, title="b", n=5)
    live = await LiveClient.connect(client)
    snap = await live.subscribe({"collection": "posts", "filter": {"n": {"$gt": 2}}})
    assert snap["type"] == "snapshot" and snap["id"] == "m1"
    payload = snap["payload"]
    assert payload["total"] == 1
    assert [d["title"] for d in payload["docs"]] == ["b"]
    assert "secret" not in payload["docs"][0]
    assert "order" not in payload, "a live set has no order"
    everything = await live.subscribe({"collection": "posts"})
    assert all("secret" not in d for d in everything["payload"]["docs"])


@pytest.mark.parametrize("size", [10, 70_000], ids=["under-64KiB", "over-64KiB"])
async def test_frames_of_every_length_arrive_whole(client: Client, size: int) -> None:
    """A frame's length header has three forms: `connected` is under 126 bytes, these
    deltas and snapshots under 64 KiB or over it."""
    live = await LiveClient.connect(client)
    await live.subscribe({"collection": "posts", "filter": {"n": size}})
    posted = await create(client, title="t" * size, n=size)
    [delta] = await live.sync()
    assert delta["payload"]["changes"] == {"inserts": [posted]}
    again = await live.subscribe({"collection": "posts", "filter": {"n": size}})
    assert again["payload"]["docs"] == [posted]


def _small_receive_buffer(addr_info: Any) -> socket.socket:
    family, kind, proto, _canonname, _address = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    return sock


async def test_a_client_that_falls_behind_gets_every_delta_in_order(client: Client) -> None:
    """While its socket is backed up, deltas wait in the client's queue; none is lost,
    none overtakes another, and direct writes resume once it has caught up."""
    connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as session:
        reader = LiveClient(await session.ws_connect(client.make_url("/api/realtime")))
        assert (await reader.receive())["type"] == "connected"
        await reader.subscribe({"collection": "posts", "filter": {"n": 7}})
        body = "x" * 200_000
        for i in range(40):  # 8 MB that the client does not read meanwhile
            await create(client, title=f"t{i}", n=7, body=body)

        async def read_all() -> list[dict[str, Any]]:
            return [await reader.receive() for _ in range(80)]

        # Then it reads while more deltas come: its socket drains as its queue empties.
        receiving = asyncio.ensure_future(read_all())
        for i in range(40, 80):
            await create(client, title=f"t{i}", n=7, body="y" * (i * 1000))
        got = await receiving
        titles = [m["payload"]["changes"]["inserts"][0]["title"] for m in got]
        assert titles == [f"t{i}" for i in range(80)]
        after = await create(client, title="after", n=7)
        [delta] = await reader.sync()
        assert delta["payload"]["changes"] == {"inserts": [after]}


async def test_unsubscribe_stops_deltas(client: Client) -> None:
    live = await LiveClient.connect(client)
    snap = await live.subscribe({"collection": "posts"})
    sub_id = snap["payload"]["subscription_id"]
    await live.send("unsubscribe", {"subscription_id": sub_id}, "u1")
    assert await live.receive() == {
        "id": "u1",
        "type": "unsubscribed",
        "payload": {"subscription_id": sub_id},
    }
    await create(client, title="after", n=1)
    assert await live.sync() == []
    await live.send("unsubscribe", {"subscription_id": sub_id}, "u2")
    err = await error_of(live, "u2")
    assert err == {"code": "INVALID_PAYLOAD", "message": f"no subscription {sub_id!r} on this connection"}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "the message is not valid JSON"),
        ("[1, 2]", 'a message must be a JSON object {"type", "payload", "id"?}'),
        ('{"type": "publish"}', "message type 'publish' is not one of: subscribe, unsubscribe, ping, auth"),
        ('{"payload": {}}', "message type missing is not one of"),
        ('{"type": "ping", "id": true}', "id must be a string or an integer"),
        ('{"type": "ping", "extra": 1}', "unknown message key 'extra'; keys are id, type, payload"),
    ],
)
async def test_invalid_message(client: Client, frame: str, message: str) -> None:
    live = await LiveClient.connect(client)
    await live.ws.send_str(frame)
    err = await error_of(live)
    assert err["code"] == "INVALID_MESSAGE"
    assert err["message"].startswith(message), err


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"type": "subscribe", "payload": {"collection": "posts"}},
            "subscribe needs an id, echoed by its snapshot",
        ),
        ({"id": 1, "type": "subscribe", "payload": []}, "the payload of subscribe must be a JSON object"),
        (
            {"id": 1, "type": "subscribe", "payload": {}},
            "subscribe needs a collection name (payload.collection)",
        ),
        (
            {"id": 1, "type": "subscribe", "payload": {"collection": "posts", "order": 1}},
            "unknown subscribe key 'order'; keys are: collection, filter, where, sort, limit, expand",
        ),
        (
            {"id": 1, "type": "subscribe", "payload": {"collection": "posts", "limit": "5"}},
            "limit must be an integer",
        ),
        (
            {"id": 1, "type": "subscribe", "payload": {"collection": "posts", "sort": ["-nope"]}},
            "unknown field 'nope'",
        ),
        (
            {"id": 1, "type": "subscribe", "payload": {"collection": "posts", "expand": ["title"]}},
            "cannot expand 'title'; reference fields of posts are: author",
        ),
        ({"id": 1, "type": "unsubscribe", "payload": {}}, "unsubscribe needs payload.subscription_id"),
        ({"id": 1, "type": "auth", "payload": {}}, "auth needs payload.token, an access token"),
    ],
)
async def test_invalid_payload(client: Client, message: dict[str, object], expected: str) -> None:
    live = await LiveClient.connect(client)
    await live.ws.send_json(message)
    err = await error_of(live, message.get("id"))
    assert err["code"] == "INVALID_PAYLOAD"
    assert expected in err["message"], err


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"filter": {"nope": 1}}, "filter on 'nope': unknown field 'nope'"),
        (
            {"filter": {"n": {"$between": [1, 2]}}},
            "filter on 'n': unknown operator '$between'; operators are: $eq",
        ),
        ({"filter": {"n": {"$in": 3}}}, "filter on 'n': $in takes a list of values, not 3"),
        (
            {"filter": {"n": "many"}},
            "filter on 'n': invalid condition n eq: n is an int field and 'many' is not",
        ),
        ({"filter": {"n": {"$exists": "yes"}}}, "filter on 'n': $exists takes true or false, not 'yes'"),
        ({"filter": {"n": {}}}, "filter on 'n': expected a value or an object of operators"),
        ({"filter": {"private": {"$like": "x"}}}, "filter on 'private': invalid condition private like"),
        ({"filter": [1]}, "filter must be an object"),
        ({"filter": {"n": {"$gt": 2**70}}}, "filter on 'n'"),
        ({"where": "doc.n >"}, "invalid where:"),
        ({"where": "doc.nope == 1"}, "nope"),
    ],
)
async def test_invalid_filter_names_the_field_and_the_problem(
    client: Client, payload: dict[str, object], expected: str
) -> None:
    live = await LiveClient.connect(client)
    answer = await live.subscribe({"collection": "posts", **payload})
    assert answer["type"] == "error"
    assert answer["payload"]["code"] == "INVALID_FILTER"
    assert expected in answer["payload"]["message"], answer


async def test_collection_not_found_forbidden_unauthorized(client: Client) -> None:
    live = await LiveClient.connect(client)
    answer = await live.subscribe({"collection": "postz"})
    assert answer["payload"]["code"] == "COLLECTION_NOT_FOUND"
    assert "unknown collection 'postz'" in answer["payload"]["message"]
    answer = await live.subscribe({"collection": "vault"})
    assert answer["payload"] == {"code": "FORBIDDEN", "message": "only admins may read vault"}
    answer = await live.subscribe({"collection": "members"})
    assert answer["payload"] == {"code": "UNAUTHORIZED", "message": "sign in to read members"}
    await live.send("auth", {"token": "not-a-token"}, "a1")
    err = await error_of(live, "a1")
    assert err["code"] == "UNAUTHORIZED"
    assert "invalid" in err["message"]


async def test_bad_query_token_is_an_error_frame_and_the_connection_stays(client: Client) -> None:
    live = await LiveClient.connect(client, "/api/realtime?token=forged")
    err = await error_of(live)
    assert err["code"] == "UNAUTHORIZED"
    snap = await live.subscribe({"collection": "posts"})
    assert snap["type"] == "snapshot"


async def test_bad_header_token_is_refused_before_the_upgrade(client: Client) -> None:
    resp = await client.get("/api/realtime", headers={"Authorization": "Bearer forged"})
    assert resp.status == 401
    assert (await resp.json())["code"] == "INVALID_TOKEN"


async def test_header_and_query_tokens_authenticate(client: Client) -> None:
    alice, token = await register(client, "alice@example.com")
    await create(client, title="mine", owner=alice, private=True)
    await create(client, title="open", owner=None)
    for path, headers in (
        ("/api/realtime", {"Authorization": f"Bearer {token}"}),
        (f"/api/realtime?token={token}", {}),
    ):
        live = await LiveClient.connect(client, path, headers=headers)
        snap = await live.subscribe({"collection": "posts", "sort": "title", "limit": 10})
        assert [d["title"] for d in snap["payload"]["docs"]] == ["mine", "open"]
        await live.close()
    anon = await LiveClient.connect(client)
    snap = await anon.subscribe({"collection": "posts"})
    assert [d["title"] for d in snap["payload"]["docs"]] == ["open"]


async def test_subscription_limit(client: Client) -> None:
    live = await LiveClient.connect(client)
    for _ in range(3):
        assert (await live.subscribe({"collection": "posts"}))["type"] == "snapshot"
    answer = await live.subscribe({"collection": "posts"})
    assert answer["payload"] == {
        "code": "SUBSCRIPTION_LIMIT",
        "message": "a connection may hold 3 subscriptions; unsubscribe from one first",
    }


async def test_message_too_large(client: Client) -> None:
    live = await LiveClient.connect(client)
    await live.send("subscribe", {"collection": "posts", "where": "doc.title == '" + "x" * 3000 + "'"}, "big")
    err = await error_of(live)
    assert err == {
        "code": "MESSAGE_TOO_LARGE",
        "message": "the message has 3098 bytes; the limit is 2048 bytes",
    }
    await live.send("ping", None, "still")
    assert (await live.until("pong"))["id"] == "still"


async def test_limit_is_clamped(client: Client) -> None:
    resp = await client.post(
        "/api/batch",
        json={
            "operations": [
                {"method": "POST", "collection": "posts", "body": {"title": f"t{i}"}} for i in range(100)
            ]
        },
    )
    assert resp.status == 200
    await create(client, title="last")
    live = await LiveClient.connect(client)
    zero = await live.subscribe({"collection": "posts", "sort": ["title"], "limit": 0})
    assert len(zero["payload"]["order"]) == 100 and zero["payload"]["total"] == 101
    huge = await live.subscribe({"collection": "posts", "sort": ["title"], "limit": 5000})
    assert len(huge["payload"]["order"]) == 101


@pytest.mark.parametrize(
    ("live_filter", "rest_filter"),
    [
        ({"n": 2}, "n:eq:2"),
        ({"n": {"$eq": 2}}, "n:eq:2"),
        ({"n": {"$ne": 2}}, "n:ne:2"),
        ({"n": {"$gt": 2}}, "n:gt:2"),
        ({"n": {"$gte": 2}}, "n:gte:2"),
        ({"n": {"$lt": 2}}, "n:lt:2"),
        ({"n": {"$lte": 2}}, "n:lte:2"),
        ({"title": {"$like": "B%"}}, "title:like:B%"),
        ({"title": {"$contains": "et"}}, "title:contains:et"),
        ({"n": {"$in": [1, 3]}}, "n:in:1,3"),
        ({"n": {"$nin": [1, 3]}}, "n:not_in:1,3"),
        ({"owner": {"$exists": True}}, "owner:not_null"),
        ({"owner": {"$exists": False}}, "owner:is_null"),
        ({"owner": None}, "owner:is_null"),
    ],
)
async def test_filter_operators_match_rest(
    client: Client, live_filter: dict[str, object], rest_filter: str
) -> None:
    for i, title in enumerate(["alpha", "beta", "Beth", "gamma"]):
        await create(client, title=title, n=i, owner="u" if i % 2 else None)
    rest = await (await client.get("/api/collections/posts", params={"filter": rest_filter})).json()
    live = await LiveClient.connect(client)
    snap = await live.subscribe({"collection": "posts", "filter": live_filter})
    assert sorted(d["title"] for d in snap["payload"]["docs"]) == sorted(d["title"] for d in rest["docs"])
    # The same filter decides deltas: a new doc matching the REST filter arrives.
    doc = await create(client, title="Bet", n=2, owner=None)
    rest = await (await client.get("/api/collections/posts", params={"filter": rest_filter})).json()
    seen = [m for m in await live.sync() if m["type"] == "delta"]
    expected = any(d["id"] == doc["id"] for d in rest["docs"])
    assert bool(seen) == expected


async def test_expand_in_snapshot_and_deltas(client: Client) -> None:
    author = await create(client, "authors", name="Ann")
    await create(client, title="one", author=author["id"])
    live = await LiveClient.connect(client)
    snap = await live.subscribe({"collection": "posts", "expand": ["author"]})
    assert snap["payload"]["docs"][0]["expand"] == {"author": {"id": author["id"], "name": "Ann"}}
    await create(client, title="two", author=author["id"])
    (delta,) = await live.sync()
    assert delta["payload"]["changes"]["inserts"][0]["expand"]["author"]["name"] == "Ann"


async def test_max_connections_refuses_the_upgrade(project, clock, aiohttp_client: ClientFactory) -> None:  # type: ignore[no-untyped-def]
    app = create_app(
        settings_for(project, **{"realtime.max_connections": 1}), clock=clock, policy=OwnerPolicy()
    )
    client = await aiohttp_client(app)
    first = await LiveClient.connect(client)
    resp = await client.get("/api/realtime", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert resp.status == 503
    assert (await resp.json())["code"] == "REALTIME_FULL"
    await first.close()
    second = await client.ws_connect("/api/realtime")
    msg = await second.receive()
    assert msg.type == WSMsgType.TEXT and msg.json()["type"] == "connected"
    await second.close()


async def test_a_clean_disconnect_frees_subscriptions(client: Client) -> None:
    live = await LiveClient.connect(client)
    await live.subscribe({"collection": "posts"})
    await live.subscribe({"collection": "posts", "sort": ["n"], "limit": 5})
    metrics = await (await client.get("/metrics")).text()
    assert "alyx_realtime_connections 1.0" in metrics and "alyx_realtime_subscriptions 2.0" in metrics
    await live.close()
    for _ in range(200):
        metrics = await (await client.get("/metrics")).text()
        if "alyx_realtime_connections 0.0" in metrics:
            break
        await asyncio.sleep(0.01)
    assert "alyx_realtime_connections 0.0" in metrics and "alyx_realtime_subscriptions 0.0" in metrics
    assert 'alyx_realtime_messages_sent_total{type="snapshot"} 2.0' in metrics
