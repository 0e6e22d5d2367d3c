"""The OpenAPI document of file fields: what the server stores, accepts and serves.

The real application on a real port with file fields (tests/alyx_server/storage/support.py);
each answer is checked against the published document with jsonschema-rs (JSON Schema
2020-12), as tests/alyx_server/api/test_openapi_exact.py does for other routes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from jsonschema_rs import Draft202012Validator
from openapi_spec_validator import validate

from alyx_server.app import create_app
from tests.alyx_server.auth.support import bearer, register
from tests.alyx_server.storage.support import form, png, settings_for

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Any) -> Client:
    return await aiohttp_client(create_app(settings_for(tmp_path / "project")))  # type: ignore[no-any-return]


async def _document(client: Client) -> dict[str, Any]:
    answer = await client.get("/api/openapi.json")
    assert answer.status == 200
    document: dict[str, Any] = await answer.json()
    return document


def _valid(document: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    validator = Draft202012Validator({**schema, "components": document["components"]}, validate_formats=True)
    return bool(validator.is_valid(value))


def _component(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


async def test_the_document_is_valid_and_names_the_file_routes(client: Client) -> None:
    document = await _document(client)
    validate(document)
    paths = document["paths"]
    download = paths["/api/files/docs/{id}/{field}/{filename}"]
    field = next(p for p in download["parameters"] if p["name"] == "field")
    assert field["schema"]["enum"] == ["avatar", "attachments", "secret"]
    thumb = next(p for p in download["get"]["parameters"] if p["name"] == "thumb")
    assert thumb["schema"]["enum"] == ["32x32", "64x48f"]
    assert {"200", "206", "304", "401", "403", "404", "416"} <= set(download["get"]["responses"])
    assert paths["/api/files/token"]["post"]["operationId"] == "file_token"


async def test_create_and_update_take_multipart_bodies_with_binary_file_parts(client: Client) -> None:
    document = await _document(client)
    for path, method, form_name in [
        ("/api/collections/docs", "post", "DocsCreateForm"),
        ("/api/collections/docs/{id}", "patch", "DocsUpdateForm"),
    ]:
        content = document["paths"][path][method]["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}
        assert content["multipart/form-data"]["schema"] == _component(form_name)
        assert content["multipart/form-data"]["encoding"]["avatar"] == {
            "contentType": "application/octet-stream"
        }
    schemas = document["components"]["schemas"]
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    create, update = schemas["DocsCreateForm"], schemas["DocsUpdateForm"]
    assert create["properties"]["avatar"] == binary
    assert create["properties"]["attachments"] == {"type": "array", "items": binary, "maxItems": 3}
    assert create["required"] == ["title"]
    assert update["properties"]["attachments"]["items"] == binary
    assert "attachments+" not in update["properties"]  # described: it depends on what is stored
    assert create["additionalProperties"] is False and update["additionalProperties"] is False
    assert "`<field>-`" in update["description"] and "`<field>+`" in update["description"]
    assert "avatar+" not in update["properties"]


async def test_stored_metadata_matches_the_document(client: Client) -> None:
    document = await _document(client)
    ada = await register(client, "ada@example.com")
    data = form(
        {"title": "t", "owner": ada.id}, [("avatar", "me.png", png()), ("attachments", "a.txt", b"hi")]
    )
    answer = await client.post("/api/collections/docs", data=data, headers=bearer(ada.access))
    assert answer.status == 201, await answer.text()
    doc = await answer.json()
    assert _valid(document, _component("Docs"), doc)
    assert _valid(document, _component("FileMetadata"), doc["avatar"])
    assert not _valid(document, _component("Docs"), {**doc, "avatar": [doc["avatar"]]})
    assert not _valid(document, _component("Docs"), {**doc, "attachments": doc["attachments"][0]})
    token = await client.post(
        "/api/files/token",
        json={"collection": "docs", "id": doc["id"], "field": "avatar", "name": doc["avatar"]["name"]},
        headers=bearer(ada.access),
    )
    assert token.status == 200
    assert _valid(document, _component("FileToken"), await token.json())


async def test_a_json_body_takes_only_null_for_a_file_field(client: Client) -> None:
    """The server refuses file metadata written as JSON; the document refuses it alike."""
    document = await _document(client)
    ada = await register(client, "ada@example.com")
    metadata = {
        "name": "x.png",
        "size": 1,
        "type": "image/png",
        "sha256": "0" * 64,
        "key": "docs/avatar/x/x.png",
    }
    create = _component("DocsCreate")
    for value, status in [(metadata, 400), (None, 201)]:
        body = {"title": "t", "owner": ada.id, "avatar": value}
        answer = await client.post("/api/collections/docs", json=body, headers=bearer(ada.access))
        assert answer.status == status, await answer.text()
        assert _valid(document, create, body) is (status == 201)
    doc = await answer.json()
    update = _component("DocsUpdate")
    answer = await client.patch(
        f"/api/collections/docs/{doc['id']}", json={"attachments-": ["nope.txt"]}, headers=bearer(ada.access)
    )
    assert answer.status == 400
    assert (await answer.json())["details"][0]["code"] == "file_not_found"
    assert "<field>-" in document["components"]["schemas"]["DocsUpdate"]["description"]
    assert not _valid(document, update, {"avatar": metadata})


async def test_a_part_header_that_does_not_parse_is_the_documented_400(client: Client) -> None:
    """Found by Schemathesis: a control character in a part's Content-Disposition was a 500."""
    document = await _document(client)
    ada = await register(client, "ada@example.com")
    body = b'--B\r\nContent-Disposition: form-data; name="\xf1\x9a\xb8\x87\x1b"\r\n\r\n{}\r\n--B--\r\n'
    headers = {**bearer(ada.access), "Content-Type": "multipart/form-data; boundary=B"}
    answer = await client.post("/api/collections/docs", data=body, headers=headers)
    assert answer.status == 400
    error = await answer.json()
    assert error["code"] == "INVALID_MULTIPART"
    assert "400" in document["paths"]["/api/collections/docs"]["post"]["responses"]
    assert _valid(document, _component("Error"), error)
