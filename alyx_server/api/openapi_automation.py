"""OpenAPI paths and components of the job queue's and the webhooks' routes.

`openapi.py` merges them into the document: `POST /api/jobs/{name}` and the admin routes
of api/jobs.py and api/webhooks.py. What a job's payload must be is the manifest's
`input` of each function and a webhook's `when` is CEL, so both are described in words;
the bodies' keys are closed as the handlers close them, a webhook's url and secret are
the patterns config/webhooks.py checks them with, and a delay the grammar of
tools/durations.py (in ASCII digits and spaces). Every answer is described whole: each
key the handler writes is required, and no other comes.
"""

from __future__ import annotations

from typing import Any

from alyx_server.api.openapi_accounts import BEARER, OPTIONAL, errors, json_body, ref
from alyx_server.config.webhooks import EVENT_TYPES, SECRET_PATTERN, URL_PATTERN
from alyx_server.jobs.queue import MAX_DEDUPE_KEY
from alyx_server.jobs.store import STATES
from alyx_server.webhooks.targets import API_NAME_PATTERN

__all__ = ["AUTOMATION_ERROR_CODES", "automation_components", "automation_paths"]

AUTOMATION_ERROR_CODES = [
    "JOB_NOT_FOUND", "WEBHOOK_EXISTS", "WEBHOOK_NOT_FOUND",
    # A before-write hook (functions/before.py) that fails (502) or does not answer in time
    # (504) refuses a create or an update: the collection routes and batch list both.
    "HOOK_FAILED", "HOOK_TIMEOUT",
]  # fmt: skip

# tools/durations.py's grammar: a bare number of seconds, or number-unit parts (30s, 1h30m).
_SPACE = r"[\t\n\v\f\r ]*"
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_DURATION = rf"^(?:{_SPACE}{_NUMBER}{_SPACE}|(?:{_SPACE}{_NUMBER}{_SPACE}(?:ms|w|d|h|m|s))+{_SPACE})$"
_TIME = {"type": "number", "description": "Unix seconds"}

_LIMIT = {
    "name": "limit", "in": "query", "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "description": "How many rows, newest first",
}  # fmt: skip


def _ok(status: int, description: str, component: str | None = None) -> dict[str, Any]:
    if component is None:
        return {str(status): {"description": description}}
    return {str(status): {"description": description, **json_body(ref(component))}}


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these keys."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def automation_components() -> dict[str, Any]:
    number_or_null = {"type": ["number", "null"]}
    job = _closed({
        "id": {"type": "string"},
        "name": {"type": "string"},
        "payload": {"type": "object"},
        "state": {"type": "string", "enum": list(STATES)},
        "attempts": {"type": "integer", "minimum": 0},
        "max_attempts": {"type": "integer", "minimum": 1},
        "run_at": _TIME,
        "lease_until": number_or_null,
        "dedupe_key": {"type": ["string", "null"]},
        "last_error": {"type": ["string", "null"]},
        "result": {"description": "What the function returned (null until it is done)"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "finished_at": number_or_null,
    })  # fmt: skip
    kinds = {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}, "minItems": 1}
    when = {"type": ["string", "null"], "description": "A CEL expression over doc; one that does not "
            "compile is refused with 400 RULE_ERROR naming its column"}  # fmt: skip
    # What a request may send per collection: unknown keys are left alone, as the handler does.
    event_request = {
        "type": "object",
        "properties": {
            "collection": {"type": "string"},
            "events": {**kinds, "description": "Every event type when left out"},
            "when": when,
        },
        "required": ["collection"],
    }
    webhook = _closed({
        "name": {"type": "string"},
        "url": {"type": "string"},
        "source": {"type": "string", "enum": ["config", "api"],
                   "description": "config: alyx.yaml's webhooks.targets; api: added through this API"},
        "events": {"type": "array", "items": _closed(
            {"collection": {"type": "string"}, "events": kinds, "when": {"type": ["string", "null"]}})},
    })  # fmt: skip
    delivery = _closed({
        "id": {"type": "string"},
        "webhook": {"type": "string"},
        "event": {"type": "string", "description": "<collection>.<create|update|delete>"},
        "change_id": {"type": ["integer", "null"]},
        "status": {"type": "string", "enum": ["pending", "delivered", "failed", "refused"]},
        "attempts": {"type": "integer", "minimum": 0},
        "response_status": {"type": ["integer", "null"]},
        "response_ms": number_or_null,
        "last_error": {"type": ["string", "null"]},
        "created_at": _TIME,
        "updated_at": _TIME,
    })  # fmt: skip
    return {
        "JobRequest": {
            "type": "object",
            "properties": {
                "payload": {"type": ["object", "null"],
                            "description": "What the function's manifest `input` accepts (null: {})"},
                "delay": {
                    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": _DURATION}],
                    "description": "Seconds, or a duration such as 30s or 5m, before the job may run",
                },
                "dedupe_key": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_DEDUPE_KEY,
                               "description": "While a queued or running job of this name holds it, "
                                              "that job comes back instead of a new one"},
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
            "additionalProperties": False,
            "description": "created false: a queued or running job held the same dedupe_key (that job)",
        },
        "Job": job,
        "JobList": {
            "type": "object",
            "properties": {
                "jobs": {"type": "array", "items": ref("Job")},
                "counts": _closed({s: {"type": "integer", "minimum": 0} for s in STATES}),
            },
            "required": ["jobs", "counts"],
            "additionalProperties": False,
        },
        "JobsPurged": _closed({"deleted": {"type": "integer", "minimum": 0}}),
        "Webhook": webhook,
        "WebhookCreated": _closed({
            **webhook["properties"],
            "secret": {"type": "string", "pattern": SECRET_PATTERN, "description": "Shown once"},
        }),
        "WebhookRequest": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": API_NAME_PATTERN},
                "url": {"type": "string", "pattern": URL_PATTERN,
                        "description": "An http(s) URL; deliveries to a private address are refused "
                                       "unless webhooks.allow_private_targets"},
                "events": {"type": "array", "items": event_request, "minItems": 1},
                "secret": {"type": ["string", "null"], "pattern": SECRET_PATTERN,
                           "description": "whsec_ and the base64 of 24 to 64 bytes; made when null or "
                                          "left out"},
            },
            "required": ["name", "url", "events"],
            "additionalProperties": False,
        },
        "WebhookList": {
            "type": "object",
            "properties": {"webhooks": {"type": "array", "items": ref("Webhook")}},
            "required": ["webhooks"],
            "additionalProperties": False,
        },
        "WebhookDeliveries": _closed({"deliveries": {"type": "array", "items": delivery}}),
    }  # fmt: skip


def automation_paths() -> dict[str, Any]:
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    # `deliveries` is the delivery log's path, never a webhook's: no other name is routed.
    webhook = {"name": "name", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": API_NAME_PATTERN}}  # fmt: skip
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
                    {"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "Only the jobs of this function"},
                    _LIMIT,
                ],
                "responses": {**_ok(200, "Jobs, and the count in each state", "JobList"),
                              **errors(400, 503)},
            },
            "delete": {
                "operationId": "admin_purge_jobs", "tags": ["jobs"], "security": BEARER,
                "description": f"Delete the done jobs (dead=true: the dead ones). {admin}",
                "parameters": [{"name": "dead", "in": "query", "required": False,
                                "schema": {"type": "string"},
                                "description": "1, true or yes (any case): the dead jobs; anything "
                                               "else: the done ones"}],
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
                            "schema": {"type": "string"},
                            "description": "Only this webhook's deliveries (empty: every webhook's)"},
                           _LIMIT],
            "responses": {**_ok(200, "The delivery log, newest first", "WebhookDeliveries"),
                          **errors(400, 503)},
        }},
        "/api/admin/webhooks/{name}": {"delete": {
            "operationId": "admin_remove_webhook", "tags": ["webhooks"], "parameters": [webhook],
            "security": BEARER, "description": f"Remove a webhook added through this API. {admin}",
            "responses": {**_ok(204, "Removed"), **errors(404, 503)},
        }},
    }  # fmt: skip
