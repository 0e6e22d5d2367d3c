"""Health, readiness during startup migrations, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from alyx_server import __version__
from alyx_server.app import create_app
from alyx_server.db import open_connection
from alyx_server.errors import MigrationError
from alyx_server.migrations import apply_system_migrations
from tests.alyx_server.api.conftest import ClientFactory
from tests.alyx_server.api.projects import SCHEMA_YAML, make_settings, write_project


async def test_health(client: TestClient[Any, Any]) -> None:
    response = await client.get("/health")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["uptime"] >= 0
    assert body["components"]["database"] == {"status": "ok", "migrations": "applied"}
    assert set(body["components"]) == {"database", "realtime", "functions"}
    assert (await client.get("/health/live")).status == 200
    ready = await client.get("/health/ready")
    assert (ready.status, await ready.json()) == (200, {"status": "ready"})


async def test_ready_is_503_until_serve_migrations_finish(
    project: Path, aiohttp_client: ClientFactory
) -> None:
    db_file = project / "data" / "alyx.db"
    db_file.parent.mkdir()
    blocker = open_connection(db_file)
    apply_system_migrations(blocker)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        client = await aiohttp_client(create_app(make_settings(project, "serve")))
        ready = await client.get("/health/ready")
        assert (ready.status, await ready.json()) == (503, {"status": "migrating"})
        assert (await client.get("/health/live")).status == 200
        health = await client.get("/health")
        assert (health.status, (await health.json())["status"]) == (503, "starting")
        api = await client.get("/api/collections/posts")
        body = await api.json()
        assert (api.status, body["code"]) == (503, "UNAVAILABLE")
        assert "applying migrations" in body["error"]
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    for _ in range(200):
        if (await client.get("/health/ready")).status == 200:
            break
        await asyncio.sleep(0.02)
    assert (await client.get("/api/collections/posts")).status == 200


DESTRUCTIVE = SCHEMA_YAML.replace("      score:      { type: float, nullable: true }\n", "")


@pytest.mark.parametrize("mode", ["dev", "serve"])
async def test_destructive_change_refuses_to_start(
    project: Path, aiohttp_client: ClientFactory, mode: str
) -> None:
    first = await aiohttp_client(create_app(make_settings(project)))
    await first.close()
    write_project(project, DESTRUCTIVE)
    runner = web.AppRunner(create_app(make_settings(project, mode)))  # type: ignore[arg-type]
    try:
        with pytest.raises(MigrationError) as refused:
            await runner.setup()
    finally:
        await runner.cleanup()
    message = str(refused.value)
    assert "schema.yaml has destructive changes" in message
    assert "posts.score" in message
    assert "alyx migrate create drop_score" in message
    conn = sqlite3.connect(project / "data" / "alyx.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(posts)")]
    conn.close()
    assert "score" in columns


async def test_dev_without_auto_migrate_serves_the_database_schema(
    project: Path, aiohttp_client: ClientFactory
) -> None:
    first = await aiohttp_client(create_app(make_settings(project)))
    await first.close()
    write_project(
        project,
        SCHEMA_YAML + "  extra:\n    fields:\n      id: { type: uuid, primary: true, default: auto }\n",
    )
    client = await aiohttp_client(create_app(make_settings(project, **{"dev.auto_migrate": False})))
    assert (await client.get("/api/collections/extra")).status == 404
    assert (await client.get("/api/collections/posts")).status == 200


async def test_metrics(client: TestClient[Any, Any]) -> None:
    await client.post("/api/collections/posts", json={"title": "m"})
    await client.get("/api/collections/posts")
    await client.get("/api/collections/nope")
    response = await client.get("/metrics")
    text = await response.text()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert (
        'alyx_http_requests_total{method="GET",route="/api/collections/{collection}",status="200"} 1.0'
        in text
    )
    assert (
        'alyx_http_requests_total{method="POST",route="/api/collections/{collection}",status="201"} 1.0'
        in text
    )
    assert 'status="404"' in text
    assert (
        'alyx_http_request_duration_seconds_bucket{le="0.005",route="/api/collections/{collection}"}' in text
    )
    assert "alyx_db_write_batch_size_count" in text
    assert "alyx_realtime_connections 0.0" in text
    assert "alyx_realtime_subscriptions 0.0" in text


async def test_openapi_is_valid_and_describes_the_schema(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/openapi.json")
    doc = await response.json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert "/api/collections/posts/{id}" in doc["paths"]
    assert not [p for p in doc["paths"] if "_alyx" in p]
    authors = doc["components"]["schemas"]["Authors"]
    assert "token" not in authors["properties"]
    assert "token" not in doc["components"]["schemas"]["AuthorsCreate"]["properties"]
    assert doc["components"]["schemas"]["PostsCreate"]["required"] == ["title"]
