"""Patterns, formats and timestamps: the server and its OpenAPI document accept the same values.

Each value of the table is sent to the real server as a create and checked against the
schema the live `/api/openapi.json` publishes for that field (JSON Schema 2020-12, with
format assertions on). Both must agree, and both must give the answer the table states:
a value the document allows is stored, a value it refuses is refused with the field's
code. The validator is jsonschema-rs (Schemathesis' own), whose `pattern` has JSON
Schema's ECMA meaning; Python's `jsonschema` runs patterns with `re`, where `$` also
matches before a final newline, the very defect the table checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from jsonschema_rs import Draft202012Validator

from tests.alyx_server.api.projects import write_project

SCHEMA_YAML = """\
version: 1
collections:
  pages:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      slug:  { type: string, nullable: true, pattern: '^[a-z0-9-]+$' }
      code:  { type: string, nullable: true, pattern: '[0-9]' }
      email: { type: string, nullable: true, format: email }
      site:  { type: string, nullable: true, format: url }
      ref:   { type: string, nullable: true, format: uuid }
      at:    { type: timestamp, nullable: true }
      data:  { type: blob, nullable: true }
      n:     { type: int, nullable: true }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""

# (field, value, accepted, field code when refused)
TABLE: list[tuple[str, Any, bool, str]] = [
    # A pattern holds for the whole value: `$` is the end of the text, not "before a final newline".
    ("slug", "nl", True, ""),
    ("slug", "nl\n", False, "pattern"),
    ("slug", "NL", False, "pattern"),
    # Unanchored, a pattern may match anywhere in the value (JSON Schema's rule).
    ("code", "abc1def", True, ""),
    ("code", "abcdef", False, "pattern"),
    # email: local@labels.tld, no whitespace or control characters, a dot in the domain.
    ("email", "ada@example.com", True, ""),
    ("email", "é@bücher.de", True, ""),
    ("email", "a@localhost", False, "format_email"),
    ("email", "a@@example.com", False, "format_email"),
    ("email", "a b@example.com", False, "format_email"),
    ("email", "a@example..com", False, "format_email"),
    ("email", "ada@example.com\n", False, "format_email"),
    ("email", "a\x00b@example.com", False, "format_email"),
    # url: http or https, a host, then anything without whitespace.
    ("site", "https://example.com/a?b=c#d", True, ""),
    ("site", "HTTP://example.com", True, ""),
    ("site", "http://[::1]:8080/x", True, ""),
    ("site", "ftp://example.com/file", False, "format_url"),
    ("site", "mailto:ada@example.com", False, "format_url"),
    ("site", "http://", False, "format_url"),
    ("site", "http://[::1", False, "format_url"),
    ("site", "http://example.com/a b", False, "format_url"),
    ("site", "https://example.com\n", False, "format_url"),
    # uuid: the canonical 8-4-4-4-12 form.
    ("ref", "0f8fad5b-d9cb-469f-a165-70867728950e", True, ""),
    ("ref", "0F8FAD5B-D9CB-469F-A165-70867728950E", True, ""),
    ("ref", "{0f8fad5b-d9cb-469f-a165-70867728950e}", False, "format_uuid"),
    ("ref", "0f8fad5bd9cb469fa16570867728950e", False, "format_uuid"),
    # timestamps: RFC 3339 date-time, `T`/`t` and `Z`/`z`, a zone required.
    ("at", "2026-01-31T12:00:00Z", True, ""),
    ("at", "2026-01-31t12:00:00z", True, ""),
    ("at", "2026-01-31T12:00:00.123456+02:00", True, ""),
    ("at", "2026-01-31T12:00:00", False, "invalid_type"),
    ("at", "2026-01-31", False, "invalid_type"),
    ("at", "2026-01-31 12:00:00Z", False, "invalid_type"),
    ("at", "2026-02-30T12:00:00Z", False, "invalid_type"),
    ("at", "2026-01-31T12:00:00+0200", False, "invalid_type"),
    ("at", "2026-01-31T12:00:00Z\n", False, "invalid_type"),
    # blobs: padded standard base64.
    ("data", "aGVsbG8=", True, ""),
    ("data", "aGVsbG8", False, "invalid_type"),
    ("data", "a GVsbG8=", False, "invalid_type"),
    # int: the 64-bit range.
    ("n", 2**63 - 1, True, ""),
    ("n", 2**63, False, "invalid_type"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project", SCHEMA_YAML)


async def _document_field(client: TestClient[Any, Any], name: str) -> Draft202012Validator:
    doc = await (await client.get("/api/openapi.json")).json()
    field = doc["components"]["schemas"]["PagesCreate"]["properties"][name]
    return Draft202012Validator(field, validate_formats=True)


@pytest.mark.parametrize(("field", "value", "accepted", "code"), TABLE)
async def test_the_server_and_the_document_agree(
    client: TestClient[Any, Any], field: str, value: Any, accepted: bool, code: str
) -> None:
    validator = await _document_field(client, field)
    response = await client.post("/api/collections/pages", json={field: value})
    body = await response.json()
    assert validator.is_valid(value) is accepted, f"the document says {not accepted} for {value!r}"
    if accepted:
        assert response.status == 201, body
    else:
        assert response.status == 400, body
        assert [(d["field"], d["code"]) for d in body["details"]] == [(field, code)]


async def test_a_trailing_newline_does_not_pass_a_dollar_anchored_pattern(
    client: TestClient[Any, Any],
) -> None:
    response = await client.post("/api/collections/pages", json={"slug": "nl\n"})
    body = await response.json()
    assert response.status == 400
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"] == [
        {"field": "slug", "code": "pattern", "message": "slug must match the pattern ^[a-z0-9-]+$"}
    ]


async def test_a_timestamp_without_a_zone_is_refused_with_an_example(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/collections/pages", json={"at": "2026-01-31T12:00:00"})
    body = await response.json()
    assert response.status == 400
    assert body["details"][0]["message"] == (
        "at must be an RFC 3339 timestamp with a zone, such as 2026-01-31T12:00:00.000Z"
    )


async def test_lower_case_t_and_z_are_stored_in_the_storage_format(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/collections/pages", json={"at": "2026-01-31t13:00:00+01:00"})
    assert response.status == 201
    assert (await response.json())["at"] == "2026-01-31T12:00:00.000Z"
