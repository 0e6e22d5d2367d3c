"""`WebhookService`: change events to signed deliveries, sent through the job queue.

Dispatch. After commit, the change log (`_alyx_changes`) is read from a durable cursor
(`_alyx_webhook_cursor`, one row) in batches of `BATCH`. For each change and each webhook
that wants it (collection, event, `when` over the document read now), a delivery row
(`_alyx_webhook_deliveries`, id = the `webhook-id`) and a `_webhook` job are written, and
the cursor moves past the batch, all in one transaction that first checks the cursor is
where this process read it: every process may dispatch (woken by the change feed, which
also hears other processes' commits), and exactly one wins each batch. A process killed
between the read and the write wrote nothing, so the next pass dispatches that batch
again: no event is lost across a restart, and none is dispatched twice. A database whose
change log was pruned (`database.changes_retention`) before dispatch lost those events.

Delivery. A `_webhook` job POSTs the delivery's body with Standard Webhooks headers
(signing.py; a new timestamp and signature per attempt, the same webhook-id) through
delivery.py's client (SSRF checks, no redirects, bounded time and read). A 2xx marks it
delivered; anything else fails the job, which the queue retries with backoff up to
`webhooks.max_attempts`, after which the delivery is `failed`. A target refused as
private is `refused` at once (no retries). The delivery log keeps, per delivery, its
status, attempts, last HTTP status, response time and last error.

    body  {"type": "posts.create", "timestamp": "...", "data": {"collection", "event",
           "id", "doc" (null after a delete), "change_id"}}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from alyx_server.config.webhooks import WebhookTarget
from alyx_server.db import Database
from alyx_server.db.documents import get_doc
from alyx_server.errors import AlyxError, NotFound, ValidationError
from alyx_server.functions.job_manifest import JobOptions
from alyx_server.jobs import Job, JobFailed, JobKind, JobQueue
from alyx_server.jobs.store import enqueue_job
from alyx_server.schema.system_tables import CHANGES_TABLE, WEBHOOK_CURSOR_TABLE, WEBHOOK_DELIVERIES_TABLE
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock, format_timestamp
from alyx_server.tools.waits import wait_event
from alyx_server.webhooks.delivery import TargetRefused, WebhookClient
from alyx_server.webhooks.signing import delivery_headers, new_message_id
from alyx_server.webhooks.targets import Webhook, compile_webhook, read_stored

__all__ = ["BATCH", "DELIVERY_JOB", "WebhookService", "list_deliveries"]

IDLE_MOVE = 5.0
"""Seconds between moves of the cursor while no webhook exists."""

log = logging.getLogger("alyx.webhooks")

BATCH = 500
DELIVERY_JOB = "_webhook"
_EVENTS = {"INSERT": "create", "UPDATE": "update", "DELETE": "delete"}
_DELIVERY_COLUMNS = (
    "id, webhook, event, change_id, status, attempts, response_status, response_ms, last_error, "
    "created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class _Planned:
    webhook: str
    event: str
    change_id: int
    body: bytes


class WebhookService:
    """See the module docstring. `start()` subscribes to the feed and runs the dispatcher."""

    def __init__(
        self,
        database: Callable[[], Database],
        queue: JobQueue,
        configured: tuple[WebhookTarget, ...],
        client: WebhookClient,
        *,
        max_attempts: int,
        concurrency: int,
        poll_interval: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._database = database
        self.queue = queue
        self.client = client
        self.clock = clock
        self.poll_interval = poll_interval
        self.configured = {t.name: compile_webhook(t, "config") for t in configured}
        self._stored: dict[tuple[str, str, str, str], Webhook] = {}
        self._wake = asyncio.Event()
        self._idle = False  # no webhook at the last look
        self._idle_until = 0.0  # (clock seconds) until then, an idle dispatcher reads nothing
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # Retries: 2s doubled up to 1h, so 8 attempts span about 4 minutes.
        options = JobOptions(max_attempts=max_attempts, backoff=2.0, max_backoff=3600.0,
                             visibility_timeout=client.timeout + 30.0)  # fmt: skip
        queue.add_kind(JobKind(DELIVERY_JOB, options, self._deliver, local_limit=concurrency))

    # -- webhooks ------------------------------------------------------------------------------
    def webhooks(self, conn: sqlite3.Connection) -> dict[str, Webhook]:
        """alyx.yaml's webhooks and the stored ones (compiled once per version of each)."""
        out = dict(self.configured)
        for target in read_stored(conn):
            if target.name in out:
                continue
            key = (target.name, target.url, target.secret, repr(target.events))
            hook = self._stored.get(key)
            if hook is None:
                try:
                    hook = self._stored[key] = compile_webhook(target, "api")
                except AlyxError as e:
                    log.error("webhook %s skipped: %s", target.name, e)
                    continue
            out[target.name] = hook
        return out

    def added(self) -> None:
        """A webhook was added through this process: look again now, not in IDLE_MOVE."""
        self._idle_until = 0.0
        self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        db = self._database()
        self._unsubscribe = db.feed.subscribe(lambda _event: self._wake.set())
        self._task = asyncio.get_running_loop().create_task(self._run_forever(), name="alyx-webhooks")

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()

    async def _run_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                more = await self.dispatch_once()
            except asyncio.CancelledError:
                raise
            except AlyxError as e:
                if e.code != "UNAVAILABLE":
                    log.error("webhooks: dispatching failed: %s", e)
                more = False
            except Exception:
                log.exception("webhooks: dispatching failed")
                more = False
            if not more:
                await wait_event(self._wake, self.poll_interval)

    # -- dispatch ------------------------------------------------------------------------------
    async def dispatch_once(self) -> bool:
        """Turn one batch of changes into deliveries; True when more may be waiting.

        With no webhook at all, the cursor only follows the change log every IDLE_MOVE
        seconds (one small write then, none per commit): a server without webhooks pays
        nothing per write. A webhook added through the admin API starts at the newest
        change (api/webhooks.py), so it never receives what came before it.
        """
        if self._idle and self.clock.now().timestamp() < self._idle_until:
            return False
        db = self._database()
        cursor, planned, last = await db.read(self._plan)
        if last == cursor:
            return False
        now = self.clock.now().timestamp()
        attempts = self.queue.kinds[DELIVERY_JOB].options.max_attempts

        def commit(conn: sqlite3.Connection) -> bool:
            moved = conn.execute(
                f"UPDATE {WEBHOOK_CURSOR_TABLE} SET change_id = ? WHERE id = 1 AND change_id = ?",
                (last, cursor),
            ).rowcount
            if moved != 1:
                return False  # another process dispatched this batch
            for plan in planned:
                msg_id = new_message_id()
                conn.execute(
                    f"INSERT INTO {WEBHOOK_DELIVERIES_TABLE} (id, webhook, event, change_id, body, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (msg_id, plan.webhook, plan.event, plan.change_id, plan.body.decode(), now, now),
                )
                enqueue_job(conn, DELIVERY_JOB, {"delivery": msg_id}, now=now, max_attempts=attempts)
            return True

        if await db.write(commit) and planned:
            self.queue.wake()
        if self._idle:
            self._idle_until = self.clock.now().timestamp() + IDLE_MOVE
            return False
        return True

    def _plan(self, conn: sqlite3.Connection) -> tuple[int, list[_Planned], int]:
        row = conn.execute(f"SELECT change_id FROM {WEBHOOK_CURSOR_TABLE} WHERE id = 1").fetchone()
        cursor = int(row[0]) if row is not None else 0
        hooks = list(self.webhooks(conn).values())
        self._idle = not hooks
        if self._idle and self.clock.now().timestamp() < self._idle_until:
            return cursor, [], cursor
        changes = conn.execute(
            f"SELECT id, collection, operation, doc_id FROM {CHANGES_TABLE} WHERE id > ? ORDER BY id LIMIT ?",
            (cursor, BATCH),
        ).fetchall()
        if not changes:
            return cursor, [], cursor
        db = self._database()
        planned: list[_Planned] = []
        for change_id, collection_name, operation, doc_id in changes:
            event = _EVENTS[operation]
            wanting = [h for h in hooks if h.wants(collection_name, event)]
            if not wanting:
                continue
            try:
                collection = db.collection(collection_name)
            except NotFound:
                continue  # a system table, or a collection dropped since
            doc = None if event == "delete" else get_doc(conn, collection, doc_id)
            at = format_timestamp(self.clock.now())
            data = {
                "collection": collection_name,
                "event": event,
                "id": doc_id,
                "doc": doc,
                "change_id": change_id,
            }
            body = orjson.dumps({"type": f"{collection_name}.{event}", "timestamp": at, "data": data})
            for hook in wanting:
                if hook.matches(collection_name, event, doc):
                    planned.append(_Planned(hook.name, event, change_id, body))
        return cursor, planned, int(changes[-1][0])

    # -- delivery ------------------------------------------------------------------------------
    async def _deliver(self, job: Job) -> Any:
        msg_id = job.payload.get("delivery") if isinstance(job.payload, dict) else None
        if not isinstance(msg_id, str):
            raise ValidationError("a _webhook job needs {delivery: id}")
        db = self._database()
        row = await db.read(
            lambda conn: conn.execute(
                f"SELECT webhook, body FROM {WEBHOOK_DELIVERIES_TABLE} WHERE id = ?", (msg_id,)
            ).fetchone()
        )
        if row is None:
            return {"skipped": "the delivery was purged"}
        name, body = row[0], row[1].encode()
        hook = (await db.read(self.webhooks)).get(name)
        if hook is None:
            await self._record(msg_id, "failed", None, None, f"webhook {name} no longer exists")
            return {"skipped": "the webhook was removed"}
        timestamp = int(self.clock.now().timestamp())
        headers = delivery_headers(hook.target.secret, msg_id, timestamp, body)
        try:
            attempt = await self.client.post(hook.target.url, body, headers)
        except TargetRefused as e:
            await self._record(msg_id, "refused", None, None, str(e))
            log.warning("webhook %s: delivery %s refused: %s", name, msg_id, e)
            return {"refused": str(e)}
        if attempt.delivered:
            await self._record(msg_id, "delivered", attempt.status, attempt.duration_ms, None)
            return {"status": attempt.status}
        final = job.attempts >= job.max_attempts
        await self._record(
            msg_id, "failed" if final else "pending", attempt.status, attempt.duration_ms, attempt.error
        )
        raise JobFailed(attempt.error or "the delivery failed")

    async def _record(
        self, msg_id: str, status: str, http: int | None, duration: float | None, error: str | None
    ) -> None:
        now = self.clock.now().timestamp()
        await self._database().write(
            lambda conn: conn.execute(
                f"UPDATE {WEBHOOK_DELIVERIES_TABLE} SET status = ?, attempts = attempts + 1, "
                "response_status = ?, response_ms = ?, last_error = ?, updated_at = ? WHERE id = ?",
                (status, http, duration, error, now, msg_id),
            )
        )


def list_deliveries(
    conn: sqlite3.Connection, *, webhook: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The delivery log, newest first."""
    where, params = ("WHERE webhook = ?", (webhook,)) if webhook else ("", ())
    cursor = conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM {WEBHOOK_DELIVERIES_TABLE} {where} "
        "ORDER BY created_at DESC, id LIMIT ?",
        (*params, limit),
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
