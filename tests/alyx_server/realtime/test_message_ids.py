"""Every refusal of a client message echoes the message's `id` when it has a valid one.

A client matches answers to requests by id; a refusal without it leaves the client
waiting for an answer that never comes. Each frame below is sent over a real WebSocket.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.alyx_server.realtime.support import LiveClient

Client = TestClient  # type: ignore[type-arg]


@pytest.mark.parametrize(
    ("frame", "message_id", "code", "message"),
    [
        (
            '{"id": "m1", "type": "ping", "extra": 1}',
            "m1",
            "INVALID_MESSAGE",
            "unknown message key 'extra'; keys are id, type, payload",
        ),
        (
            '{"id": 42, "type": "subscribe", "payload": {"collection": "posts"}, "meta": {}}',
            42,
            "INVALID_MESSAGE",
            "unknown message key 'meta'; keys are id, type, payload",
        ),
        (
            '{"id": "m2", "type": "publish"}',
            "m2",
            "INVALID_MESSAGE",
            "message type 'publish' is not one of: subscribe, unsubscribe, ping, auth",
        ),
        (
            '{"id": "m3", "payload": {}}',
            "m3",
            "INVALID_MESSAGE",
            "message type missing is not one of: subscribe, unsubscribe, ping, auth",
        ),
        (
            '{"id": "m4", "type": "ping", "payload": [1]}',
            "m4",
            "INVALID_PAYLOAD",
            "the payload of ping must be a JSON object",
        ),
        (
            '{"id": "m5", "type": "subscribe", "payload": {"collection": "nope"}}',
            "m5",
            "COLLECTION_NOT_FOUND",
            "nope",
        ),
    ],
)
async def test_a_refused_message_echoes_its_valid_id(
    client: Client, frame: str, message_id: object, code: str, message: str
) -> None:
    live = await LiveClient.connect(client)
    await live.ws.send_str(frame)
    data = await live.until("error")
    assert data == {"id": message_id, "type": "error", "payload": data["payload"]}
    assert data["payload"]["code"] == code
    assert message in data["payload"]["message"], data


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"id": true, "type": "ping"}', "id must be a string or an integer"),
        ('{"id": "' + "x" * 129 + '", "type": "ping", "extra": 1}', "id is longer than 128 characters"),
        ('{"id": [1], "type": "publish"}', "id must be a string or an integer"),
    ],
)
async def test_an_invalid_id_is_not_echoed_and_is_the_error(client: Client, frame: str, message: str) -> None:
    live = await LiveClient.connect(client)
    await live.ws.send_str(frame)
    data = await live.until("error")
    assert "id" not in data
    assert data["payload"] == {"code": "INVALID_MESSAGE", "message": message}
