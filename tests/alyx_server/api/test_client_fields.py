"""What a client may not write: server-managed timestamps, huge automatic ids, emails
holding control characters. Each attack is sent to the real application and its refusal
asserted, with the stored data checked afterwards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from alyx_server.errors import SchemaError
from alyx_server.schema.loader import parse_schema
from alyx_server.tools.timestamps import ManualClock, format_timestamp
from tests.alyx_server.api.test_auth_admin import admin_client
from tests.alyx_server.auth.support import NO_LIMITS, PASSWORD, AppFactory, bearer

SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      title:      { type: string }
      due_at:     { type: timestamp, default: now, clientWritable: true }
      created_at: { type: timestamp, default: now }
      updated_at: { type: timestamp, default: now, onUpdate: now }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  counters:
    fields:
      id:    { type: int, primary: true, default: auto }
      label: { type: string, nullable: true }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""
PAST = "1999-01-01T00:00:00.000Z"
MAX_CLIENT_ID = 2**53 - 1
EMAIL_WITH_NUL = "a\u0000@x.io"


async def app(auth_app: AppFactory, tmp_path: Path) -> Any:
    root = tmp_path / "project"
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    return await auth_app(**NO_LIMITS)


async def send(client: Any, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    response = await client.request(method, path, json=body, **kwargs)
    return response.status, (await response.json() if response.status != 204 else None)


async def posts(client: Any) -> list[dict[str, Any]]:
    status, body = await send(client, "GET", "/api/collections/posts")
    assert status == 200, body
    docs: list[dict[str, Any]] = body["docs"]
    return docs


def now(clock: ManualClock) -> str:
    return format_timestamp(clock.now())


@pytest.mark.parametrize(("field", "how"), [("created_at", "default: now"), ("updated_at", "onUpdate: now")])
async def test_a_create_cannot_set_a_server_timestamp(
    auth_app: AppFactory, tmp_path: Path, field: str, how: str
) -> None:
    client = await app(auth_app, tmp_path)

    status, body = await send(client, "POST", "/api/collections/posts", {"title": "t", field: PAST})

    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    assert body["details"] == [
        {
            "field": field,
            "code": "read_only",
            "message": f"{field} is set by the server ({how}); leave it out of the request "
            "(or mark the field clientWritable: true in schema.yaml)",
        }
    ]
    assert await posts(client) == []


async def test_a_batch_create_cannot_set_a_server_timestamp(auth_app: AppFactory, tmp_path: Path) -> None:
    client = await app(auth_app, tmp_path)
    operation = {"method": "POST", "collection": "posts", "body": {"title": "t", "created_at": PAST}}

    status, body = await send(client, "POST", "/api/batch", {"operations": [operation]})

    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    (detail,) = body["details"]
    assert detail["index"] == 0
    assert "created_at is set by the server (default: now)" in detail["message"]
    assert await posts(client) == []


async def test_an_update_cannot_pin_updated_at_and_a_normal_one_moves_it(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await app(auth_app, tmp_path)
    status, created = await send(client, "POST", "/api/collections/posts", {"title": "t"})
    assert status == 201, created
    assert created["created_at"] == created["updated_at"] == now(clock)
    path = f"/api/collections/posts/{created['id']}"

    for field in ("updated_at", "created_at"):
        status, body = await send(client, "PATCH", path, {"title": "u", field: PAST})
        assert (status, body["details"][0]["code"]) == (400, "read_only"), body
    assert await posts(client) == [created]

    clock.advance(90)
    status, updated = await send(client, "PATCH", path, {"title": "u"})

    assert status == 200, updated
    assert updated["updated_at"] == now(clock) > created["updated_at"]
    assert updated["created_at"] == created["created_at"]
    assert await posts(client) == [updated]


async def test_a_client_writable_timestamp_takes_the_clients_value(
    auth_app: AppFactory, tmp_path: Path, clock: ManualClock
) -> None:
    client = await app(auth_app, tmp_path)

    status, created = await send(client, "POST", "/api/collections/posts", {"title": "t", "due_at": PAST})
    assert (status, created["due_at"]) == (201, PAST), created
    status, defaulted = await send(client, "POST", "/api/collections/posts", {"title": "d"})
    assert (status, defaulted["due_at"]) == (201, now(clock))
    status, moved = await send(
        client, "PATCH", f"/api/collections/posts/{created['id']}", {"due_at": "2030-01-01T00:00:00.000Z"}
    )
    assert (status, moved["due_at"]) == (200, "2030-01-01T00:00:00.000Z")


@pytest.mark.parametrize("chosen", [2**63 - 1, MAX_CLIENT_ID + 1])
async def test_a_client_chosen_id_past_the_bound_is_refused_and_ids_stay_sequential(
    auth_app: AppFactory, tmp_path: Path, chosen: int
) -> None:
    client = await app(auth_app, tmp_path)

    status, body = await send(client, "POST", "/api/collections/counters", {"id": chosen})

    assert (status, body["code"]) == (400, "VALIDATION_ERROR")
    assert body["details"] == [
        {
            "field": "id",
            "code": "max_value",
            "message": f"id must be at most {MAX_CLIENT_ID} (2^53-1) when given; "
            "leave it out to get the next automatic id",
        }
    ]
    status, batch = await send(
        client,
        "POST",
        "/api/batch",
        {"operations": [{"method": "POST", "collection": "counters", "body": {"id": chosen}}]},
    )
    assert status == 400, batch
    ids = []
    for body in ({"id": 41}, {}, {}, {"id": MAX_CLIENT_ID}, {}):
        status, doc = await send(client, "POST", "/api/collections/counters", body)
        assert status == 201, doc
        ids.append(doc["id"])
    assert ids == [41, 42, 43, MAX_CLIENT_ID, MAX_CLIENT_ID + 1]


async def test_the_openapi_document_states_what_clients_may_not_write(
    auth_app: AppFactory, tmp_path: Path
) -> None:
    client = await app(auth_app, tmp_path)

    status, document = await send(client, "GET", "/api/openapi.json")

    assert status == 200
    schemas = document["components"]["schemas"]
    assert schemas["Posts"]["properties"]["created_at"]["readOnly"] is True
    assert schemas["Posts"]["properties"]["updated_at"]["readOnly"] is True
    assert "readOnly" not in schemas["Posts"]["properties"]["due_at"]
    assert set(schemas["PostsCreate"]["properties"]) == {"id", "title", "due_at"}
    assert set(schemas["PostsUpdate"]["properties"]) == {"title", "due_at"}
    assert schemas["CountersCreate"]["properties"]["id"]["maximum"] == MAX_CLIENT_ID
    register = document["paths"]["/api/auth/register"]["post"]["requestBody"]["content"]["application/json"]
    email = re.compile(register["schema"]["properties"]["email"]["pattern"])
    assert email.search("ada@x.io") is not None
    assert email.search(EMAIL_WITH_NUL) is None
    assert email.search("ad\u0085a@x.io") is None


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/auth/register", {"email": EMAIL_WITH_NUL, "password": PASSWORD}),
        ("/api/auth/register", {"email": "ad\u0085a@x.io", "password": PASSWORD}),
        ("/api/auth/register", {"email": "ada@x.io\u007f", "password": PASSWORD}),
        ("/api/auth/login", {"email": EMAIL_WITH_NUL, "password": PASSWORD}),
        ("/api/auth/verify/request", {"email": EMAIL_WITH_NUL}),
        ("/api/auth/reset/request", {"email": EMAIL_WITH_NUL}),
    ],
)
async def test_an_email_with_a_control_character_is_refused(
    auth_app: AppFactory, tmp_path: Path, path: str, body: dict[str, str]
) -> None:
    client = await app(auth_app, tmp_path)

    status, answer = await send(client, "POST", path, body)

    assert (status, answer["code"]) == (400, "VALIDATION_ERROR"), answer
    (detail,) = answer["details"]
    assert detail["field"] == "email"
    assert detail["message"].startswith("email must not contain control characters (U+00")
    assert detail["message"].endswith("; remove it")


async def test_an_admin_cannot_create_or_rename_an_account_to_an_email_with_nul(
    auth_app: AppFactory, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    (root / "alyx.yaml").write_text("auth:\n  bcrypt_cost: 4\n", encoding="utf-8")
    client, token = await admin_client(auth_app, tmp_path)

    status, answer = await send(
        client,
        "POST",
        "/api/admin/users",
        {"email": EMAIL_WITH_NUL, "password": PASSWORD},
        headers=bearer(token),
    )

    assert (status, answer["code"]) == (400, "VALIDATION_ERROR"), answer
    assert answer["details"][0]["field"] == "email"
    assert "control characters" in answer["details"][0]["message"]
    status, listed = await send(client, "GET", "/api/admin/users", headers=bearer(token))
    assert [u["email"] for u in listed["users"]] == ["root@example.com"]


def test_client_writable_is_refused_on_a_field_the_server_does_not_set() -> None:
    text = SCHEMA.replace(
        "label: { type: string, nullable: true }", "label: { type: string, clientWritable: true }"
    )

    with pytest.raises(SchemaError) as caught:
        parse_schema(text)

    assert str(caught.value) == (
        "schema.yaml:14:46: collections.counters.fields.label.clientWritable: clientWritable applies only "
        "to a field the server sets (default: now or onUpdate: now) (remove clientWritable: every other "
        "field is written by clients)"
    )
