"""The OpenAPI document states exactly what each route accepts and requires.

Each row is one mismatch a fuzzer found between `/api/openapi.json` and the server: the
request is sent to the real server, and the published document is asked the same
question (jsonschema-rs, JSON Schema 2020-12 with ECMA patterns). Both must answer alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from click.testing import CliRunner
from jsonschema_rs import Draft202012Validator

from alyx_cli.main import cli
from alyx_server.app import create_app
from tests.alyx_server.api.conftest import ClientFactory
from tests.alyx_server.api.projects import make_settings

PASSWORD = "correct horse battery"
ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


async def _document(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    document: dict[str, Any] = await response.json()
    return document


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """`schema` with the document's components in reach of its `$ref`s."""
    return Draft202012Validator({**schema, "components": document["components"]}, validate_formats=True)


def _body_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    body = document["paths"][path][method]["requestBody"]
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


async def test_each_operation_states_whether_it_needs_a_token(client: TestClient[Any, Any]) -> None:
    document = await _document(client)
    assert "security" not in document
    security = {
        (path, method): operation["security"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }
    assert security[("/api/admin/users", "get")] == [{"bearer": []}]
    assert security[("/api/admin/users/{id}", "delete")] == [{"bearer": []}]
    assert security[("/api/auth/me", "get")] == [{"bearer": []}]
    assert security[("/api/auth/password", "post")] == [{"bearer": []}]
    assert security[("/api/collections/posts", "get")] == [{}, {"bearer": []}]
    assert security[("/api/auth/login", "post")] == [{}, {"bearer": []}]
    # What the document says is what the server does: no token, no admin route.
    for path in ["/api/admin/users", "/api/admin/schema", "/api/admin/stats", "/api/auth/me"]:
        response = await client.get(path)
        assert response.status == 401, path
        assert (await response.json())["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize(
    ("operation", "accepted"),
    [
        ({"method": "GET", "collection": "posts", "id": ID}, True),
        ({"method": "get", "collection": "posts", "id": ID}, True),
        ({"method": "Delete", "collection": "posts", "id": ID}, True),
        ({"method": "GET", "collection": "posts", "id": ID, "body": {}}, False),
        ({"method": "DELETE", "collection": "posts", "id": ID, "body": None}, False),
        ({"method": "POST", "collection": "posts", "id": ID, "body": {"title": "a"}}, False),
        ({"method": "POST", "collection": "posts", "body": {"title": "a"}}, True),
        ({"method": "PATCH", "collection": "posts", "id": ID}, False),
        ({"method": "PUT", "collection": "posts", "id": ID, "body": {}}, False),
        ({"method": "GET", "collection": "counters", "id": 7.0}, True),
    ],
)
async def test_a_batch_operation_is_what_the_document_says(
    client: TestClient[Any, Any], operation: dict[str, Any], accepted: bool
) -> None:
    document = await _document(client)
    body = {"operations": [operation]}
    response = await client.post("/api/batch", json=body)
    answer = await response.json()
    assert _validator(document, _body_schema(document, "/api/batch", "post")).is_valid(body) is accepted
    if accepted:
        # Accepted as an operation: it ran (and found no such doc, but for the create).
        assert (response.status, answer.get("code")) in [(200, None), (404, "DOCUMENT_NOT_FOUND")], answer
    else:
        assert response.status == 400, answer
        assert answer["details"][0]["code"] == "invalid_operation"


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/api/collections/posts", "offset=9223372036854775807", 200),
        ("/api/collections/posts", "offset=9223372036854775808", 400),
        ("/api/collections/posts", "limit=1001", 400),
        ("/api/admin/users", "offset=4611686018427387904", 200),
        ("/api/admin/users", "offset=4611686018427387905", 400),
    ],
)
async def test_paging_bounds_are_published(
    client: TestClient[Any, Any], project: Path, path: str, query: str, status: int
) -> None:
    document = await _document(client)
    parameters = {p["name"]: p["schema"] for p in document["paths"][path]["get"]["parameters"]}
    name, value = query.split("=")
    assert Draft202012Validator(parameters[name]).is_valid(int(value)) is (status == 200)
    token = _admin_token(project)
    response = await client.get(f"{path}?{query}", headers={"Authorization": f"Bearer {token}"})
    assert response.status == status, await response.text()


def _admin_token(project: Path) -> str:
    result = CliRunner().invoke(cli, ["admin", "create-token", "--name", "paging", "-C", str(project)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def test_an_int_field_is_bounded_to_64_bits(client: TestClient[Any, Any]) -> None:
    document = await _document(client)
    n = document["components"]["schemas"]["PostsCreate"]["properties"]["n"]
    assert (n["minimum"], n["maximum"]) == (-(2**63), 2**63 - 1)
    response = await client.post("/api/collections/posts", json={"title": "a", "n": 2**63})
    assert response.status == 400


async def test_password_limits_follow_the_live_policy(project: Path, aiohttp_client: ClientFactory) -> None:
    app: web.Application = create_app(make_settings(project, **{"auth.password.min_length": 12}))
    client = await aiohttp_client(app)
    document = await _document(client)
    password = _body_schema(document, "/api/auth/register", "post")["properties"]["password"]
    assert (password["minLength"], password["maxLength"]) == (12, 72)
    short = await client.post("/api/auth/register", json={"email": "ada@example.com", "password": "x" * 11})
    assert short.status == 400
    assert (await short.json())["code"] == "PASSWORD_TOO_SHORT"
    long = await client.post("/api/auth/register", json={"email": "ada@example.com", "password": "x" * 73})
    assert (await long.json())["code"] == "PASSWORD_TOO_LONG"
    login = _body_schema(document, "/api/auth/login", "post")["properties"]["password"]
    assert "minLength" not in login


async def test_an_anonymous_verification_request_must_name_the_address(client: TestClient[Any, Any]) -> None:
    """The body is optional (a signed-in caller needs none), so its absence is not a 400."""
    document = await _document(client)
    assert document["paths"]["/api/auth/verify/request"]["post"]["requestBody"]["required"] is False
    response = await client.post("/api/auth/verify/request")
    body = await response.json()
    assert response.status == 401
    assert body["error"] == 'sign in to verify your own address, or send {"email": "..."}'
    registered = await client.post(
        "/api/auth/register", json={"email": "ada@example.com", "password": PASSWORD}
    )
    token = (await registered.json())["tokens"]["access_token"]
    signed_in = await client.post("/api/auth/verify/request", headers={"Authorization": f"Bearer {token}"})
    assert signed_in.status == 202
