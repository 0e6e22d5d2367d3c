"""OpenAPI 3.1 document generated from the live schema (SPEC §7).

Built from the schema model alone, so it always matches what the server accepts: one
component schema per collection (stored doc, create body, update body), the list
response, the error envelope, and every route.
"""

from __future__ import annotations

from typing import Any

from alyx_server import __version__
from alyx_server.api.openapi_accounts import account_components, account_paths, errors, json_body, ref
from alyx_server.schema.model import Collection, Field, FieldType, Schema

__all__ = ["openapi_document"]

# Every code an HTTP route answers with (SPEC §7, §8, §11).
_ERROR_CODES = [
    "VALIDATION_ERROR", "INVALID_JSON", "INVALID_QUERY", "UNAUTHORIZED", "INVALID_TOKEN",
    "TOKEN_EXPIRED", "TOKEN_REUSED", "SESSION_REVOKED", "INVALID_CREDENTIALS", "FORBIDDEN",
    "EMAIL_NOT_VERIFIED", "ACCOUNT_DISABLED", "REGISTRATION_CLOSED", "COLLECTION_NOT_FOUND",
    "DOCUMENT_NOT_FOUND", "USER_NOT_FOUND", "FUNCTION_NOT_FOUND", "NOT_FOUND", "METHOD_NOT_ALLOWED",
    "UNIQUE_VIOLATION", "FOREIGN_KEY_VIOLATION", "USER_EXISTS", "LAST_ADMIN", "PAYLOAD_TOO_LARGE",
    "PASSWORD_TOO_SHORT", "PASSWORD_TOO_WEAK", "PASSWORD_TOO_LONG", "RATE_LIMITED",
    "INTERNAL_ERROR", "INVOCATION_ERROR", "UNAVAILABLE", "FUNCTIONS_BUSY", "FUNCTION_TIMEOUT",
]  # fmt: skip


def _field_schema(field: Field) -> dict[str, Any]:
    t = field.type
    v = field.validation
    out: dict[str, Any]
    if t in (FieldType.STRING, FieldType.TEXT, FieldType.UUID):
        out = {"type": "string"}
        if t is FieldType.UUID or v.format == "uuid":
            out["format"] = "uuid"
        elif v.format == "email":
            out["format"] = "email"
        elif v.format == "url":
            out["format"] = "uri"
        if v.min_length is not None:
            out["minLength"] = v.min_length
        if v.max_length is not None:
            out["maxLength"] = v.max_length
        if v.pattern is not None:
            out["pattern"] = v.pattern
    elif t is FieldType.INT:
        out = {"type": "integer"}
    elif t is FieldType.FLOAT:
        out = {"type": "number"}
    elif t is FieldType.BOOL:
        out = {"type": "boolean"}
    elif t is FieldType.TIMESTAMP:
        out = {"type": "string", "format": "date-time"}
    elif t is FieldType.BLOB:
        out = {"type": "string", "contentEncoding": "base64"}
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
    expand = {
        "type": "object",
        "description": "Referenced docs inlined by the `expand` parameter (null when absent)",
    }
    doc = {
        "type": "object",
        "properties": {**properties, "expand": expand},
        "required": [f.name for f in visible],
        "additionalProperties": False,
    }
    # `fields=` narrows what get and list return; the primary key is always there.
    selection = {**doc, "required": [c.primary.name]}
    create = {
        "type": "object",
        "properties": properties,
        "required": [f.name for f in visible if f.required_on_create],
        "additionalProperties": False,
    }
    update = {
        "type": "object",
        "properties": {f.name: _field_schema(f) for f in visible if not f.primary},
        "additionalProperties": False,
    }
    title = _title(c.name)
    return {
        title: doc,
        f"{title}Selection": selection,
        f"{title}Create": create,
        f"{title}Update": update,
        f"{title}List": {
            "type": "object",
            "properties": {
                "docs": {"type": "array", "items": ref(f"{title}Selection")},
                "total": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
            },
            "required": ["docs", "limit", "offset"],
            "additionalProperties": False,
        },
    }


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) or name


_LIST_PARAMS: list[dict[str, Any]] = [
    {"name": "filter", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
     "style": "form", "explode": True, "description": "field:op:value, repeatable"},
    {"name": "where", "in": "query", "schema": {"type": "string"}, "description": "CEL over doc"},
    {"name": "sort", "in": "query", "schema": {"type": "string"}, "description": "-created_at,title"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
    {"name": "expand", "in": "query", "schema": {"type": "string"}},
    {"name": "fields", "in": "query", "schema": {"type": "string"}},
    {"name": "total", "in": "query", "schema": {"type": "boolean"}},
]  # fmt: skip


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
                "operationId": f"list_{c.name}", "tags": tag, "parameters": _LIST_PARAMS,
                "responses": {"200": {"description": "A page of docs", **json_body(ref(f"{t}List"))},
                              **errors(400, 401, 403, 503)},
            },
            "post": {
                "operationId": f"create_{c.name}", "tags": tag,
                "requestBody": {"required": True, **json_body(ref(f"{t}Create"))},
                "responses": {"201": {"description": "Created", **json_body(ref(t))},
                              **errors(400, 401, 403, 409, 413, 503)},
            },
        },
        base + "/{id}": {
            "parameters": [id_param],
            "get": {
                "operationId": f"get_{c.name}", "tags": tag,
                "parameters": [{"name": "expand", "in": "query", "schema": {"type": "string"}},
                               {"name": "fields", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The doc", **json_body(ref(f"{t}Selection"))},
                              **errors(400, 401, 404, 503)},
            },
            "patch": {
                "operationId": f"update_{c.name}", "tags": tag,
                "requestBody": {"required": True, **json_body(ref(f"{t}Update"))},
                "responses": {"200": {"description": "Updated", **json_body(ref(t))},
                              **errors(400, 401, 403, 404, 409, 413, 503)},
            },
            "delete": {
                "operationId": f"delete_{c.name}", "tags": tag,
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
        "BatchRequest": {
            "type": "object",
            "properties": {
                "operations": {
                    "type": "array", "maxItems": 100,
                    "items": {
                        "type": "object",
                        "properties": {
                            "method": {"type": "string", "enum": ["GET", "POST", "PATCH", "DELETE"]},
                            "collection": {"type": "string"},
                            "id": {"type": ["string", "integer"]},
                            "body": {"type": "object"},
                        },
                        "required": ["method", "collection"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["operations"],
            "additionalProperties": False,
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
        },
        "required": ["status", "version", "uptime", "components"],
    }
    return health, {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}


def _system_paths() -> dict[str, Any]:
    health, probe = _health_schemas()
    return {
        "/api/batch": {"post": {
            "operationId": "batch", "tags": ["batch"],
            "requestBody": {"required": True, **json_body(ref("BatchRequest"))},
            "responses": {
                "200": {"description": "Every operation applied", **json_body(ref("BatchResponse"))},
                **errors(400, 404, 409, 413, 503)},
        }},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["meta"],
            "responses": {"200": {"description": "This document", **json_body({"type": "object"})},
                          **errors()},
        }},
        "/health": {"get": {"operationId": "health", "tags": ["meta"], "responses": {
            **errors(),
            "200": {"description": "Status", **json_body(health)},
            "503": {"description": "Starting or failing", **json_body(health)}}}},
        "/health/live": {"get": {"operationId": "health_live", "tags": ["meta"], "responses": {
            "200": {"description": "Alive", **json_body(probe)}, **errors()}}},
        "/health/ready": {"get": {"operationId": "health_ready", "tags": ["meta"], "responses": {
            **errors(),
            "200": {"description": "Ready", **json_body(probe)},
            "503": {"description": "Not ready", **json_body(probe)}}}},
        "/metrics": {"get": {"operationId": "metrics", "tags": ["meta"], "responses": {
            "200": {"description": "Prometheus text",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}, **errors()}}},
    }  # fmt: skip


_SECURITY = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from /api/auth/login, or an admin token (alyx admin create-token)",
    }
}


def openapi_document(schema: Schema, *, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `schema`: every collection route plus the fixed ones."""
    components = _common_components()
    paths: dict[str, Any] = {}
    for c in schema.collections:
        components.update(_collection_schemas(c))
        paths.update(_collection_paths(c))
    paths.update(_system_paths())
    paths.update(account_paths())
    components.update(account_components())
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Alyx API", "version": __version__},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": _SECURITY},
        # Every route takes a caller's token, and most also serve anonymous callers.
        "security": [{}, {"bearer": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
