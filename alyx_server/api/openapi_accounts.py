"""OpenAPI paths and components of the routes that do not depend on the schema.

Accounts (`/api/auth/*`), account management (`/api/admin/users`), the dashboard's
admin routes (`/api/admin/schema`, `stats`, `events`), functions (`/api/functions/{name}`,
`/api/admin/functions`) and the realtime WebSocket (`/api/realtime`). `openapi.py`
merges them into the document it builds from the live schema, so the document
describes every route the server has. The small builders at the top (`ref`,
`json_body`, `errors`) are shared with `openapi.py`.

Every route reads the `Authorization` header first: a bad token answers 401 and a
disabled account's token 403 on any route, so those two are listed everywhere. Each
operation states its own `security`: `OPTIONAL` (anonymous or a token) where anonymous
callers are served, `BEARER` where a token is required (the caller's account, the admin
routes).
"""

from __future__ import annotations

from typing import Any

from alyx_server.api.admin_users import MAX_LIMIT, MAX_OFFSET
from alyx_server.api.openapi_oauth import oauth_paths
from alyx_server.auth.passwords import MAX_PASSWORD_BYTES
from alyx_server.auth.users import ROLE_PATTERN
from alyx_server.config import PasswordPolicy

__all__ = ["BEARER", "OPTIONAL", "account_components", "account_paths", "errors", "json_body", "ref"]

BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
"""A token is required: 401 without one."""
OPTIONAL: list[dict[str, list[str]]] = [{}, {"bearer": []}]
"""Anonymous callers are served; a token, when sent, must be valid."""

# What an email, a password and a role look like on the way in. auth.users.normalize_email
# trims the text first, then matches Python's `\s`, which is not ECMA's (it holds \x1c-\x1f
# and not \ufeff): the whitespace is spelled out so both read the same characters.
_WS = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Control characters, refused inside an address (auth.users._CONTROL).
_CC = r"\x00-\x1f\x7f-\x9f"
_EMAIL = {
    "type": "string",
    "pattern": rf"^[{_WS}]*[^@{_WS}{_CC}]{{1,64}}@[^@.{_WS}{_CC}]+(?:\.[^@.{_WS}{_CC}]+)+[{_WS}]*$",
    "maxLength": 254,
    "description": "An email address (local@domain.tld); trimmed and lower-cased",
}
# A password being checked (sign-in, current password): only bcrypt's limit applies. JSON
# Schema counts characters, not UTF-8 bytes, so maxLength is the bound for ASCII text.
_PASSWORD = {
    "type": "string",
    "maxLength": MAX_PASSWORD_BYTES,
    "description": f"At most {MAX_PASSWORD_BYTES} bytes in UTF-8",
}
_ROLE = {"type": "string", "pattern": f"^{ROLE_PATTERN.pattern}$", "description": "user, admin, editor, ..."}
_METADATA = {"type": "object", "description": "A JSON object of at most 16 KiB"}
_OPAQUE = {"type": "string", "description": "A token the server issued"}
_TIMESTAMP = {"type": "string", "format": "date-time"}


def ref(name: str) -> dict[str, str]:
    """A `$ref` to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """`content` of a JSON request or response with this schema."""
    return {"content": {"application/json": {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Any]:
    """Error responses (the envelope of SPEC §7) for these statuses, plus 401 and 403."""
    every = sorted({*statuses, 401, 403})
    return {str(s): {"description": "Error", **json_body(ref("Error"))} for s in every}


def _object(properties: dict[str, Any], required: list[str], *, closed: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if closed:
        out["additionalProperties"] = False
    return out


def account_components() -> dict[str, Any]:
    """Component schemas of the account, admin and function routes."""
    user = {
        "id": {"type": "string", "format": "uuid"},
        "email": {"type": "string"},
        "role": {"type": "string"},
        "verified": {"type": "boolean"},
        "metadata": {"type": "object"},
        "created_at": _TIMESTAMP,
        "updated_at": _TIMESTAMP,
    }
    admin_user = {**user, "app_metadata": {"type": "object"}, "disabled": {"type": "boolean"}}
    tokens = {
        "access_token": {"type": "string"},
        "refresh_token": {"type": "string"},
        "expires_at": _TIMESTAMP,
        "token_type": {"const": "Bearer"},
    }
    return {
        "User": _object(user, list(user)),
        "AdminUser": _object(admin_user, list(admin_user)),
        "Tokens": _object(tokens, list(tokens)),
        "Session": _object(
            # tokens is null when auth.require_verification holds registration back.
            {"user": ref("User"), "tokens": {"oneOf": [ref("Tokens"), {"type": "null"}]}},
            ["user", "tokens"],
        ),
        "UserEnvelope": _object({"user": ref("User")}, ["user"]),
        "AdminUserEnvelope": _object({"user": ref("AdminUser")}, ["user"]),
        "AdminUserList": _object(
            {
                "users": {"type": "array", "items": ref("AdminUser")},
                "total": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
            },
            ["users", "total", "limit", "offset"],
        ),
        "Accepted": _object({"message": {"type": "string"}}, ["message"]),
        "FunctionResult": {
            "type": "object",
            "properties": {
                "success": {"type": "boolean"},
                "output": {},
                "error": {"type": "object"},
                "logs": {"type": "array"},
                "duration_ms": {"type": "number", "minimum": 0},
            },
            "required": ["success", "logs", "duration_ms"],
        },
        "AdminSchema": _object(
            {
                "schema": {"type": "object"},
                "checksum": {"type": "string"},
                "collections": {"type": "array", "items": {"type": "object"}},
            },
            ["schema", "checksum", "collections"],
        ),
        "AdminStats": _object(
            {
                "version": {"type": "string"},
                "mode": {"enum": ["dev", "serve"]},
                "phase": {"type": "string"},
                "uptime": {"type": "number", "minimum": 0},
                **{k: {"type": "object"} for k in ("requests", "realtime", "functions", "database")},
            },
            ["version", "mode", "phase", "uptime", "requests", "realtime", "functions", "database"],
            closed=False,
        ),
        "FunctionList": _object(
            {"functions": {"type": "array", "items": {"type": "object"}}, "backend": {"type": "object"}},
            ["functions", "backend"],
        ),
    }


def _new_password(policy: PasswordPolicy) -> dict[str, Any]:
    """A password being set: the length policy, and the character rules in words."""
    rules = [
        what
        for wanted, what in (
            (policy.require_upper, "an upper-case letter"),
            (policy.require_lower, "a lower-case letter"),
            (policy.require_number, "a digit"),
            (policy.require_special, "a character that is neither a letter nor a digit"),
        )
        if wanted
    ]
    needs = f"; must contain {', '.join(rules)}" if rules else ""
    return {
        **_PASSWORD,
        "minLength": policy.min_length,
        "description": f"{policy.min_length} characters or more, at most {MAX_PASSWORD_BYTES} bytes "
        f"in UTF-8{needs} (auth.password.*)",
    }


def _post(
    op_id: str, body: dict[str, Any] | None, ok: dict[str, Any], *fail: int, security: list[Any] = OPTIONAL
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": op_id, "tags": ["auth"], "security": security}
    if body is not None:
        operation["requestBody"] = {"required": True, **json_body(body)}
    operation["responses"] = {**ok, **errors(*fail)}
    return operation


def _ok(status: int, description: str, schema: str | None = None) -> dict[str, Any]:
    if schema is None:
        return {str(status): {"description": description}}
    return {str(status): {"description": description, **json_body(ref(schema))}}


def _auth_paths(policy: PasswordPolicy) -> dict[str, Any]:
    session = _ok(200, "Signed in", "Session")
    new_password = _new_password(policy)
    credentials = _object({"email": _EMAIL, "password": _PASSWORD}, ["email", "password"], closed=False)
    refresh = _object({"refresh_token": _OPAQUE}, ["refresh_token"], closed=False)
    return {
        "/api/auth/register": {"post": _post(
            "auth_register",
            _object({"email": _EMAIL, "password": new_password,
                     "metadata": {**_METADATA, "type": ["object", "null"]}}, ["email", "password"],
                    closed=False),
            _ok(201, "Registered", "Session"), 400, 409, 413, 429, 503)},
        "/api/auth/login": {"post": _post("auth_login", credentials, session, 400, 413, 429, 503)},
        "/api/auth/refresh": {"post": _post("auth_refresh", refresh, session, 400, 413, 503)},
        "/api/auth/logout": {"post": _post("auth_logout", refresh, _ok(204, "Logged out"), 400, 413, 503)},
        "/api/auth/me": {
            "get": {"operationId": "auth_me", "tags": ["auth"], "security": BEARER,
                    "responses": {**_ok(200, "The caller's account", "UserEnvelope"), **errors(503)}},
            "patch": _post("auth_update_me", _object({"metadata": _METADATA}, []),
                           _ok(200, "Updated", "UserEnvelope"), 400, 413, 503, security=BEARER),
            "delete": _post("auth_delete_me", _object(
                {"password": _PASSWORD,
                 "code": {"type": "string", "description": "Without a password (OAuth only): the "
                          "one-time code of a sign-in made just before"},
                 "code_verifier": {"type": "string"}}, [], closed=False),
                            _ok(204, "Deleted"), 400, 403, 409, 413, 429, 503, security=BEARER),
        },
        "/api/auth/password": {"post": _post(
            "auth_change_password",
            _object({"current_password": _PASSWORD, "new_password": new_password},
                    ["current_password", "new_password"], closed=False),
            _ok(204, "Changed; the caller's other sessions are revoked"), 400, 413, 429, 503,
            security=BEARER)},
        "/api/auth/verify/request": {"post": {
            "operationId": "auth_verify_request", "tags": ["auth"], "security": OPTIONAL,
            "description": "Signed in: no body needed, the code goes to the caller. Anonymous: the "
                           "body names the address, and without one the answer is 401 (sign in, or "
                           "send {email}).",
            "requestBody": {"required": False, **json_body(_object(
                {"email": {"anyOf": [_EMAIL, {"type": "null"}], "description": "null is the same as none"}},
                [], closed=False))},
            "responses": {**_ok(202, "Accepted", "Accepted"), **errors(400, 413, 429, 503)}}},
        "/api/auth/verify": {"post": _post(
            "auth_verify", _object({"token": _OPAQUE}, ["token"], closed=False),
            _ok(200, "Verified", "UserEnvelope"), 400, 413, 503)},
        "/api/auth/reset/request": {"post": _post(
            "auth_reset_request", _object({"email": _EMAIL}, ["email"], closed=False),
            _ok(202, "Accepted, whether or not the address has an account", "Accepted"), 400, 413, 429, 503)},
        "/api/auth/reset": {"post": _post(
            "auth_reset", _object({"token": _OPAQUE, "new_password": new_password}, ["token", "new_password"],
                                  closed=False),
            _ok(204, "Reset; every session of the account is revoked"), 400, 413, 503)},
    }  # fmt: skip


def _admin_paths(policy: PasswordPolicy) -> dict[str, Any]:
    tag = ["admin"]
    user_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    create = _object(
        {"email": _EMAIL, "password": _new_password(policy), "role": _ROLE, "verified": {"type": "boolean"},
         "metadata": _METADATA, "app_metadata": _METADATA},
        ["email", "password"],
    )  # fmt: skip
    update = _object(
        {"role": _ROLE, "verified": {"type": "boolean"}, "disabled": {"type": "boolean"},
         "metadata": _METADATA, "app_metadata": _METADATA},
        [],
    )  # fmt: skip
    return {
        "/api/admin/users": {
            "get": {
                "operationId": "admin_list_users", "tags": tag, "security": BEARER,
                "parameters": [
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT}},
                    {"name": "offset", "in": "query",
                     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}},
                    {"name": "email", "in": "query", "schema": {"type": "string"},
                     "description": "Substring of the email"},
                ],
                "responses": {**_ok(200, "A page of accounts", "AdminUserList"), **errors(400, 503)},
            },
            "post": {
                "operationId": "admin_create_user", "tags": tag, "security": BEARER,
                "requestBody": {"required": True, **json_body(create)},
                "responses": {**_ok(201, "Created", "AdminUserEnvelope"), **errors(400, 409, 413, 503)},
            },
        },
        "/api/admin/users/{id}": {
            "parameters": [user_id],
            "get": {"operationId": "admin_get_user", "tags": tag, "security": BEARER,
                    "responses": {**_ok(200, "The account", "AdminUserEnvelope"), **errors(404, 503)}},
            "patch": {
                "operationId": "admin_update_user", "tags": tag, "security": BEARER,
                "requestBody": {"required": True, **json_body(update)},
                "responses": {**_ok(200, "Updated", "AdminUserEnvelope"), **errors(400, 404, 409, 413, 503)},
            },
            "delete": {"operationId": "admin_delete_user", "tags": tag, "security": BEARER,
                       "responses": {**_ok(204, "Deleted"), **errors(404, 409, 503)}},
        },
    }  # fmt: skip


def _function_paths() -> dict[str, Any]:
    tag = ["functions"]
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    body = _object({"input": {"description": "Checked against the function's manifest"}}, [])
    return {
        "/api/functions/{name}": {"post": {
            "operationId": "invoke_function", "tags": tag, "parameters": [name], "security": OPTIONAL,
            "requestBody": {"required": True, **json_body(body)},
            "responses": {
                **_ok(200, "The function ran (success false when it raised)", "FunctionResult"),
                **errors(400, 404, 413, 500, 503, 504),
            },
        }},
        "/api/admin/functions": {"get": {
            "operationId": "admin_list_functions", "tags": ["admin"], "security": BEARER,
            "responses": {**_ok(200, "Every function and its pool", "FunctionList"), **errors(503)},
        }},
        "/api/admin/schema": {"get": {
            "operationId": "admin_schema", "tags": ["admin"], "security": BEARER,
            "responses": {**_ok(200, "The schema in use", "AdminSchema"), **errors(503)},
        }},
        "/api/admin/stats": {"get": {
            "operationId": "admin_stats", "tags": ["admin"], "security": BEARER,
            "responses": {**_ok(200, "Counters for dashboards", "AdminStats"), **errors(503)},
        }},
        "/api/admin/events": {"get": {
            "operationId": "admin_events", "tags": ["admin"], "security": [*BEARER, {"query_token": []}],
            "description": "WebSocket: requests, changes, realtime and invocations as they happen; "
                           "a plain GET is refused",
            "responses": {"101": {"description": "Switching to the WebSocket protocol"}, **errors(400, 503)},
        }},
        "/api/realtime": {"get": {
            "operationId": "realtime", "tags": ["realtime"], "security": OPTIONAL,
            "description": "WebSocket: live queries (see docs/realtime.md); a plain GET is refused",
            "responses": {"101": {"description": "Switching to the WebSocket protocol"}, **errors(400, 503)},
        }},
    }  # fmt: skip


def account_paths(policy: PasswordPolicy) -> dict[str, Any]:
    """Paths of the account, admin, function and realtime routes; `policy` bounds new passwords."""
    return {**_auth_paths(policy), **oauth_paths(), **_admin_paths(policy), **_function_paths()}
