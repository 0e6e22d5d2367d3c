"""The middleware: request ids, CORS, body limits, client IP, access log, JSON logs."""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from alyx_server.app import create_app
from alyx_server.config import LoggingSettings, Mode
from alyx_server.logs import configure_logging
from tests.alyx_server.api.conftest import ClientFactory
from tests.alyx_server.api.projects import make_settings


async def served(
    project: Path, aiohttp_client: ClientFactory, mode: Mode = "dev", **overrides: object
) -> TestClient[Any, Any]:
    settings = make_settings(project, mode, **overrides)
    return await aiohttp_client(create_app(settings))


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "alyx.access"]


async def test_request_id_is_echoed_or_made(client: TestClient[Any, Any]) -> None:
    sent = await client.get("/health/live", headers={"X-Request-ID": "trace-42"})
    assert sent.headers["X-Request-ID"] == "trace-42"
    made = await client.get("/api/collections/nope")
    body = await made.json()
    assert len(made.headers["X-Request-ID"]) == 32
    assert body["request_id"] == made.headers["X-Request-ID"]
    unsafe = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["X-Request-ID"] != "bad id\twith spaces"


async def test_body_over_the_limit_is_413(project: Path, aiohttp_client: ClientFactory) -> None:
    client = await served(project, aiohttp_client, **{"server.max_body_size": "1KiB"})
    big = b'{"title": "' + b"x" * 4096 + b'"}'
    response = await client.post("/api/collections/posts", data=big)
    body = await response.json()
    assert (response.status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert "server.max_body_size" in body["error"]

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}'

    chunked = await client.post("/api/collections/posts", data=chunks())
    assert chunked.status == 413
    assert (await chunked.json())["code"] == "PAYLOAD_TOO_LARGE"
    small = await client.post("/api/collections/posts", json={"title": "fits"})
    assert small.status == 201


async def test_cors_preflight_and_headers_in_dev(client: TestClient[Any, Any]) -> None:
    preflight = await client.options(
        "/api/collections/posts",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Authorization",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    plain = await client.get("/api/collections/posts", headers={"Origin": "https://app.example.com"})
    assert plain.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_in_serve_allows_only_listed_origins(project: Path, aiohttp_client: ClientFactory) -> None:
    client = await served(
        project, aiohttp_client, "serve", **{"server.cors.allowed_origins": ["https://ok.example.com"]}
    )
    ask = {"Access-Control-Request-Method": "GET"}
    allowed = await client.options(
        "/api/collections/posts", headers={"Origin": "https://ok.example.com", **ask}
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ok.example.com"
    refused = await client.options(
        "/api/collections/posts", headers={"Origin": "https://evil.example.com", **ask}
    )
    assert "Access-Control-Allow-Origin" not in refused.headers
    response = await client.get("/health/live", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_forwarded_ip_is_used_only_from_a_trusted_proxy(
    project: Path, aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alyx.access")
    spoof = {"X-Forwarded-For": "203.0.113.9"}
    untrusted = await served(project, aiohttp_client)
    await untrusted.get("/health/live", headers=spoof)
    assert access_lines(caplog)[-1].startswith("127.0.0.1 GET /health/live 200 ")
    trusted = await served(project, aiohttp_client, **{"server.trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]})
    await trusted.get("/health/live", headers=spoof)
    assert access_lines(caplog)[-1].startswith("203.0.113.9 GET /health/live 200 ")
    await trusted.get("/health/live", headers={"X-Forwarded-For": "198.51.100.7, 10.1.2.3"})
    assert access_lines(caplog)[-1].startswith("198.51.100.7 GET")


async def test_access_log_line_and_token_redaction(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alyx.access")
    response = await client.get(
        "/api/collections/posts?token=abc123&limit=1&refresh_token=r1", headers={"X-Request-ID": "rid-1"}
    )
    line = access_lines(caplog)[-1]
    ip, method, path, status, ms, rid = line.split(" ")
    assert (ip, method, status, rid) == ("127.0.0.1", "GET", "200", "rid-1")
    assert path == "/api/collections/posts?token=[REDACTED]&limit=1&refresh_token=[REDACTED]"
    assert ms.endswith("ms") and float(ms[:-2]) >= 0
    assert "abc123" not in caplog.text
    assert response.status == 200


async def test_json_log_format(client: TestClient[Any, Any]) -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="info", format="json"), stream=stream)
    try:
        await client.get("/health/live?api_key=k", headers={"X-Request-ID": "rid-2"})
    finally:
        logger = logging.getLogger("alyx")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()  # writes what it holds
        logger.setLevel(logging.NOTSET)
    records = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    access = [r for r in records if r["logger"] == "alyx.access"][-1]
    assert access["method"] == "GET"
    assert access["path"] == "/health/live?api_key=[REDACTED]"
    assert access["status"] == 200
    assert access["request_id"] == "rid-2"
    assert access["ip"] == "127.0.0.1"
    assert isinstance(access["ms"], float)
    assert access["level"] == "info"
    assert access["ts"].endswith("Z")


async def test_unexpected_errors_are_500_without_internals(
    client: TestClient[Any, Any], project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn = sqlite3.connect(project / "data" / "alyx.db")
    conn.execute("DROP TABLE counters")
    conn.commit()
    conn.close()
    response = await client.get("/api/collections/counters")
    body = await response.json()
    assert (response.status, body["code"], body["error"]) == (500, "INTERNAL_ERROR", "internal error")
    assert "no such table" in caplog.text
