"""Fixtures for account tests: a real SMTP server, an injected clock, the real application.

`smtp` is an aiosmtpd server on a loopback port in this process; the application sends
to it through `auth.smtp.host/port`, so the codes a test reads arrived by real SMTP.
`auth_app` builds the real `create_app` with a fast bcrypt cost and a `ManualClock`;
tests move the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller

from alyx_server.app import create_app
from alyx_server.config import Settings, default_settings
from alyx_server.tools.timestamps import ManualClock
from tests.schemas import NOTES
from tests.servers import free_port

__all__ = [
    "NO_LIMITS",
    "PASSWORD",
    "Account",
    "AppFactory",
    "Mailbox",
    "auth_app",
    "bearer",
    "clock",
    "make_auth_settings",
    "register",
    "signed_in",
    "smtp",
]

PASSWORD = "correct horse battery"
# Settings overrides: no rate limit on sign-ups, logins and resets (tests that send many).
NO_LIMITS = {
    "auth.rate_limit.login": "off",
    "auth.rate_limit.register": "off",
    "auth.rate_limit.reset": "off",
}
SCHEMA = NOTES
_CODE = re.compile(r"^    (\S+)\r?$", re.MULTILINE)

Client = TestClient[Any, Any]
AppFactory = Callable[..., Awaitable[Client]]


@dataclass
class Mailbox:
    """What the SMTP server received, in order."""

    host: str
    port: int
    messages: list[Message] = field(default_factory=list)

    def handle(self, data: bytes) -> None:
        self.messages.append(message_from_bytes(data))

    async def wait_for(self, count: int) -> list[Message]:
        """Wait (bounded, 10 s) until `count` messages have arrived."""
        for _ in range(1000):
            if len(self.messages) >= count:
                return self.messages
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} emails, got {len(self.messages)}")

    async def code(self, index: int) -> str:
        """The code in the `index`th message (0-based), once it has arrived."""
        message = (await self.wait_for(index + 1))[index]
        payload = message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found = _CODE.search(payload.decode())
        assert found, payload
        return found.group(1)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.handle(envelope.content)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    box = Mailbox("127.0.0.1", free_port())
    controller = Controller(_Handler(box), hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


def make_auth_settings(root: Path, smtp: Mailbox | None = None, **overrides: object) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "schema.yaml").exists():
        (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
        # For `alyx admin` run on the same project: fast hashes there too.
        (root / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n", encoding="utf-8")
    values: dict[str, object] = {"realtime.poll_interval": "50ms", "auth.bcrypt_cost": 4}
    if smtp is not None:
        values |= {"auth.smtp.host": smtp.host, "auth.smtp.port": smtp.port}
    values |= overrides
    return default_settings(root, "dev", overrides=values)


@pytest.fixture
async def auth_app(
    tmp_path: Path, smtp: Mailbox, clock: ManualClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> AsyncIterator[AppFactory]:
    """`await auth_app(**settings overrides)`: a client of the real application."""

    async def build(**overrides: object) -> Client:
        settings = make_auth_settings(tmp_path / "project", smtp, **overrides)
        return await aiohttp_client(create_app(settings, clock=clock))

    yield build


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Account:
    id: str
    email: str
    access: str
    refresh: str


async def register(client: Client, email: str = "ada@example.com", password: str = PASSWORD) -> Account:
    response = await client.post("/api/auth/register", json={"email": email, "password": password})
    body = await response.json()
    assert response.status == 201, body
    tokens = body["tokens"]
    return Account(body["user"]["id"], body["user"]["email"], tokens["access_token"], tokens["refresh_token"])


async def signed_in(client: Client, email: str = "ada@example.com") -> dict[str, Any]:
    """The `names` of an API scenario (tests/alyx_server/api/scenarios.py) after one account
    registered: `ada` (its access token), `ada_id`, `ada_refresh`, `ada_email`."""
    ada = await register(client, email)
    return {"ada": ada.access, "ada_id": ada.id, "ada_refresh": ada.refresh, "ada_email": ada.email}
