"""A project with functions, the real application around it, and signed-in callers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from alyx_server.api.functions import FUNCTIONS
from alyx_server.api.runtime import RUNTIME
from alyx_server.app import create_app
from alyx_server.config import default_settings
from alyx_server.db.query import Predicate
from alyx_server.errors import Forbidden
from alyx_server.functions.service import FunctionService
from alyx_server.rules import AccessPolicy, Auth, RequestInfo
from alyx_server.schema.model import Collection

__all__ = [
    "OwnerPolicy",
    "User",
    "call",
    "make_app",
    "run_probe",
    "service_of",
    "sign_up",
    "table_rows",
    "write_functions",
]

SCHEMA = """\
version: 1
collections:
  notes:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      owner: { type: string }
      title: { type: string, minLength: 1, maxLength: 50 }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""


class OwnerPolicy:
    """Notes belong to their `owner`: each user sees and writes only their own; admins all."""

    @staticmethod
    def _mine(auth: Auth | None, doc: Mapping[str, Any]) -> bool:
        if auth is None:
            return False
        return bool(auth.get("role") == "admin" or doc.get("owner") == auth.get("id"))

    def read_predicate(
        self, collection: Collection, auth: Auth | None, request: RequestInfo
    ) -> Predicate | None:
        if auth is not None and auth.get("role") == "admin":
            return None
        return Predicate('"owner" = ?', (auth.get("id") if auth else "",))

    def can_read(self, collection: Collection, auth: Auth | None, request: RequestInfo, doc: Any) -> bool:
        return self._mine(auth, doc)

    def check_create(self, collection: Collection, auth: Auth | None, request: RequestInfo, doc: Any) -> None:
        if not self._mine(auth, doc):
            raise Forbidden("notes are created by their owner")

    def check_update(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, stored: Any, changes: Any
    ) -> None:
        if not self._mine(auth, stored):
            raise Forbidden("only the owner may change a note")

    def check_delete(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, stored: Any
    ) -> None:
        if not self._mine(auth, stored):
            raise Forbidden("only the owner may delete a note")

    def user_fields(self, auth: Auth | None, user_id: Any) -> tuple[str, ...]:
        return ("id",)

    def read_check(
        self, collection: Collection, auth: Auth | None, request: RequestInfo, shared: list[int] | None
    ) -> Callable[[Mapping[str, Any]], bool]:
        return lambda doc: self._mine(auth, doc)

    def read_fields(self, collection: Collection) -> frozenset[str]:
        return frozenset({"owner"})

    def read_routes(self, collection: Collection, auth: Auth | None) -> Mapping[str, Any]:
        return {}


def write_functions(root: Path, files: Mapping[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(SCHEMA)
    for name, text in files.items():
        path = root / "functions" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def make_app(root: Path, policy: AccessPolicy | None = None, **overrides: object) -> web.Application:
    values: dict[str, object] = {
        "realtime.poll_interval": "20ms",
        "auth.bcrypt_cost": 4,
        "auth.rate_limit.register": "off",
        "auth.rate_limit.login": "off",
        "functions.pool.min_warm": 0,
        **overrides,
    }
    app = create_app(default_settings(root, "dev", overrides=values), policy=policy or OwnerPolicy())
    return app


def service_of(client: TestClient[Any, Any]) -> FunctionService:
    service = client.app[FUNCTIONS].service
    assert service is not None
    return service


@dataclass
class User:
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up(client: TestClient[Any, Any], email: str, *, admin: bool = False) -> User:
    password = "correct horse battery"
    response = await client.post("/api/auth/register", json={"email": email, "password": password})
    assert response.status == 201, await response.text()
    user_id = (await response.json())["user"]["id"]
    if admin:
        db_file = client.app[RUNTIME].settings.database.path
        with sqlite3.connect(db_file) as conn:
            conn.execute("UPDATE _alyx_users SET role = 'admin' WHERE id = ?", (user_id,))
        # Another connection wrote, as another process would: publishing that change drops
        # the cached user row (the poller's periodic job, done now).
        await client.app[RUNTIME].db.poll_changes()
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    return User(user_id, (await response.json())["tokens"]["access_token"])


def table_rows(client: TestClient[Any, Any], sql: str) -> list[tuple[Any, ...]]:
    db_file = client.app[RUNTIME].settings.database.path
    with sqlite3.connect(db_file) as conn:
        return conn.execute(sql).fetchall()


async def call(
    client: TestClient[Any, Any], name: str, data: Any, user: User | None = None
) -> tuple[int, Any]:
    """Invoke function `name` with `data` as its input; (status, JSON body)."""
    headers = user.headers if user else {}
    response = await client.post(f"/api/functions/{name}", json={"input": data}, headers=headers)
    return response.status, await response.json()


async def until(check: Callable[[], bool]) -> None:
    """Poll `check()` until it holds (a bound of about 5 s, not a claim about speed)."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def run_probe(client: TestClient[Any, Any], name: str) -> dict[str, Any]:
    """Run a probe function against the project's database file, a secret file next to it
    and a TCP server on the host's loopback; its report of what it could reach."""
    db_file = client.app[RUNTIME].settings.database.path
    secret_file = db_file.parent / ".jwt_secret"
    secret_file.write_text("t" * 40)
    assert db_file.is_file()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        data = {"db": str(db_file), "secret_file": str(secret_file), "port": port}
        status, body = await call(client, name, data)
    assert status == 200, body
    out: dict[str, Any] = body["output"]
    return out
