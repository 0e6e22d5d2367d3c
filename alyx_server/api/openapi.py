"""OpenAPI 3.1 document generated from the live schema (SPEC §7).

Built from the schema model alone, so it always matches what the server accepts: one
component schema per collection (stored doc, create body, update body), the list
response, the error envelope, and every route. Each value is described by the checks the
server applies to it: `format:` and timestamps by the same patterns (schema.formats,
tools.timestamps), integers by the 64-bit range, blobs by the base64 alphabet, query
parameters by the collection's field names, batch operations one schema per method and
collection, and each operation by its own `security`; create, update and batch answer 502
HOOK_FAILED or 504 HOOK_TIMEOUT when a before-write hook fails. File fields, their multipart
bodies and the file routes are in openapi_files.py; jobs and webhooks in
openapi_automation.py.
"""

from __future__ import annotations

from typing import Any

from alyx_server import __version__
from alyx_server.api.batch import MAX_OPERATIONS
from alyx_server.api.openapi_accounts import (
    OPTIONAL,
    account_components,
    account_paths,
    errors,
    json_body,
    ref,
)
from alyx_server.api.openapi_automation import (
    AUTOMATION_ERROR_CODES,
    automation_components,
    automation_paths,
)
from alyx_server.api.openapi_deploy import deploy_components, deploy_paths
from alyx_server.api.openapi_files import (
    FILE_ERROR_CODES,
    file_components,
    file_fields,
    file_paths,
    file_value_schema,
    multipart_body,
    multipart_content,
)
from alyx_server.config import PasswordPolicy
from alyx_server.db.codec import INT64_MAX, INT64_MIN, MAX_CLIENT_ID
from alyx_server.db.query import MAX_LIMIT, OPERATORS
from alyx_server.rules.limits import WHERE_MAX_LENGTH, WHERE_MAX_TOKENS
from alyx_server.schema.formats import FORMAT_PATTERNS
from alyx_server.schema.model import Collection, Field, FieldType, Schema
from alyx_server.tools.timestamps import RFC3339_PATTERN

__all__ = ["openapi_document"]

# Every code an HTTP route answers with (SPEC §7, §8, §11, and alyx deploy's).
_ERROR_CODES = [
    "VALIDATION_ERROR", "INVALID_JSON", "INVALID_QUERY", "UNAUTHORIZED", "INVALID_TOKEN",
    "TOKEN_EXPIRED", "TOKEN_REUSED", "SESSION_REVOKED", "INVALID_CREDENTIALS", "FORBIDDEN",
    "EMAIL_NOT_VERIFIED", "ACCOUNT_DISABLED", "REGISTRATION_CLOSED", "COLLECTION_NOT_FOUND",
    "DOCUMENT_NOT_FOUND", "USER_NOT_FOUND", "FUNCTION_NOT_FOUND", "NOT_FOUND", "METHOD_NOT_ALLOWED",
    "UNIQUE_VIOLATION", "FOREIGN_KEY_VIOLATION", "USER_EXISTS", "LAST_ADMIN", "PAYLOAD_TOO_LARGE",
    "PASSWORD_TOO_SHORT", "PASSWORD_TOO_WEAK", "PASSWORD_TOO_LONG", "RATE_LIMITED",
    "INTERNAL_ERROR", "INVOCATION_ERROR", "UNAVAILABLE", "FUNCTIONS_BUSY", "FUNCTION_TIMEOUT",
    "INVALID_BUNDLE", "STALE_PLAN", "DEPLOY_IN_PROGRESS", "IRREVERSIBLE", "BUNDLE_MISSING",
    "MIGRATION_ERROR", "SCHEMA_ERROR", "RULE_ERROR", "BUNDLE_TOO_LARGE", "REALTIME_FULL",
    "REAUTHENTICATION_REQUIRED", *FILE_ERROR_CODES, "STORAGE_UNAVAILABLE",
    # The OAuth sign-in and identities routes (api/oauth.py).
    "OAUTH_UNKNOWN_PROVIDER", "OAUTH_REDIRECT_NOT_ALLOWED", "OAUTH_DENIED", "OAUTH_CHALLENGE_INVALID",
    "OAUTH_INVALID_ID_TOKEN", "OAUTH_NO_EMAIL", "OAUTH_EMAIL_UNVERIFIED", "IDENTITY_IN_USE",
    "IDENTITY_NOT_FOUND", "LAST_SIGN_IN_METHOD", "OAUTH_STATE_INVALID", "OAUTH_PROVIDER_ERROR",
    # The job queue and webhooks (api/jobs.py, api/webhooks.py).
    *AUTOMATION_ERROR_CODES,
]  # fmt: skip


# What base64.b64decode(validate=True) takes: the standard alphabet, padded.
_BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
# The defaults of auth.password.*, for a document built without the live settings.
_DEFAULT_PASSWORD_POLICY = PasswordPolicy(8, False, False, False, False)


def _string_schema(field: Field) -> dict[str, Any]:
    v = field.validation
    out: dict[str, Any] = {"type": "string"}
    patterns: list[str] = []
    if field.type is FieldType.UUID or v.format == "uuid":
        out["format"] = "uuid"
        patterns.append(FORMAT_PATTERNS["uuid"])
    elif v.format is not None:
        # Email and url are the server's own definitions, not JSON Schema's formats.
        patterns.append(FORMAT_PATTERNS[v.format])
    if v.min_length is not None:
        out["minLength"] = v.min_length
    if v.max_length is not None:
        out["maxLength"] = v.max_length
    if v.pattern is not None:
        patterns.append(v.pattern)
    if patterns:
        out["pattern"] = patterns[0]
    if len(patterns) > 1:
        out["allOf"] = [{"pattern": p} for p in patterns[1:]]
    return out


def _field_schema(field: Field) -> dict[str, Any]:
    t = field.type
    if t is FieldType.FILE:
        return file_value_schema(field)
    v = field.validation
    out: dict[str, Any]
    if t in (FieldType.STRING, FieldType.TEXT, FieldType.UUID):
        out = _string_schema(field)
    elif t is FieldType.INT:
        out = {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX}
    elif t is FieldType.FLOAT:
        out = {"type": "number"}
    elif t is FieldType.BOOL:
        out = {"type": "boolean"}
    elif t is FieldType.TIMESTAMP:
        out = {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN}
    elif t is FieldType.BLOB:
        out = {"type": "string", "contentEncoding": "base64", "pattern": _BASE64}
    else:
        out = {"type": ["object", "array", "string", "number", "boolean"]}
    if t in (FieldType.INT, FieldType.FLOAT):
        if v.min is not None:
            out["minimum"] = v.min
        if v.max is not None:
            out["maximum"] = v.max
    if v.enum is not None:
        out["enum"] = list(v.enum)
    if field.nullable:
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        kind = out["type"]
        out["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    return out


def _collection_schemas(c: Collection) -> dict[str, dict[str, Any]]:
    visible = [f for f in c.fields if not f.internal]
    properties = {f.name: _field_schema(f) for f in visible}
    # Server-managed timestamps are readOnly: in responses, never accepted in a request.
    managed = frozenset(f.name for f in visible if f.server_managed)
    shown = {n: {**s, "readOnly": True} if n in managed else s for n, s in properties.items()}
    writable = {n: s for n, s in properties.items() if n not in managed}
    # A JSON body can only clear a file field (null); files come in multipart bodies.
    # (`<field>-`, removing files by name, is described in the update's description:
    # a name that is not there is refused, which no schema can state.)
    files = file_fields(c)
    for f in files:
        del writable[f.name]
        if f.nullable:
            writable[f.name] = {"type": "null"}
    pk = c.primary
    if pk.type is FieldType.INT and pk.default is not None and pk.default.kind == "auto":
        writable[pk.name] = {**writable[pk.name], "maximum": MAX_CLIENT_ID}
    expand = {
        "type": "object",
        "description": "Referenced docs inlined by the `expand` parameter (null when absent)",
    }
    doc = {
        "type": "object",
        "properties": {**shown, "expand": expand},
        "required": [f.name for f in visible],
        "additionalProperties": False,
    }
    # `fields=` narrows what get and list return; the primary key is always there.
    selection = {**doc, "required": [c.primary.name]}
    create: dict[str, Any] = {
        "type": "object",
        "properties": writable,
        "required": [f.name for f in visible if f.required_on_create],
        "additionalProperties": False,
    }
    update: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: writable[f.name] for f in visible if not f.primary and f.name in writable},
        "additionalProperties": False,
    }
    if any(f.file is not None and f.file.multiple for f in files):
        update["description"] = '`"<field>-": [names]` removes files of a multiple file field'
    title = _title(c.name)
    forms: dict[str, Any] = {}
    if files:
        forms[f"{title}CreateForm"] = {
            **multipart_body(c, create["properties"], update=False),
            "required": create["required"],
        }
        forms[f"{title}UpdateForm"] = multipart_body(c, update["properties"], update=True)
    return {
        **forms,
        title: doc,
        f"{title}Selection": selection,
        f"{title}Create": create,
        f"{title}Update": update,
        f"{title}List": {
            "type": "object",
            "properties": {
                "docs": {"type": "array", "items": ref(f"{title}Selection")},
                "total": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
                "offset": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
            },
            "required": ["docs", "limit", "offset"],
            "additionalProperties": False,
        },
    }


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or name


def _name_list(names: list[str], *, signed: bool = False) -> dict[str, Any]:
    """A comma list of these names (blanks and repeats allowed, as the server reads it)."""
    if not names:
        return {"type": "string", "pattern": r"^[\s,]*$"}
    sign = "[+-]*" if signed else ""
    item = rf"\s*(?:{sign}(?:{'|'.join(names)}))?\s*"
    return {"type": "string", "pattern": rf"^{item}(?:,{item})*$"}


def _shape_params(c: Collection) -> list[dict[str, Any]]:
    public = [f.name for f in c.fields if not f.internal]
    refs = [f.name for f in c.fields if f.references is not None and not f.internal]
    return [
        {"name": "expand", "in": "query", "schema": _name_list(refs),
         "description": "Reference fields to inline, comma separated"},
        {"name": "fields", "in": "query", "schema": _name_list(public),
         "description": "Fields to return, comma separated (the primary key always is)"},
    ]  # fmt: skip


def _list_params(c: Collection) -> list[dict[str, Any]]:
    public = [f.name for f in c.fields if not f.internal]
    condition = rf"^(?:{'|'.join(public)}):(?:{'|'.join(OPERATORS)})(?::|$)"
    return [
        {"name": "filter", "in": "query", "style": "form", "explode": True,
         "schema": {"type": "array", "items": {"type": "string", "pattern": condition}},
         "description": "field:op:value, repeatable; the value must fit the field's type (docs/api.md)"},
        {"name": "where", "in": "query", "schema": {"type": "string", "maxLength": WHERE_MAX_LENGTH},
         "description": "A CEL expression over doc's non-internal fields (docs/rules.md); refused with "
                        f"400 when it does not compile, names another field or has over {WHERE_MAX_TOKENS} "
                        "tokens"},
        {"name": "sort", "in": "query", "schema": _name_list(public, signed=True),
         "description": "-created_at,title: - for descending"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": INT64_MAX}},
        *_shape_params(c),
        {"name": "total", "in": "query", "schema": {"type": "boolean"}},
    ]  # fmt: skip


def _request_body(c: Collection, name: str) -> dict[str, Any]:
    """JSON, plus multipart/form-data when the collection has file fields."""
    body: dict[str, Any] = {"required": True, **json_body(ref(name))}
    if file_fields(c):
        body["content"] = {**body["content"], **multipart_content(c, name + "Form")}
    return body


def _id_schema(c: Collection) -> dict[str, Any]:
    schema = _field_schema(c.primary)
    schema.pop("enum", None)
    return schema


def _collection_paths(c: Collection) -> dict[str, Any]:
    t = _title(c.name)
    tag = [c.name]
    pk = c.primary
    id_schema = _field_schema(pk)
    id_schema.pop("enum", None)
    id_param = {"name": "id", "in": "path", "required": True, "schema": id_schema}
    base = f"/api/collections/{c.name}"
    return {
        base: {
            "get": {
                "operationId": f"list_{c.name}", "tags": tag, "security": OPTIONAL,
                "parameters": _list_params(c),
                "responses": {"200": {"description": "A page of docs", **json_body(ref(f"{t}List"))},
                              **errors(400, 401, 403, 503)},
            },
            "post": {
                "operationId": f"create_{c.name}", "tags": tag, "security": OPTIONAL,
                "requestBody": _request_body(c, f"{t}Create"),
                "responses": {"201": {"description": "Created", **json_body(ref(t))},
                              **errors(400, 401, 403, 409, 413, 502, 503, 504)},
            },
        },
        base + "/{id}": {
            "parameters": [id_param],
            "get": {
                "operationId": f"get_{c.name}", "tags": tag, "security": OPTIONAL,
                "parameters": _shape_params(c),
                "responses": {"200": {"description": "The doc", **json_body(ref(f"{t}Selection"))},
                              **errors(400, 401, 404, 503)},
            },
            "patch": {
                "operationId": f"update_{c.name}", "tags": tag, "security": OPTIONAL,
                "requestBody": _request_body(c, f"{t}Update"),
                "responses": {"200": {"description": "Updated", **json_body(ref(t))},
                              **errors(400, 401, 403, 404, 409, 413, 502, 503, 504)},
            },
            "delete": {
                "operationId": f"delete_{c.name}", "tags": tag, "security": OPTIONAL,
                "responses": {"204": {"description": "Deleted"}, **errors(401, 403, 404, 409, 503)},
            },
        },
    }  # fmt: skip


def _common_components() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "code": {"type": "string", "enum": _ERROR_CODES},
                "details": {"type": "array", "items": {}},
                "request_id": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
            },
            "required": ["error", "code", "details", "request_id", "timestamp"],
        },
        "BatchResponse": {
            "type": "object",
            "properties": {"results": {"type": "array", "items": {
                "type": "object",
                "properties": {"status": {"type": "integer"}, "body": {}},
                "required": ["status"],
            }}},
            "required": ["results"],
        },
    }  # fmt: skip


def _method(name: str) -> dict[str, Any]:
    """The method name in any case, as api.batch reads it (`delete` is DELETE)."""
    return {"type": "string", "pattern": "^" + "".join(f"[{c}{c.lower()}]" for c in name) + "$"}


def _batch_operations(schema: Schema) -> list[dict[str, Any]]:
    """One schema per (method, collection): exactly the keys api.batch accepts for it."""
    out: list[dict[str, Any]] = []
    for c in schema.collections:
        t = _title(c.name)
        doc_id = _field_schema(c.primary)
        doc_id.pop("enum", None)
        shapes = {
            "POST": ({"body": ref(f"{t}Create")}, ["body"]),
            "PATCH": ({"id": doc_id, "body": ref(f"{t}Update")}, ["id", "body"]),
            "GET": ({"id": doc_id}, ["id"]),
            "DELETE": ({"id": doc_id}, ["id"]),
        }
        for method, (extra, required) in shapes.items():
            out.append({
                "type": "object",
                "properties": {"method": _method(method), "collection": {"const": c.name}, **extra},
                "required": ["method", "collection", *required],
                "additionalProperties": False,
            })  # fmt: skip
    return out


def _batch_request(schema: Schema) -> dict[str, Any]:
    operation: dict[str, Any] = {"oneOf": _batch_operations(schema)} if schema.collections else {"not": {}}
    return {
        "type": "object",
        "properties": {"operations": {"type": "array", "maxItems": MAX_OPERATIONS, "items": operation}},
        "required": ["operations"],
        "additionalProperties": False,
    }


def _health_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(/health, /health/live and /health/ready) bodies."""
    component = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
    health = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "starting", "error"]},
            "version": {"type": "string"},
            "uptime": {"type": "number", "minimum": 0},
            "components": {
                "type": "object",
                "properties": {k: component for k in ("database", "realtime", "functions")},
                "required": ["database", "realtime", "functions"],
            },
            "worker": {"type": "string"},
            "workers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "pid": {"type": "integer"},
                        "phase": {"type": "string"},
                        "uptime": {"type": ["number", "null"]},
                    },
                    "required": ["name", "pid", "phase"],
                },
            },
        },
        "required": ["status", "version", "uptime", "components", "worker", "workers"],
    }
    return health, {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}


def _system_paths() -> dict[str, Any]:
    health, probe = _health_schemas()
    return {
        "/api/batch": {"post": {
            "operationId": "batch", "tags": ["batch"], "security": OPTIONAL,
            "requestBody": {"required": True, **json_body(ref("BatchRequest"))},
            "responses": {
                "200": {"description": "Every operation applied", **json_body(ref("BatchResponse"))},
                **errors(400, 404, 409, 413, 502, 503, 504)},
        }},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["meta"], "security": OPTIONAL,
            "responses": {"200": {"description": "This document", **json_body({"type": "object"})},
                          **errors()},
        }},
        "/health": {"get": {"operationId": "health", "tags": ["meta"], "security": OPTIONAL, "responses": {
            **errors(),
            "200": {"description": "Status", **json_body(health)},
            "503": {"description": "Starting or failing", **json_body(health)}}}},
        "/health/live": {"get": {"operationId": "health_live", "tags": ["meta"], "security": OPTIONAL,
                                 "responses": {
            "200": {"description": "Alive", **json_body(probe)}, **errors()}}},
        "/health/ready": {"get": {"operationId": "health_ready", "tags": ["meta"], "security": OPTIONAL,
                                  "responses": {
            **errors(),
            "200": {"description": "Ready", **json_body(probe)},
            "503": {"description": "Not ready", **json_body(probe)}}}},
        "/metrics": {"get": {"operationId": "metrics", "tags": ["meta"], "security": OPTIONAL, "responses": {
            "200": {"description": "Prometheus text",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}, **errors()}}},
    }  # fmt: skip


_SECURITY = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from /api/auth/login, or an admin token (alyx admin create-token)",
    },
    "query_token": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The same token as a query parameter, for browsers' WebSockets (/api/admin/events)",
    },
}


def openapi_document(
    schema: Schema, *, server_url: str | None = None, password: PasswordPolicy = _DEFAULT_PASSWORD_POLICY
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `schema`: every collection route plus the fixed ones.

    `password` is the live auth.password.* policy, stated on the routes that set one.
    """
    components = {**_common_components(), "BatchRequest": _batch_request(schema)}
    paths: dict[str, Any] = {}
    for c in schema.collections:
        components.update(_collection_schemas(c))
        paths.update(_collection_paths(c))
    paths.update(file_paths([(c, _id_schema(c)) for c in schema.collections]))
    components.update(file_components())
    paths.update(_system_paths())
    paths.update(account_paths(password))
    components.update(account_components())
    paths.update(deploy_paths())
    components.update(deploy_components())
    paths.update(automation_paths())
    components.update(automation_components())
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Alyx API", "version": __version__},
        "paths": paths,
        # No document-wide `security`: each operation states whether it serves anonymous callers.
        "components": {"schemas": components, "securitySchemes": _SECURITY},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
