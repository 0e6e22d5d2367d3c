"""The OpenAPI document describes every route the application has, and only those."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

import alyx_server
from alyx_server.api.runtime import RUNTIME
from alyx_server.schema.model import FieldType


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every API route, `{collection}` spelled out for each collection
    (for downloads, each collection with file fields). The admin UI's HTML pages, under
    admin_ui.path, are not API routes."""
    admin_ui = app[RUNTIME].settings.admin_ui.path.rstrip("/")
    collections = app[RUNTIME].catalog.schema.collections
    names = [c.name for c in collections]
    with_files = [c.name for c in collections if any(f.type is FieldType.FILE for f in c.fields)]
    out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if path == admin_ui or path.startswith(admin_ui + "/"):
            continue
        which = with_files if path.startswith("/api/files/{collection}") else names
        paths = [path.replace("{collection}", n) for n in which] if "{collection}" in path else [path]
        out.update((route.method.lower(), p) for p in paths)
    return out


async def test_every_route_is_in_the_document(client: TestClient[Any, Any], app: web.Application) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    validate(doc)
    described = {(m, p) for p, item in doc["paths"].items() for m in item if m != "parameters"}
    assert described == _routes(app)
    for route in ["/api/auth/register", "/api/auth/me", "/api/admin/users/{id}", "/api/functions/{name}"]:
        assert route in doc["paths"]


async def test_every_operation_lists_the_token_errors(client: TestClient[Any, Any]) -> None:
    """Any route answers 401 for a bad token and 403 for a disabled account's token."""
    doc = await (await client.get("/api/openapi.json")).json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


async def test_a_bad_token_on_an_open_route_answers_the_documented_401(client: TestClient[Any, Any]) -> None:
    response = await client.get("/health", headers={"Authorization": "Bearer not-a-token"})
    body = await response.json()
    assert response.status == 401
    assert body["code"] == "INVALID_TOKEN"
    doc = await (await client.get("/api/openapi.json")).json()
    assert doc["paths"]["/health"]["get"]["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert "INVALID_TOKEN" in doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]


# Codes no route of the document answers with: the CLI's (database maintenance, admin
# tokens, the worker supervisor, configuration), the admin UI's pages (under admin_ui.path)
# and a function's output check (INVALID_OUTPUT, inside a FunctionResult's `error`).
_NOT_IN_THE_API = {
    "CONFIG_ERROR", "DATABASE_ERROR", "DATABASE_IN_USE", "TOKEN_EXISTS", "TOKEN_NOT_FOUND",
    "WORKER_FAILED", "CSRF_FAILED", "ORIGIN_REFUSED", "INVALID_OUTPUT",
}  # fmt: skip
_CODE = re.compile(
    r"""\bcode\s*[=:]\s*(?:str\s*=\s*)?["']([A-Z][A-Z0-9_]+)["']|["']code["']\s*:\s*["']([A-Z][A-Z0-9_]+)["']"""
)


async def test_every_error_code_of_the_server_is_in_the_enum(client: TestClient[Any, Any]) -> None:
    """Each `code="..."` the server's sources raise is in the Error envelope's enum."""
    doc = await (await client.get("/api/openapi.json")).json()
    enum = set(doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    raised: set[str] = set()
    for source in Path(alyx_server.__file__).parent.rglob("*.py"):
        if "realtime" in source.parts:  # the WebSocket protocol's codes (docs/realtime.md)
            continue
        raised.update(a or b for a, b in _CODE.findall(source.read_text(encoding="utf-8")))
    assert {"HOOK_FAILED", "JOB_NOT_FOUND", "WEBHOOK_EXISTS", "STORAGE_UNAVAILABLE"} <= raised
    assert sorted(raised - _NOT_IN_THE_API - enum) == []
    assert sorted(_NOT_IN_THE_API & enum) == []
