"""The realtime wire protocol (SPEC §10): message envelopes, validation and error codes.

Every message is a JSON object `{id?, type, payload}`. Client messages are checked here
before anything else sees them; server messages are built here, always with a `payload`
object. Problems become `RealtimeError`s carrying one of the protocol's codes:

    INVALID_MESSAGE      not JSON, not an object, unknown `type`, bad `id`
    INVALID_PAYLOAD      a payload that is not an object, lacks a key, has a bad value
    INVALID_FILTER       a `filter` or `where` that does not fit the collection
    COLLECTION_NOT_FOUND FORBIDDEN UNAUTHORIZED TOKEN_EXPIRED
    SESSION_REVOKED      the connection's session or token was revoked (or its account deleted)
    ACCOUNT_DISABLED     the connection's account was disabled
    SUBSCRIPTION_LIMIT   more subscriptions than `realtime.max_subscriptions_per_client`
    MESSAGE_TOO_LARGE    a message over `realtime.max_message_size`

`error_code` maps any other `AlyxError` onto these codes, so the WebSocket handler is the
one place that turns errors into `error` frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from alyx_server.db.query import DEFAULT_LIMIT, MAX_LIMIT
from alyx_server.errors import AlyxError

__all__ = [
    "CLIENT_TYPES",
    "ERROR_CODES",
    "ClientMessage",
    "MessageId",
    "RealtimeError",
    "SubscribeRequest",
    "encode",
    "error_code",
    "error_message",
    "parse_message",
    "parse_subscribe",
    "parse_token",
    "parse_unsubscribe",
]

MessageId = str | int
CLIENT_TYPES = ("subscribe", "unsubscribe", "ping", "auth")
ERROR_CODES = frozenset(
    {
        "INVALID_MESSAGE", "INVALID_PAYLOAD", "INVALID_FILTER", "COLLECTION_NOT_FOUND",
        "FORBIDDEN", "UNAUTHORIZED", "TOKEN_EXPIRED", "SUBSCRIPTION_LIMIT", "MESSAGE_TOO_LARGE",
        "SESSION_REVOKED", "ACCOUNT_DISABLED",
    }
)  # fmt: skip
_SUBSCRIBE_KEYS = ("collection", "filter", "where", "sort", "limit", "expand")
_MAX_ID_LENGTH = 128


class RealtimeError(AlyxError):
    """A protocol-level refusal; `code` is one of ERROR_CODES."""

    status = 400

    def __init__(self, code: str, message: str, message_id: MessageId | None = None) -> None:
        super().__init__(message, code=code)
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One validated client message; `id` is echoed in the answer."""

    type: str
    payload: dict[str, Any]
    id: MessageId | None = None


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """A subscribe payload checked for shape (the collection checks come later).

    `limit` is None when the client sent none: such a subscription is a live set, not a
    live window.
    """

    collection: str
    filter: Mapping[str, Any]
    where: str | None
    sort: tuple[str, ...]
    limit: int | None
    expand: tuple[str, ...]


def _message_id(data: Mapping[str, Any]) -> MessageId | None:
    raw = data.get("id")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise RealtimeError("INVALID_MESSAGE", "id must be a string or an integer")
    if isinstance(raw, str) and len(raw) > _MAX_ID_LENGTH:
        raise RealtimeError("INVALID_MESSAGE", f"id is longer than {_MAX_ID_LENGTH} characters")
    return raw


def parse_message(data: str | bytes, max_size: int) -> ClientMessage:
    """A client frame as a ClientMessage; RealtimeError names what is wrong with it.

    Once the frame is a JSON object with a valid `id`, every refusal echoes that id, so a
    client can tell which of its messages was refused (a frame over `max_size` is not
    parsed at all, so its refusal carries no id).
    """
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_size:
        raise RealtimeError(
            "MESSAGE_TOO_LARGE", f"the message has {size} bytes; the limit is {max_size} bytes"
        )
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise RealtimeError("INVALID_MESSAGE", f"the message is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise RealtimeError("INVALID_MESSAGE", 'a message must be a JSON object {"type", "payload", "id"?}')
    message_id = _message_id(value)
    kind = value.get("type")
    if kind not in CLIENT_TYPES:
        shown = "missing" if kind is None else repr(kind)
        raise RealtimeError(
            "INVALID_MESSAGE", f"message type {shown} is not one of: {', '.join(CLIENT_TYPES)}", message_id
        )
    unknown = sorted(set(value) - {"id", "type", "payload"})
    if unknown:
        raise RealtimeError(
            "INVALID_MESSAGE", f"unknown message key {unknown[0]!r}; keys are id, type, payload", message_id
        )
    payload = value.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise RealtimeError("INVALID_PAYLOAD", f"the payload of {kind} must be a JSON object", message_id)
    return ClientMessage(kind, payload, message_id)


def _sort(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if isinstance(raw, list) and all(isinstance(p, str) for p in raw):
        return tuple(p.strip() for p in raw if p.strip())
    raise RealtimeError(
        "INVALID_PAYLOAD", 'sort must be a list of field names (["-n", "title"]) or "-n,title"'
    )


def _limit(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise RealtimeError("INVALID_PAYLOAD", f"limit must be an integer, not {raw!r}")
    if raw <= 0:
        return DEFAULT_LIMIT
    return min(raw, MAX_LIMIT)


def _expand(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if isinstance(raw, list) and all(isinstance(p, str) for p in raw):
        return tuple(raw)
    raise RealtimeError("INVALID_PAYLOAD", "expand must be a list of reference field names")


def parse_subscribe(message: ClientMessage) -> SubscribeRequest:
    """The subscribe payload; an `id` is required so that the snapshot can echo it."""
    if message.id is None:
        raise RealtimeError("INVALID_PAYLOAD", "subscribe needs an id, echoed by its snapshot")
    p = message.payload
    unknown = sorted(set(p) - set(_SUBSCRIBE_KEYS))
    if unknown:
        raise RealtimeError(
            "INVALID_PAYLOAD", f"unknown subscribe key {unknown[0]!r}; keys are: {', '.join(_SUBSCRIBE_KEYS)}"
        )
    collection = p.get("collection")
    if not isinstance(collection, str) or not collection:
        raise RealtimeError("INVALID_PAYLOAD", "subscribe needs a collection name (payload.collection)")
    filt = p.get("filter")
    if filt is None:
        filt = {}
    if not isinstance(filt, dict):
        raise RealtimeError(
            "INVALID_FILTER", 'filter must be an object: {"field": value} or {"field": {"$op": value}}'
        )
    where = p.get("where")
    if where is not None and (not isinstance(where, str) or not where.strip()):
        raise RealtimeError("INVALID_FILTER", "where must be a non-empty CEL expression over doc")
    return SubscribeRequest(
        collection, filt, where, _sort(p.get("sort")), _limit(p.get("limit")), _expand(p.get("expand"))
    )


def parse_unsubscribe(message: ClientMessage) -> str:
    sub_id = message.payload.get("subscription_id")
    if not isinstance(sub_id, str) or not sub_id:
        raise RealtimeError("INVALID_PAYLOAD", "unsubscribe needs payload.subscription_id")
    return sub_id


def parse_token(message: ClientMessage) -> str:
    token = message.payload.get("token")
    if not isinstance(token, str) or not token.strip():
        raise RealtimeError("INVALID_PAYLOAD", "auth needs payload.token, an access token")
    return token.strip()


def encode(kind: str, payload: Mapping[str, Any], message_id: MessageId | None = None) -> bytes:
    """A server message as JSON bytes (payload values may hold `orjson.Fragment`s)."""
    if message_id is None:
        return orjson.dumps({"type": kind, "payload": payload})
    return orjson.dumps({"id": message_id, "type": kind, "payload": payload})


def error_code(error: AlyxError) -> str:
    """The protocol code for any Alyx error."""
    if error.code in ERROR_CODES:
        return error.code
    if error.status >= 500:
        return "INTERNAL_ERROR"
    if error.status == 401:
        return "UNAUTHORIZED"
    if error.status == 403:
        return "FORBIDDEN"
    if error.code == "INVALID_QUERY":
        return "INVALID_FILTER"
    return "INVALID_PAYLOAD"


def error_message(error: AlyxError, message_id: MessageId | None = None) -> bytes:
    """The `error` frame for `error`."""
    return encode("error", {"code": error_code(error), "message": error.message}, message_id)
