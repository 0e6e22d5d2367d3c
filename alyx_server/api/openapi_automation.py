"""OpenAPI paths and components of the job queue's and the webhooks' routes.

`openapi.py` merges them into the document: `POST /api/jobs/{name}` and the admin routes
of api/jobs.py and api/webhooks.py. What a job's payload must be is the manifest's
`input` of each function and a webhook's `when` is CEL, so both are described in words;
the bodies' keys are closed as the handlers close them.
"""

from __future__ import annotations

from typing import Any

from alyx_server.api.openapi_accounts import BEARER, OPTIONAL, errors, json_body, ref
from alyx_server.config.webhooks import EVENT_TYPES, NAME
from alyx_server.jobs.queue import MAX_DEDUPE_KEY
from alyx_server.jobs.store import STATES

__all__ = ["AUTOMATION_ERROR_CODES", "automation_components", "automation_paths"]

AUTOMATION_ERROR_CODES = ["JOB_NOT_FOUND", "WEBHOOK_EXISTS", "WEBHOOK_NOT_FOUND"]

_LIMIT = {
    "name": "limit", "in": "query", "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "description": "How many rows, newest first",
}  # fmt: skip


def _ok(status: int, description: str, component: str | None = None) -> dict[str, Any]:
    if component is None:
        return {str(status): {"description": description}}
    return {str(status): {"description": description, **json_body(ref(component))}}


def automation_components() -> dict[str, Any]:
    number_or_null = {"type": ["number", "null"]}
    job = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "payload": {},
            "state": {"type": "string", "enum": list(STATES)},
            "attempts": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "run_at": {"type": "number"},
            "lease_until": number_or_null,
            "dedupe_key": {"type": ["string", "null"]},
            "last_error": {"type": ["string", "null"]},
            "result": {},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
            "finished_at": number_or_null,
        },
        "required": ["id", "name", "payload", "state", "attempts", "max_attempts", "run_at"],
    }
    event = {
        "type": "object",
        "properties": {
            "collection": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
            "when": {"type": ["string", "null"], "description": "A CEL expression over doc"},
        },
        "required": ["collection"],
    }
    webhook = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "url": {"type": "string"},
            "source": {"type": "string", "enum": ["config", "api"]},
            "events": {"type": "array", "items": event},
        },
        "required": ["name", "url", "source", "events"],
    }
    delivery = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "webhook": {"type": "string"},
            "event": {"type": "string"},
            "change_id": {"type": ["integer", "null"]},
            "status": {"type": "string"},
            "attempts": {"type": "integer"},
            "response_status": {"type": ["integer", "null"]},
            "response_ms": number_or_null,
            "last_error": {"type": ["string", "null"]},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
        },
        "required": ["id", "webhook", "event", "status", "attempts"],
    }
    return {
        "JobRequest": {
            "type": "object",
            "properties": {
                "payload": {"type": "object", "description": "What the function's manifest `input` accepts"},
                "delay": {
                    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
                    "description": "Seconds, or a duration such as 30s or 5m, before the job may run",
                },
                "dedupe_key": {"type": "string", "minLength": 1, "maxLength": MAX_DEDUPE_KEY},
            },
            "additionalProperties": False,
        },
        "JobQueued": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "created": {"type": "boolean"},
                "state": {"type": "string", "enum": list(STATES)},
            },
            "required": ["id", "created", "state"],
            "description": "created false: a queued or running job held the same dedupe_key (that job)",
        },
        "Job": job,
        "JobList": {
            "type": "object",
            "properties": {
                "jobs": {"type": "array", "items": ref("Job")},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
            "required": ["jobs", "counts"],
        },
        "JobsPurged": {
            "type": "object", "properties": {"deleted": {"type": "integer"}}, "required": ["deleted"],
        },
        "Webhook": webhook,
        "WebhookCreated": {
            "allOf": [ref("Webhook")],
            "type": "object",
            "properties": {"secret": {"type": "string", "description": "Shown once"}},
            "required": ["secret"],
        },
        "WebhookRequest": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": f"^{NAME.pattern}$"},
                "url": {"type": "string", "description": "A public http(s) URL (private ones refused)"},
                "events": {"type": "array", "items": event},
                "secret": {"type": "string", "description": "whsec_ and base64; made when not given"},
            },
            "required": ["name", "url", "events"],
            "additionalProperties": False,
        },
        "WebhookList": {
            "type": "object",
            "properties": {"webhooks": {"type": "array", "items": ref("Webhook")}},
            "required": ["webhooks"],
        },
        "WebhookDeliveries": {
            "type": "object",
            "properties": {"deliveries": {"type": "array", "items": delivery}},
            "required": ["deliveries"],
        },
    }  # fmt: skip


def automation_paths() -> dict[str, Any]:
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    admin = "Needs an admin, or a token with the functions permission"
    return {
        "/api/jobs/{name}": {"post": {
            "operationId": "enqueue_job", "tags": ["jobs"], "parameters": [name], "security": OPTIONAL,
            "description": "Queue a job of a function whose manifest has a job: section, under the "
                           "function's rule and input (no rule: admins only)",
            "requestBody": {"required": True, **json_body(ref("JobRequest"))},
            "responses": {**_ok(202, "Queued", "JobQueued"), **errors(400, 404, 413, 503)},
        }},
        "/api/admin/jobs": {
            "get": {
                "operationId": "admin_list_jobs", "tags": ["jobs"], "security": BEARER, "description": admin,
                "parameters": [
                    {"name": "state", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": list(STATES)}},
                    {"name": "name", "in": "query", "required": False, "schema": {"type": "string"}},
                    _LIMIT,
                ],
                "responses": {**_ok(200, "Jobs, and the count in each state", "JobList"),
                              **errors(400, 503)},
            },
            "delete": {
                "operationId": "admin_purge_jobs", "tags": ["jobs"], "security": BEARER,
                "description": f"Delete the done jobs (dead=true: the dead ones). {admin}",
                "parameters": [{"name": "dead", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {**_ok(200, "Deleted", "JobsPurged"), **errors(503)},
            },
        },
        "/api/admin/jobs/{id}": {"get": {
            "operationId": "admin_get_job", "tags": ["jobs"], "parameters": [job_id], "security": BEARER,
            "description": admin,
            "responses": {**_ok(200, "The job", "Job"), **errors(404, 503)},
        }},
        "/api/admin/jobs/{id}/retry": {"post": {
            "operationId": "admin_retry_job", "tags": ["jobs"], "parameters": [job_id], "security": BEARER,
            "description": f"Queue a dead or done job again. {admin}",
            "responses": {**_ok(200, "Queued again", "Job"), **errors(400, 404, 503)},
        }},
        "/api/admin/webhooks": {
            "get": {
                "operationId": "admin_list_webhooks", "tags": ["webhooks"], "security": BEARER,
                "description": admin,
                "responses": {**_ok(200, "alyx.yaml's webhooks and those added here", "WebhookList"),
                              **errors(503)},
            },
            "post": {
                "operationId": "admin_add_webhook", "tags": ["webhooks"], "security": BEARER,
                "description": admin,
                "requestBody": {"required": True, **json_body(ref("WebhookRequest"))},
                "responses": {**_ok(201, "Added", "WebhookCreated"), **errors(400, 409, 413, 503)},
            },
        },
        "/api/admin/webhooks/deliveries": {"get": {
            "operationId": "admin_webhook_deliveries", "tags": ["webhooks"], "security": BEARER,
            "description": admin,
            "parameters": [{"name": "webhook", "in": "query", "required": False,
                            "schema": {"type": "string"}},
                           _LIMIT],
            "responses": {**_ok(200, "The delivery log, newest first", "WebhookDeliveries"),
                          **errors(400, 503)},
        }},
        "/api/admin/webhooks/{name}": {"delete": {
            "operationId": "admin_remove_webhook", "tags": ["webhooks"], "parameters": [name],
            "security": BEARER, "description": f"Remove a webhook added through this API. {admin}",
            "responses": {**_ok(204, "Removed"), **errors(404, 503)},
        }},
    }  # fmt: skip
