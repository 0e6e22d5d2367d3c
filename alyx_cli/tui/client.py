"""`AdminClient`: what the dashboard reads from a server's admin API.

    events()   the `GET /api/admin/events` WebSocket as (type, payload) pairs
    schema()   `GET /api/admin/schema`
    stats()    `GET /api/admin/stats`
    functions() `GET /api/admin/functions`: each function with its hook and schedule

The token (an admin user's access token or an admin token) goes in the Authorization
header. A refusal or an unreachable server raises `DashboardError` with a message fit
for the status line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

__all__ = ["AdminClient", "DashboardError"]

TIMEOUT = aiohttp.ClientTimeout(total=10)


class DashboardError(Exception):
    """The server cannot be read: unreachable, or it refused the token."""


def _refusal(status: int, body: Any) -> DashboardError:
    message = body.get("error") if isinstance(body, dict) else None
    if status == 401:
        hint = "pass an admin token with --token or ALYX_TOKEN (alyx admin create-token)"
        return DashboardError(f"the server wants an admin token: {message or status}; {hint}")
    return DashboardError(f"the server refused: {message or status}")


class AdminClient:
    """See the module docstring; `close()` when done."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT, headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get(self, path: str) -> dict[str, Any]:
        try:
            async with self.session.get(self.url + path) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise _refusal(response.status, body)
        except aiohttp.ClientError as e:
            raise DashboardError(f"cannot reach {self.url}: {e}") from e
        if not isinstance(body, dict):
            raise DashboardError(f"{path} did not answer a JSON object")
        return body

    async def schema(self) -> dict[str, Any]:
        return await self._get("/api/admin/schema")

    async def stats(self) -> dict[str, Any]:
        return await self._get("/api/admin/stats")

    async def functions(self) -> dict[str, Any]:
        return await self._get("/api/admin/functions")

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Every event of the stream until the server closes it."""
        try:
            ws = await self.session.ws_connect(
                self.url + "/api/admin/events", timeout=aiohttp.ClientWSTimeout()
            )
        except aiohttp.WSServerHandshakeError as e:
            raise _refusal(e.status, {"error": e.message}) from e
        except aiohttp.ClientError as e:
            raise DashboardError(f"cannot reach {self.url}: {e}") from e
        async with ws:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                data = message.json()
                if isinstance(data, dict) and isinstance(data.get("payload"), dict):
                    yield str(data.get("type")), data["payload"]
