"""The deploy routes' test helpers: a developer project, a deploy token, and
`/api/admin/deploy/*` called the way `alyx deploy` calls it; the database file and what
it holds, read with SQLite.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from alyx_server.api.runtime import RUNTIME
from alyx_server.auth.admin_tokens import create_token
from alyx_server.deploy import build_bundle
from alyx_server.schema.system_tables import WEBHOOK_CURSOR_TABLE
from alyx_server.tools.timestamps import ManualClock, format_timestamp
from tests.alyx_server.auth.support import Client, bearer
from tests.schemas import NOTES

WITH_BODY = NOTES.replace(
    "      title: { type: string }\n",
    "      title: { type: string }\n      body:  { type: string, nullable: true }\n",
)
# A field with a default: stored rows get it from SQLite, and a request on the old schema
# would leave it to SQLite too, so unlike WITH_BODY this deploy pauses requests.
WITH_DEFAULTED_BODY = NOTES.replace(
    "      title: { type: string }\n",
    '      title: { type: string }\n      body:  { type: string, default: "" }\n',
)


def developer_project(root: Path, schema: str = WITH_BODY) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(schema, encoding="utf-8")
    return root


async def token(client: Client, clock: ManualClock, kind: str = "deploy", **extra: Any) -> str:
    db = client.app[RUNTIME].ready_db()
    now = format_timestamp(clock.now())
    name = extra.pop("name", f"{kind}-token")
    permissions = extra.pop("permissions", ())
    expires_at = extra.pop("expires_at", None)

    def make(conn: sqlite3.Connection) -> str:
        secret, _ = create_token(
            conn,
            name=name,
            kind=kind,
            permissions=permissions,
            expires_at=expires_at,
            now=now,  # type: ignore[arg-type]
        )
        return secret

    return await db.write(make)


async def prepare(client: Client, project: Path, secret: str | None, **headers: str) -> tuple[int, Any]:
    bundle = build_bundle(project)
    sent = {"Content-Type": "application/gzip", "X-Bundle-SHA256": bundle.sha256, **headers}
    if secret is not None:
        sent.update(bearer(secret))
    response = await client.post("/api/admin/deploy/prepare", data=bundle.data, headers=sent)
    return response.status, await response.json()


async def execute(client: Client, secret: str, plan: dict[str, Any], **extra: Any) -> tuple[int, Any]:
    body = {"plan_id": plan["plan_id"], "bundle_sha256": plan["bundle_sha256"], **extra}
    response = await client.post("/api/admin/deploy/execute", json=body, headers=bearer(secret))
    return response.status, await response.json()


def database_file(client: Client) -> Path:
    path: Path = client.app[RUNTIME].settings.database.path
    return path


def file_hash(path: Path) -> str:
    """The sha256 of the database's content as SQLite reads it (its dump: the file with the
    committed part of its WAL, so no checkpoint is needed to compare two moments), less
    the webhook dispatcher's cursor: the application's background loop moves it past
    every logged change, at a moment of its own, whatever the request under test does."""
    cursor_row = f'INSERT INTO "{WEBHOOK_CURSOR_TABLE}" '
    conn = sqlite3.connect(path)
    try:
        dump = [line for line in conn.iterdump() if not line.startswith(cursor_row)]
    finally:
        conn.close()
    return hashlib.sha256("\n".join(dump).encode()).hexdigest()


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [str(r[1]) for r in conn.execute(f'PRAGMA table_info("{table}")')]
    finally:
        conn.close()


async def rollback(client: Client, secret: str, **body: Any) -> tuple[int, Any]:
    response = await client.post("/api/admin/deploy/rollback", json=body, headers=bearer(secret))
    return response.status, await response.json()


async def deploy(client: Client, secret: str, project: Path) -> dict[str, Any]:
    status, plan = await prepare(client, project, secret)
    assert status == 200, plan
    status, body = await execute(client, secret, plan)
    assert status == 200, body
    return dict(body)
