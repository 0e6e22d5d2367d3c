"""JSON request bodies: parsed with orjson, refused with INVALID_JSON when they are not an object.

The size limit is aiohttp's `client_max_size` (set from `server.max_body_size`), which
covers chunked bodies as well as those with a Content-Length; going over it raises
413, which the pipeline turns into the PAYLOAD_TOO_LARGE envelope.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from alyx_server.errors import InvalidJSON

__all__ = ["read_json", "read_object"]


async def read_json(request: web.Request) -> Any:
    """The parsed body; INVALID_JSON when it is empty or not JSON."""
    raw = await request.read()
    if not raw.strip():
        raise InvalidJSON("the request body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidJSON(f"the request body is not valid JSON: {e}") from e


async def read_object(request: web.Request) -> dict[str, Any]:
    """The parsed body, which must be a JSON object."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidJSON(f"the request body must be a JSON object, not {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"
