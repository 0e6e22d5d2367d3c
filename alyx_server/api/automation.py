"""Functions that run on their own: after-write hooks, before-write hooks and schedules.

app.py adds `automation_context` after the functions' context: it starts the `HookRunner`
and the `Scheduler` (functions/hooks.py, functions/schedules.py) on the application's
database and function service, and stops them first at shutdown. The REST create and
update routes call `before_write` (before the write is queued) and wrap their step in
`acting` (so a hooked collection's change carries the user who wrote it).
`describe(app)` adds each function's hook and schedule state to `/api/admin/functions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from alyx_server.api.runtime import RUNTIME, CollectionView
from alyx_server.db import get_doc
from alyx_server.functions.before import before_hooks, run_before_hooks
from alyx_server.functions.capture import with_actor
from alyx_server.functions.hooks import HookRunner
from alyx_server.functions.schedules import Scheduler
from alyx_server.functions.service import FunctionService

__all__ = ["AUTOMATION", "Automation", "acting", "automation_context", "before_write", "describe"]

log = logging.getLogger("alyx.functions")
T = TypeVar("T")


@dataclass(slots=True)
class Automation:
    """The running hooks and scheduler (None before start and after shutdown); `tick` and
    `poll` are their intervals in seconds, `run_scheduler` False leaves ticking to tests."""

    hooks: HookRunner | None = None
    scheduler: Scheduler | None = None
    service: FunctionService | None = None
    tick: float = 1.0
    poll: float = 1.0
    run_scheduler: bool = True


AUTOMATION = web.AppKey("alyx.automation", Automation)


@contextlib.asynccontextmanager
async def automation_context(app: web.Application) -> AsyncIterator[None]:
    # Imported here: api/functions.py imports the collections routes, which import this module.
    from alyx_server.api.functions import FUNCTIONS

    rt = app[RUNTIME]
    state = app[AUTOMATION]
    service = app[FUNCTIONS].service
    if service is None:
        yield
        return
    db = rt.db
    hooks = HookRunner(db, service, lambda: rt.catalog.schema, clock=rt.clock, poll=state.poll)
    scheduler = Scheduler(db, service, clock=rt.clock, tick=state.tick)

    async def start() -> None:
        # Their tables and the collections' triggers exist once the startup migrations
        # are done: `serve` applies them in the background while the server listens.
        if not await rt.wait_ready():
            return
        try:
            await hooks.start()
            await scheduler.start(loop=state.run_scheduler)
        except Exception:
            if rt.phase == "ready" and not starting_in_dev:
                log.exception("hooks and schedules could not start")
                return
            raise
        state.hooks, state.scheduler, state.service = hooks, scheduler, service

    starting_in_dev = rt.phase == "ready"
    starting = asyncio.get_running_loop().create_task(start(), name="alyx-automation-start")
    if starting_in_dev:
        await starting  # (`dev` migrates before serving: started before the first request)
    try:
        yield
    finally:
        state.hooks, state.scheduler, state.service = None, None, None
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        await scheduler.close()
        await hooks.close()


def acting(
    app: web.Application, view: CollectionView, step: Callable[[sqlite3.Connection], T], auth: Any
) -> Callable[[sqlite3.Connection], T]:
    """`step`, recording `auth` as the acting user when a hook watches `view`'s collection."""
    hooks = app[AUTOMATION].hooks
    if hooks is None or view.name not in hooks.hooked:
        return step
    return with_actor(step, auth)


async def before_write(
    app: web.Application,
    view: CollectionView,
    event: str,
    body: Mapping[str, Any],
    auth: Any,
    doc_id: Any = None,
) -> Mapping[str, Any]:
    """`body` after the before-write hooks of `view` (unchanged when there are none)."""
    service = app[AUTOMATION].service
    hooks = before_hooks(service, view.name, event)
    if not hooks or service is None:
        return body
    previous = None
    if event == "update":
        db = app[RUNTIME].db
        previous = db.read_now(lambda conn: get_doc(conn, view.collection, doc_id, internal=True))
    user = auth.as_dict() if hasattr(auth, "as_dict") else auth
    return await run_before_hooks(
        service, hooks, view.name, event, body, doc_id=doc_id, previous=previous, auth=user
    )


async def describe(app: web.Application) -> dict[str, dict[str, Any]]:
    """{function: {"hook": {...}, "before": {...}, "schedule": {...}}} for the functions that have them."""
    state = app.get(AUTOMATION)
    service = state.service if state is not None else None
    out: dict[str, dict[str, Any]] = {}
    if state is None or service is None:
        return out
    hooks = await state.hooks.describe() if state.hooks is not None else {}
    schedules = await state.scheduler.describe() if state.scheduler is not None else {}
    for name, spec in service.specs.items():
        entry: dict[str, Any] = {}
        if name in hooks:
            entry["hook"] = hooks[name]
        elif spec.on is not None and state.hooks is not None and name in state.hooks.problems:
            entry["hook"] = {"error": state.hooks.problems[name]}
        if spec.before is not None:
            entry["before"] = {
                "collection": spec.before.collection,
                "events": list(spec.before.events),
                "timeout": spec.before.timeout,
            }
        if name in schedules:
            entry["schedule"] = schedules[name]
        if entry:
            out[name] = entry
    return out
