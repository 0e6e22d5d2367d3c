"""A small HTTP/1.1 client for the server's internal API on a Unix socket.

Only the standard library is used, so a function's sandbox needs nothing but Python.
One connection per call: connecting to a Unix socket costs microseconds, and it keeps
concurrent calls from one handler (`asyncio.gather`) independent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["AlyxError", "InternalApi"]


class AlyxError(Exception):
    """An error answered by the server (`code`, HTTP `status`, `details`).

    Raised by `ctx.db` calls; a function that lets it escape fails with this code.
    """

    def __init__(self, message: str, *, code: str, status: int, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = list(details or [])


class InternalApi:
    """`POST unix://<path>/internal/v1/...` with the invocation's token."""

    def __init__(self, url: str, token: str) -> None:
        if not url.startswith("unix://"):
            raise ValueError(f"the internal API address must be unix://..., not {url!r}")
        self.path = url[len("unix://") :]
        self.token = token

    async def post(self, route: str, body: Any) -> Any:
        """Send `body` as JSON to `/internal/v1/<route>`; the decoded answer, or AlyxError."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST /internal/v1/{route} HTTP/1.1\r\nHost: alyx\r\nConnection: close\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        try:
            reader, writer = await asyncio.open_unix_connection(self.path)
        except OSError as e:
            raise AlyxError(
                f"cannot reach the Alyx internal API: {e}", code="INTERNAL_API_UNAVAILABLE", status=503
            ) from e
        try:
            writer.write(head + payload)
            await writer.drain()
            status, data = await _read_response(reader)
        finally:
            writer.close()
        answer = json.loads(data) if data else None
        if status >= 400:
            if not isinstance(answer, dict):
                answer = {}
            raise AlyxError(
                str(answer.get("error", f"HTTP {status}")),
                code=str(answer.get("code", "INTERNAL_ERROR")),
                status=status,
                details=answer.get("details") or [],
            )
        return answer


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    parts = status_line.split(b" ", 2)
    if len(parts) < 2:
        raise AlyxError("the internal API closed the connection", code="INTERNAL_ERROR", status=502)
    status = int(parts[1])
    length: int | None = None
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        if key == "content-length":
            length = int(value.strip())
        elif key == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        return status, await _read_chunked(reader)
    if length is not None:
        return status, await reader.readexactly(length)
    return status, await reader.read()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readline()
