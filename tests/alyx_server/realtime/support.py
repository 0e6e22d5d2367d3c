"""What the realtime tests share: a project, an access policy, and a live client.

`OwnerPolicy` is an AccessPolicy as a user would write it in rules: a post is readable
when it is public or when the caller owns it; `vault` is closed to everyone but admins
and `members` to anonymous callers. It is passed into the real `create_app`.

`LiveClient` wraps a real WebSocket: it materialises each subscription from its snapshot
and deltas (ordered by `order` for live windows), and `sync()` sends a ping and reads up
to its pong, which the server queues only after every delta of the changes it had seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient

from alyx_server.config import Settings, default_settings
from alyx_server.db.query import Predicate
from alyx_server.errors import Forbidden, Unauthorized
from alyx_server.rules import Auth, OpenAccess, RequestInfo
from alyx_server.schema.model import Collection

__all__ = ["SCHEMA_YAML", "LiveClient", "OwnerPolicy", "View", "register", "settings_for", "write_project"]

SCHEMA_YAML = """\
version: 1
collections:
  posts:
    fields:
      id:      { type: uuid, primary: true, default: auto }
      title:   { type: string }
      owner:   { type: string, nullable: true, index: true }
      n:       { type: int, default: 0 }
      private: { type: bool, default: false }
      body:    { type: text, nullable: true }
      secret:  { type: string, nullable: true, internal: true }
      author:  { type: uuid, references: authors.id, nullable: true, onDelete: set null }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  authors:
    fields:
      id:   { type: uuid, primary: true, default: auto }
      name: { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  vault:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      label: { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  members:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      label: { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""

WAIT = 10.0  # seconds: a bound on waits for messages, never an assertion about speed


def write_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(SCHEMA_YAML, encoding="utf-8")
    return root


def settings_for(root: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"realtime.poll_interval": "50ms", "auth.bcrypt_cost": 4, **overrides}
    return default_settings(root, "dev", overrides=values)


class OwnerPolicy(OpenAccess):
    """See the module docstring."""

    def read_predicate(
        self, collection: Collection, auth: Auth | None, request: RequestInfo
    ) -> Predicate | None:
        if collection.name == "vault":
            raise Forbidden("only admins may read vault")
        if collection.name == "members" and auth is None:
            raise Unauthorized("sign in to read members")
        if collection.name != "posts":
            return None
        if auth is None:
            return Predicate('"private" = 0')
        return Predicate('("private" = 0 OR "owner" = ?)', (auth["id"],))

    def can_read(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, doc: Mapping[str, Any]
    ) -> bool:
        if collection.name != "posts":
            return True
        return not doc["private"] or (auth is not None and doc["owner"] == auth["id"])


async def register(client: TestClient[Any, Any], email: str) -> tuple[str, str]:
    """A new account: (user id, access token)."""
    resp = await client.post("/api/auth/register", json={"email": email, "password": "correct-horse-1"})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    return body["user"]["id"], body["tokens"]["access_token"]


@dataclass
class View:
    """One subscription as its client sees it."""

    docs: dict[Any, dict[str, Any]] = field(default_factory=dict)
    order: list[Any] | None = None
    total: int | None = None

    def listed(self) -> list[dict[str, Any]]:
        if self.order is not None:
            assert set(self.order) == set(self.docs), (self.order, list(self.docs))
            return [self.docs[i] for i in self.order]
        return sorted(self.docs.values(), key=lambda d: d["id"])


class LiveClient:
    """A WebSocket client that keeps every message and materialises subscriptions."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.views: dict[str, View] = {}
        self.client_id: str | None = None
        self._serial = 0

    @classmethod
    async def connect(
        cls, client: TestClient[Any, Any], path: str = "/api/realtime", **kw: Any
    ) -> LiveClient:
        live = cls(await client.ws_connect(path, **kw))
        first = await live.receive()
        assert first["type"] == "connected", first
        live.client_id = first["payload"]["client_id"]
        return live

    def next_id(self) -> str:
        self._serial += 1
        return f"m{self._serial}"

    async def receive(self) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), WAIT)
        if msg.type != WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r} {msg.extra!r}")
        data: dict[str, Any] = msg.json()
        assert isinstance(data.get("payload"), dict), data
        self.messages.append(data)
        self._apply(data)
        return data

    def _apply(self, data: dict[str, Any]) -> None:
        p = data["payload"]
        if data["type"] == "snapshot":
            view = self.views[p["subscription_id"]] = View()
            view.docs = {d["id"]: d for d in p["docs"]}
            view.order = p.get("order")
            view.total = p["total"]
        elif data["type"] == "delta":
            view = self.views[p["subscription_id"]]
            changes = p["changes"]
            for doc in (*changes.get("inserts", ()), *changes.get("updates", ())):
                view.docs[doc["id"]] = doc
            for doc_id in changes.get("deletes", ()):
                view.docs.pop(doc_id, None)
            if "order" in p:
                view.order = p["order"]
            if "total" in p:
                view.total = p["total"]

    async def send(self, kind: str, payload: dict[str, Any] | None = None, message_id: Any = None) -> None:
        message: dict[str, Any] = {"type": kind}
        if payload is not None:
            message["payload"] = payload
        if message_id is not None:
            message["id"] = message_id
        await self.ws.send_json(message)

    async def until(self, kind: str, message_id: Any = None) -> dict[str, Any]:
        """Read until a message of `kind` (with `message_id`, when given) arrives."""
        while True:
            data = await self.receive()
            if data["type"] == kind and (message_id is None or data.get("id") == message_id):
                return data

    async def subscribe(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Subscribe and return the snapshot (or the error) answering it."""
        message_id = self.next_id()
        await self.send("subscribe", payload, message_id)
        while True:
            data = await self.receive()
            if data.get("id") == message_id:
                return data

    async def sync(self) -> list[dict[str, Any]]:
        """Ping and read up to the pong; returns the messages read before it."""
        message_id = self.next_id()
        start = len(self.messages)
        await self.send("ping", None, message_id)
        await self.until("pong", message_id)
        return self.messages[start:-1]

    async def close(self) -> None:
        await self.ws.close()
