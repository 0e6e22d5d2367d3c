"""An `Authorization` header of raw non-UTF-8 bytes is a 401, never a 500.

aiohttp decodes header bytes with surrogate escapes; the JWT library then failed to
encode the token (UnicodeEncodeError, a 500). The attack is sent over a raw socket,
byte for byte, since an HTTP client library would encode the header itself.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient


async def _raw_get(client: TestClient[Any, Any], path: str, authorization: bytes) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: alyx\r\nAuthorization: "
            + authorization + b"\r\nConnection: close\r\n\r\n"
        )  # fmt: skip
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xff\xfe\xfd", b"Bearer alyx_\xc3\x28", b"Bearer \xe2\x82\xac"],
)
async def test_a_non_utf8_authorization_header_is_401(
    client: TestClient[Any, Any], authorization: bytes
) -> None:
    status, body = await _raw_get(client, "/api/collections/posts", authorization)
    assert status == 401, body
    assert body["code"] == "INVALID_TOKEN"
    assert body["error"] == "the token is invalid: tokens are ASCII text, and this one is not"
