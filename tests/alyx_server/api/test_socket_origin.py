"""The Origin rule for cookie-authenticated WebSockets, from a foreign page's side.

No Alyx socket is authenticated by a cookie yet (`/api/realtime` and
`/api/admin/events` take tokens, which a foreign page cannot read); the admin UI's will
be. `check_socket_origin` is the check such a socket must make before its upgrade, so it
is tested here on the real application, through a route shaped like that socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from alyx_server.api.sockets import check_socket_origin
from alyx_server.app import create_app
from tests.alyx_server.api.projects import make_settings

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ROUTE = "/cookie-socket"
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip


async def cookie_socket(request: web.Request) -> web.StreamResponse:
    check_socket_origin(request)
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("hello")
    await ws.close()
    return ws


@pytest.fixture
def app(project: Path) -> web.Application:
    origins = ["*", "https://app.example.com"]
    application = create_app(make_settings(project, **{"server.cors.allowed_origins": origins}))
    application.router.add_get(ROUTE, cookie_socket)
    return application


async def opens(client: TestClient[Any, Any], origin: str | None) -> bool:
    headers = {} if origin is None else {"Origin": origin}
    try:
        ws = await client.ws_connect(ROUTE, headers=headers)
    except aiohttp.WSServerHandshakeError as e:
        assert e.status == 403
        return False
    msg = await ws.receive()
    await ws.close()
    assert (msg.type, msg.data) == (WSMsgType.TEXT, "hello")
    return True


async def test_a_foreign_origin_is_refused_with_403_naming_the_setting(client: TestClient[Any, Any]) -> None:
    assert not await opens(client, "https://evil.example")
    resp = await client.get(ROUTE, headers={**UPGRADE, "Origin": "https://evil.example"})
    assert resp.status == 403
    body = await resp.json()
    assert body["code"] == "FORBIDDEN"
    host = f"{client.host}:{client.port}"
    assert body["error"] == (
        "WebSocket from origin 'https://evil.example' refused: a socket authenticated by a cookie "
        f"accepts only its own origin (host {host}) or one listed in server.cors.allowed_origins "
        "(* does not count; listed: https://app.example.com); add the origin there if it is yours"
    )


@pytest.mark.parametrize("origin", ["null", "file://", "https://app.example.com.evil.example", "not a url"])
async def test_opaque_and_lookalike_origins_are_refused(client: TestClient[Any, Any], origin: str) -> None:
    assert not await opens(client, origin)


async def test_own_listed_and_absent_origins_are_accepted(client: TestClient[Any, Any]) -> None:
    assert await opens(client, f"http://{client.host}:{client.port}")
    assert await opens(client, "https://app.example.com")
    assert await opens(client, None)


async def test_token_sockets_take_any_origin(client: TestClient[Any, Any]) -> None:
    # /api/realtime is authenticated by tokens, never cookies: allowed_origins does not apply.
    ws = await client.ws_connect("/api/realtime", headers={"Origin": "https://evil.example"})
    msg = await ws.receive()
    await ws.close()
    assert msg.json()["type"] == "connected"
