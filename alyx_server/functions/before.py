"""Before-write hooks: `before: {collection, events: [create, update], timeout: 1s}`.

Called by the REST create and update routes before the write is queued, so the writer
never waits on a function. The function receives

    {"collection": "posts", "event": "create" | "update", "id": <id> | null,
     "doc": {the body sent}, "previous": {the stored doc} | null, "user": {...} | null}

and answers with one of

    null or {}                              the write goes on unchanged
    {"changes": {"field": value, ...}}      these fields are laid over the body, then it goes on
    {"refuse": "message", "status": 403}    the write is refused: 403 FORBIDDEN, or 400
                                            VALIDATION_ERROR (the default status)

A function that does not answer within the hook's `timeout` refuses the write with
504 HOOK_TIMEOUT (its worker is stopped, the other writes go on); one that raises or
crashes refuses it with 502 HOOK_FAILED. Several hooks of one collection run one after
another in name order, each seeing the previous one's changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from alyx_server.errors import AlyxError, Forbidden, ValidationError
from alyx_server.functions.capture import actor_json
from alyx_server.functions.hooks import call_function
from alyx_server.functions.manifest import FunctionSpec
from alyx_server.functions.service import FunctionService

__all__ = ["before_hooks", "run_before_hooks"]


def before_hooks(service: FunctionService | None, collection: str, event: str) -> list[FunctionSpec]:
    """The functions hooked before `event` writes of `collection`, in name order."""
    if service is None:
        return []
    return [
        spec
        for _name, spec in sorted(service.specs.items())
        if spec.before is not None and spec.before.collection == collection and event in spec.before.events
    ]


async def run_before_hooks(
    service: FunctionService,
    hooks: list[FunctionSpec],
    collection: str,
    event: str,
    body: Mapping[str, Any],
    *,
    doc_id: Any = None,
    previous: Mapping[str, Any] | None = None,
    auth: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body after every hook's changes, or the refusal (see the module docstring)."""
    actor = actor_json(auth)
    doc = dict(body)
    for spec in hooks:
        assert spec.before is not None
        limit = spec.before.timeout
        data = {
            "collection": collection,
            "event": event,
            "id": doc_id,
            "doc": doc,
            "previous": dict(previous) if previous is not None else None,
            "user": orjson.loads(actor) if actor is not None else None,
        }
        try:
            answer = await call_function(service, spec, data, timeout=limit)
        except AlyxError as e:
            if e.code == "FUNCTION_TIMEOUT":
                raise AlyxError(
                    f"the before hook {spec.name} of {collection} did not answer within {limit:g}s; "
                    "the write was refused",
                    code="HOOK_TIMEOUT",
                    status=504,
                ) from e
            raise AlyxError(
                f"the before hook {spec.name} of {collection} failed ({e.message}); the write was refused",
                code="HOOK_FAILED",
                status=502,
            ) from e
        if answer is None or answer == {}:
            continue
        if not isinstance(answer, dict) or not set(answer) <= {"changes", "refuse", "status"}:
            raise AlyxError(
                f"the before hook {spec.name} of {collection} answered {str(answer)[:80]!r}: it must answer "
                'null, {"changes": {...}} or {"refuse": "message"}; the write was refused',
                code="HOOK_FAILED",
                status=502,
            )
        if answer.get("refuse") is not None:
            message = str(answer["refuse"])
            if answer.get("status") == 403:
                raise Forbidden(message)
            raise ValidationError(message)
        changes = answer.get("changes")
        if isinstance(changes, dict):
            doc.update(changes)
    return doc
