"""OpenAPI paths and components of `alyx deploy`'s routes (api/deploy.py).

`openapi.py` merges them into the document. The prepare body is a deploy bundle (a
gzip'd tar, `deploy/bundle.py`), described as binary with its hash header; what makes a
bundle valid (members, manifest hashes, sizes) is beyond JSON Schema and is stated in
the description.
"""

from __future__ import annotations

from typing import Any

from alyx_server.api.openapi_accounts import BEARER, errors, json_body, ref

__all__ = ["deploy_components", "deploy_paths"]

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_NAMES = {"type": "array", "items": {"type": "string"}}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def deploy_components() -> dict[str, Any]:
    change = _object({
        "collection": {"type": "string"},
        "op": {"type": "string"},
        "field": {"type": ["string", "null"]},
        "destructive": {"type": "boolean"},
        "text": {"type": "string"},
    })  # fmt: skip
    config_change = _object({"key": {"type": "string"}, "from": {}, "to": {}, "restart": {"type": "boolean"}})
    plan = {
        "bundle_sha256": _SHA256,
        "version": {"type": "integer", "minimum": 1},
        "schema": _object({"changes": {"type": "array", "items": change}, "migrations": _NAMES}),
        "functions": _object({"added": _NAMES, "changed": _NAMES, "removed": _NAMES}),
        "config": _object({"changed": {"type": "array", "items": config_change}}),
        "warnings": _NAMES,
        "destructive": {"type": "boolean"},
        "needs_restart": {"type": "boolean"},
        "backup": {"type": "boolean"},
        "empty": {"type": "boolean"},
    }
    row = _object({
        "version": {"type": "integer"},
        "bundle_sha256": _SHA256,
        "token_name": {"type": ["string", "null"]},
        "message": {"type": "string"},
        "git_commit": {"type": ["string", "null"]},
        "git_dirty": {"type": ["boolean", "null"]},
        "summary": {"type": "object"},
        "outcome": {"type": "string", "enum": ["swapping", "applied", "rolled_back"]},
        "duration_ms": {"type": ["integer", "null"]},
        "rollback_of": {"type": ["integer", "null"]},
        "created_at": {"type": "string"},
    })  # fmt: skip
    return {
        "DeployPlan": _object(plan),
        "DeployPrepared": _object({"plan_id": {"type": "string"}, **plan}),
        "DeployExecute": _object(
            {
                "plan_id": {"type": "string", "minLength": 1},
                "bundle_sha256": {"type": "string", "minLength": 1},
                "message": {"type": ["string", "null"]},
                "git_commit": {"type": ["string", "null"]},
                "git_dirty": {"type": ["boolean", "null"]},
            },
            ["plan_id", "bundle_sha256"],
        ),
        "DeployExecuted": _object({
            "version": {"type": "integer"},
            "outcome": {"const": "applied"},
            "duration_ms": {"type": "integer", "minimum": 0},
            "plan": ref("DeployPlan"),
        }),
        "DeployRollback": _object(
            {
                "version": {"type": "integer", "minimum": 1},
                "message": {"type": "string"},
                "restore_backup": {"type": "boolean"},
            },
            [],
        ),
        "DeployRolledBack": _object({
            "version": {"type": "integer"},
            "outcome": {"const": "applied"},
            "rollback_of": {"type": "integer"},
            "migrations_undone": _NAMES,
            "restored_backup": {"type": ["string", "null"]},
            "functions": _object({"added": _NAMES, "changed": _NAMES, "removed": _NAMES}),
            "duration_ms": {"type": "integer", "minimum": 0},
        }),
        "DeployHistory": _object({"deployments": {"type": "array", "items": row}}),
        "DeployStatus": _object({
            "version": {"type": ["integer", "null"]},
            "bundle_sha256": {"anyOf": [_SHA256, {"type": "null"}]},
            "running": {"type": "boolean"},
        }),
    }  # fmt: skip


def _ok(description: str, component: str) -> dict[str, Any]:
    return {"200": {"description": description, **json_body(ref(component))}}


def deploy_paths() -> dict[str, Any]:
    tag = ["deploy"]
    prepare_body = {
        "required": True,
        "description": "The bundle `alyx deploy` builds: a gzip'd tar of schema.yaml, migrations/, "
                       "functions/ and alyx.deploy.json (per-file sha256 and the deployable keys); "
                       "at most deploy.max_bundle_size and server.max_body_size",
        "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
    }  # fmt: skip
    return {
        "/api/admin/deploy/prepare": {"post": {
            "operationId": "deploy_prepare", "tags": tag, "security": BEARER,
            "description": "Store the bundle, answer the plan against the live state; nothing else changes",
            "parameters": [
                {"name": "X-Bundle-SHA256", "in": "header", "required": True, "schema": _SHA256},
                {"name": "message", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "requestBody": prepare_body,
            "responses": {**_ok("The plan", "DeployPrepared"), **errors(400, 409, 413, 503)},
        }},
        "/api/admin/deploy/execute": {"post": {
            "operationId": "deploy_execute", "tags": tag, "security": BEARER,
            "description": "Apply a prepared plan, all or nothing (STALE_PLAN, DEPLOY_IN_PROGRESS)",
            "requestBody": {"required": True, **json_body(ref("DeployExecute"))},
            "responses": {**_ok("Deployed", "DeployExecuted"), **errors(400, 409, 503)},
        }},
        "/api/admin/deploy/rollback": {"post": {
            "operationId": "deploy_rollback", "tags": tag, "security": BEARER,
            "description": "Back to an earlier version (default: the one before), as a new version; "
                           "IRREVERSIBLE when a step since cannot be undone without losing data",
            "requestBody": {"required": False, **json_body(ref("DeployRollback"))},
            "responses": {**_ok("Rolled back", "DeployRolledBack"), **errors(400, 404, 409, 503)},
        }},
        "/api/admin/deploy/history": {"get": {
            "operationId": "deploy_history", "tags": tag, "security": BEARER,
            "responses": {**_ok("Deployments, newest first", "DeployHistory"), **errors(503)},
        }},
        "/api/admin/deploy/status": {"get": {
            "operationId": "deploy_status", "tags": tag, "security": BEARER,
            "responses": {**_ok("The version in force", "DeployStatus"), **errors(503)},
        }},
    }  # fmt: skip
