"""After-write hooks: `on: {collection, events, when}` runs a function after each commit.

Each hook reads `_alyx_changes` from its own cursor (`_alyx_hook_cursors.change_id`, in the
database), in id order, which is commit order. For each matching change it calls the
function with the event

    {"collection": "posts", "event": "create" | "update" | "delete", "id": <doc id>,
     "doc": {...} | null, "previous": {...} | null, "changed": [fields] | null,
     "user": {"id", "email", "role"} | null, "change_id": 42, "idempotency_key": "posts:42"}

and only once the call has returned moves the cursor past it, so delivery is at least
once: a process killed (even `kill -9`) between a call and the cursor's write calls it
again after the restart, with the same `change_id`; nothing is skipped. Events of one
hook are delivered one after another, so in commit order per document (and overall).

`doc` and `previous` come from `_alyx_change_docs` (capture.py); a change captured before
the hook existed (or between a migration and the next install of the triggers) gets the
current row as `doc` and no `previous`. `when`, CEL over `doc`, `previous`, `event` and
`user`, is compiled at load with the collection's field types; false skips the event.

A call that fails (the function raised, timed out or crashed) is retried after 0.2 s, 0.4 s,
... (at most `max_attempts` calls); then the event is counted as failed
(`_alyx_hook_cursors.failed`, `last_error`, the log) and the hook moves on.

Several processes may serve one database: each hook has a lease in its cursor row
(`lease_owner`, `lease_until`), taken and renewed by the process that runs it; the others
wait until it expires (a process that died), so one process at a time runs each hook. A
new hook starts at the end of the change log: it sees the writes after it first ran.

The cursor row also bounds pruning: change rows a hook has not handled are kept
(`db.changes.prune_changes`). A hook whose function is gone from the project loses its
cursor when a server next starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from alyx_server.db.changes import ChangeEvent
from alyx_server.db.codec import decode_row
from alyx_server.db.database import Database
from alyx_server.errors import AlyxError, FunctionError, RuleError
from alyx_server.functions.capture import decode_captured, install_capture
from alyx_server.functions.manifest import FunctionSpec
from alyx_server.functions.service import FunctionService
from alyx_server.functions.tokens import Grant
from alyx_server.functions.triggers import AfterHook
from alyx_server.functions.worker import FunctionLoadFailed, WorkerCrashed, WorkerTimeout
from alyx_server.rules import Auth, RequestInfo
from alyx_server.rules.compile_py import CompileEnv, Fn, Unsupported, compile_node, doc_value
from alyx_server.rules.load import HOOK_VARIABLES, check_hook_when, where_in_file
from alyx_server.rules.syntax import CelCompileError
from alyx_server.rules.values import CelEvalError, from_json
from alyx_server.schema.ddl import quote
from alyx_server.schema.model import Collection, Schema
from alyx_server.schema.system_tables import CHANGE_DOCS_TABLE, CHANGES_TABLE, HOOK_CURSORS_TABLE
from alyx_server.tools.processes import worker_name
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock
from alyx_server.tools.waits import wait_event

__all__ = [
    "HOOK_AUTH",
    "HookRunner",
    "call_function",
    "check_hooks",
    "claim_lease",
    "compile_when",
    "owner_name",
]

log = logging.getLogger("alyx.hooks")

_OPS = {"create": "INSERT", "update": "UPDATE", "delete": "DELETE"}
_EVENTS = {v: k for k, v in _OPS.items()}
HOOK_AUTH: Auth = {"id": "alyx:automation", "role": "admin"}
"""Who hooks and schedules run as: the system, with admin rights (the acting user is in the event)."""

WhenCheck = Callable[[dict[str, Any]], bool]


def owner_name() -> str:
    """This process's name in lease rows: worker, pid and a random part."""
    return f"{worker_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str | None) -> bool:
    """False when `owner` names a process of this machine that no longer runs (kill -9)."""
    if not owner:
        return False
    try:
        pid = int(owner.split(":")[1])
    except (IndexError, ValueError):
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_lease(
    conn: sqlite3.Connection, table: str, key: str, name: str, owner: str, now: float, lease: float
) -> float:
    """Take or renew the lease of row `name`: its expiry, or 0.0 while another live process
    holds it. A lease whose holder died on this machine is taken at once, not at expiry."""
    row = conn.execute(f"SELECT lease_owner, lease_until FROM {table} WHERE {key} = ?", (name,)).fetchone()
    if row is None:
        return 0.0
    held, until = row
    if held not in (None, owner) and until is not None and until >= now and owner_alive(held):
        return 0.0
    conn.execute(
        f"UPDATE {table} SET lease_owner = ?, lease_until = ? WHERE {key} = ?", (owner, now + lease, name)
    )
    return now + lease


def compile_when(spec: FunctionSpec, hook: AfterHook, collection: Collection) -> WhenCheck | None:
    """`when` as a check of the event; RuleError naming the manifest's line if it does not compile."""
    text = hook.when
    if text is None:
        return None
    fields = {f.name: f.type for f in collection.fields}
    env = CompileEnv(variables=HOOK_VARIABLES)
    node = check_hook_when(collection, text, hook.when_location, spec.name)
    try:
        fn: Fn = compile_node(node, env)
    except CelCompileError as e:
        message = (
            f"the when of function {spec.name}'s hook does not compile: {e.message} (CEL column {e.column})"
        )
        raise RuleError(message, where_in_file(hook.when_location, e)) from e
    except Unsupported:
        from alyx_server.rules.cel import FallbackProgram  # cel-python, loaded when needed

        fn = FallbackProgram(text)
    name = spec.name

    def check(event: dict[str, Any]) -> bool:
        doc, previous = event.get("doc"), event.get("previous")
        activation = {
            "doc": doc_value(doc, fields) if doc is not None else None,
            "previous": doc_value(previous, fields) if previous is not None else None,
            "event": event["event"],
            "user": from_json(event["user"]) if event.get("user") is not None else None,
        }
        try:
            return fn(activation) is True
        except CelEvalError as e:
            log.warning("hook %s: when failed on change %s: %s", name, event["change_id"], e.message)
            return False

    return check


def check_hooks(
    specs: Mapping[str, FunctionSpec], schema: Schema
) -> tuple[dict[str, WhenCheck | None], dict[str, str]]:
    """The `when` of every after-write hook, and the problems (unknown collection, bad CEL)."""
    checks: dict[str, WhenCheck | None] = {}
    problems: dict[str, str] = {}
    for name, spec in specs.items():
        for hook in (spec.on, spec.before):
            if hook is None:
                continue
            if schema.get(hook.collection) is None:
                where = hook.collection_location
                known = ", ".join(c.name for c in schema.collections) or "none"
                problems[name] = (
                    f"{where}: no collection {hook.collection!r} in schema.yaml (collections: {known})"
                )
        if spec.on is not None and name not in problems:
            collection = schema.get(spec.on.collection)
            assert collection is not None
            try:
                checks[name] = compile_when(spec, spec.on, collection)
            except RuleError as e:
                problems[name] = str(e)
    return checks, problems


async def call_function(
    service: FunctionService, spec: FunctionSpec, data: dict[str, Any], *, timeout: float | None = None
) -> Any:
    """Run `spec` on `data` as the system (no rule, no input check): its output, or an AlyxError
    (FUNCTION_TIMEOUT, INVOCATION_ERROR, or the function's own error as HOOK_FAILED)."""
    pool = service.pools.get(spec.name)
    if pool is None:
        raise FunctionError(
            f"function {spec.name} is not served: {service.problems.get(spec.name, 'unknown')}"
        )
    stats = service.stats[spec.name]
    stats.invocations += 1
    stats.last_invoked = time.time()
    info = RequestInfo("POST", "", service.clock.now(), {}, data)
    token = service.tokens.issue(Grant(spec.name, HOOK_AUTH, spec.privileged, info))
    request = {
        "request_id": uuid.uuid4().hex,
        "function": spec.name,
        "input": data,
        "context": {"auth": dict(HOOK_AUTH), "env": dict(spec.env), "alyx_url": "", "internal_token": token},
    }
    limit = spec.timeout if timeout is None else min(timeout, spec.timeout)
    started = time.perf_counter()
    try:
        answer = await pool.invoke(request, limit)
    except WorkerTimeout as e:
        stats.timeouts += 1
        raise AlyxError(str(e), code="FUNCTION_TIMEOUT", status=504) from e
    except WorkerCrashed as e:
        stats.crashes += 1
        raise FunctionError(f"{e}; a fresh worker takes its place") from e
    except FunctionLoadFailed as e:
        raise FunctionError(f"function {spec.name} cannot load: {e}") from e
    finally:
        service.tokens.revoke(token)
        stats.total_ms += (time.perf_counter() - started) * 1000
    if answer.get("success") is True:
        stats.succeeded += 1
        return answer.get("output")
    stats.failed += 1
    raw = answer.get("error") if isinstance(answer.get("error"), dict) else {}
    assert isinstance(raw, dict)
    message = str(raw.get("message") or "the function failed")
    raise AlyxError(message, code="HOOK_FAILED", status=502)


@dataclass(slots=True)
class _Hook:
    name: str
    collection: str
    ops: tuple[str, ...]
    when: WhenCheck | None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    delivered: int = 0
    failed: int = 0


class HookRunner:
    """Runs every after-write hook of `service` on `db`; see the module docstring."""

    def __init__(
        self,
        db: Database,
        service: FunctionService,
        schema: Callable[[], Schema],
        *,
        clock: Clock = SYSTEM_CLOCK,
        poll: float = 1.0,
        lease: float = 15.0,
        max_attempts: int = 5,
        batch: int = 200,
        on_start: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.db = db
        self.service = service
        self._schema = schema
        self.clock = clock
        self.poll = poll
        self.lease = lease
        self.max_attempts = max_attempts
        self.batch = batch
        self.owner = owner_name()
        self.on_start = on_start
        self.hooks: dict[str, _Hook] = {}
        self.problems: dict[str, str] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._schema_version: int | None = None
        self._closing = False

    @property
    def hooked(self) -> frozenset[str]:
        """The collections some hook watches (their writes carry the acting user)."""
        return frozenset(h.collection for h in self.hooks.values())

    def _now(self) -> float:
        return self.clock.now().timestamp()

    async def start(self) -> None:
        """Compile every hook, install the capturing triggers, start one task per hook."""
        checks, problems = check_hooks(self.service.specs, self._schema())
        self.problems = problems
        for message in problems.values():
            log.error("hook not run: %s", message)
        for name, spec in sorted(self.service.specs.items()):
            if spec.on is None or name in problems:
                continue
            ops = tuple(_OPS[e] for e in spec.on.events)
            self.hooks[name] = _Hook(name, spec.on.collection, ops, checks.get(name))
        known = set(self.service.specs) | set(self.service.problems)
        await self.db.write(lambda conn: self._prepare(conn, known))
        self._unsubscribe = self.db.feed.subscribe(self._on_change)
        loop = asyncio.get_running_loop()
        for hook in self.hooks.values():
            hook.task = loop.create_task(self._run(hook), name=f"alyx-hook-{hook.name}")

    def _prepare(self, conn: sqlite3.Connection, known: set[str]) -> None:
        install_capture(conn, self._schema().collections, self.hooked)
        self._schema_version = int(conn.execute("PRAGMA schema_version").fetchone()[0])
        latest = int(conn.execute(f"SELECT coalesce(max(id), 0) FROM {CHANGES_TABLE}").fetchone()[0])
        for name in self.hooks:
            conn.execute(
                f"INSERT OR IGNORE INTO {HOOK_CURSORS_TABLE} (hook, change_id, updated_at) VALUES (?, ?, ?)",
                (name, latest, self._now()),
            )
        for (name,) in conn.execute(f"SELECT hook FROM {HOOK_CURSORS_TABLE}").fetchall():
            if name not in known:
                conn.execute(f"DELETE FROM {HOOK_CURSORS_TABLE} WHERE hook = ?", (name,))

    async def close(self) -> None:
        self._closing = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        tasks = [h.task for h in self.hooks.values() if h.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.db.write(self._release)

    def _release(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"UPDATE {HOOK_CURSORS_TABLE} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
            (self.owner,),
        )

    def _on_change(self, event: ChangeEvent) -> None:
        for hook in self.hooks.values():
            if hook.collection == event.collection:
                hook.wake.set()

    # -- one hook ------------------------------------------------------------------------------
    async def _run(self, hook: _Hook) -> None:
        held_until = 0.0
        while not self._closing:
            try:
                if self._now() > held_until - self.lease / 3:
                    held_until = await self.db.write(lambda conn: self._claim(conn, hook.name))
                if held_until == 0.0:
                    await self._sleep(hook, self.poll)
                    continue
                await self._check_triggers()
                hook.wake.clear()
                rows = await self.db.read(lambda conn: self._pending(conn, hook))
                if not rows:
                    await self._sleep(hook, self.poll)
                    continue
                held_until = await self._deliver(hook, rows, held_until)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hook %s: retrying in %.1fs", hook.name, self.poll)
                held_until = 0.0
                await asyncio.sleep(self.poll)

    async def _sleep(self, hook: _Hook, seconds: float) -> None:
        await wait_event(hook.wake, seconds)

    async def _check_triggers(self) -> None:
        """Put the capturing triggers back if a migration recreated the plain ones."""
        version = await self.db.read(lambda conn: int(conn.execute("PRAGMA schema_version").fetchone()[0]))
        if version != self._schema_version:
            await self.db.write(
                lambda conn: self._prepare(conn, set(self.service.specs) | set(self.service.problems))
            )

    def _claim(self, conn: sqlite3.Connection, name: str) -> float:
        """Take or renew the hook's lease: its expiry, or 0.0 when another process holds it."""
        return claim_lease(conn, HOOK_CURSORS_TABLE, "hook", name, self.owner, self._now(), self.lease)

    def _pending(self, conn: sqlite3.Connection, hook: _Hook) -> list[tuple[Any, ...]]:
        marks = ", ".join("?" for _ in hook.ops)
        return conn.execute(
            f"SELECT c.id, c.operation, c.doc_id, c.changed_fields, d.doc, d.previous, d.actor, "
            f"d.change_id IS NOT NULL FROM {CHANGES_TABLE} c LEFT JOIN {CHANGE_DOCS_TABLE} d "
            "ON d.change_id = c.id "
            f"WHERE c.id > (SELECT change_id FROM {HOOK_CURSORS_TABLE} WHERE hook = ?) "
            f"AND c.collection = ? AND c.operation IN ({marks}) ORDER BY c.id LIMIT ?",
            (hook.name, hook.collection, *hook.ops, self.batch),
        ).fetchall()

    def _current(
        self, conn: sqlite3.Connection, collection: Collection, doc_id: Any
    ) -> dict[str, Any] | None:
        names = ", ".join(quote(f.name) for f in collection.fields)
        row = conn.execute(
            f"SELECT {names} FROM {quote(collection.name)} WHERE {quote(collection.primary.name)} = ?",
            (doc_id,),
        ).fetchone()
        if row is None:
            return None
        return decode_row(collection, row, internal=True)

    async def _event(self, hook: _Hook, row: tuple[Any, ...]) -> dict[str, Any]:
        change_id, op, doc_id, changed, doc_text, previous_text, actor, captured = row
        collection = self._schema().get(hook.collection)
        assert collection is not None
        doc = decode_captured(collection, doc_text)
        previous = decode_captured(collection, previous_text)
        if (not captured or (doc is None and doc_text is not None)) and op != "DELETE":
            doc = await self.db.read(lambda conn: self._current(conn, collection, doc_id))
        return {
            "collection": hook.collection,
            "event": _EVENTS[op],
            "id": doc_id,
            "doc": doc,
            "previous": previous,
            "changed": orjson.loads(changed) if changed is not None else None,
            "user": orjson.loads(actor) if actor is not None else None,
            "change_id": change_id,
            "idempotency_key": f"{hook.collection}:{change_id}",
        }

    async def _deliver(self, hook: _Hook, rows: list[tuple[Any, ...]], held_until: float) -> float:
        for row in rows:
            if self._closing:
                break
            event = await self._event(hook, row)
            error: str | None = None
            if hook.when is None or hook.when(event):
                error = await self._call(hook, event)
            if self._now() > held_until - self.lease / 3:
                held_until = await self.db.write(lambda conn: self._claim(conn, hook.name))
                if held_until == 0.0:
                    log.warning("hook %s: lost its lease; another process goes on", hook.name)
                    return 0.0
            change_id: int = row[0]

            def advance(
                conn: sqlite3.Connection, error: str | None = error, change_id: int = change_id
            ) -> bool:
                return self._advance(conn, hook.name, change_id, error)

            moved = await self.db.write(advance)
            if not moved:
                return 0.0
        return held_until

    async def _call(self, hook: _Hook, event: dict[str, Any]) -> str | None:
        """Call the function until it succeeds or `max_attempts` calls failed (then the error)."""
        delay = 0.2
        message = ""
        for attempt in range(1, self.max_attempts + 1):
            spec = self.service.specs.get(hook.name)
            if spec is None:
                message = f"function {hook.name} is not served"
            else:
                if self.on_start is not None:
                    self.on_start(hook.name, event)
                try:
                    await call_function(self.service, spec, {**event, "attempt": attempt})
                except AlyxError as e:
                    message = e.message
                else:
                    hook.delivered += 1
                    return None
            if attempt < self.max_attempts:
                log.warning(
                    "hook %s: change %s failed (%s); retrying", hook.name, event["change_id"], message
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        hook.failed += 1
        log.error(
            "hook %s: change %s failed %d times, skipped: %s",
            hook.name,
            event["change_id"],
            self.max_attempts,
            message,
        )
        return message

    def _advance(self, conn: sqlite3.Connection, name: str, change_id: int, error: str | None) -> bool:
        cursor = conn.execute(
            f"UPDATE {HOOK_CURSORS_TABLE} SET change_id = ?, updated_at = ?, "
            "delivered = delivered + (? IS NULL), failed = failed + (? IS NOT NULL), "
            "last_error = coalesce(?, last_error) WHERE hook = ? AND lease_owner = ? AND change_id < ?",
            (change_id, self._now(), error, error, error, name, self.owner, change_id),
        )
        return cursor.rowcount == 1

    # -- listing -------------------------------------------------------------------------------
    async def describe(self) -> dict[str, dict[str, Any]]:
        """Each hook's collection, events, cursor, counts and lease holder (admin API)."""

        def read(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            rows = conn.execute(
                f"SELECT hook, change_id, lease_owner, lease_until, delivered, failed, last_error "
                f"FROM {HOOK_CURSORS_TABLE}"
            ).fetchall()
            latest = int(conn.execute(f"SELECT coalesce(max(id), 0) FROM {CHANGES_TABLE}").fetchone()[0])
            out: dict[str, dict[str, Any]] = {}
            for name, change_id, owner, until, delivered, failed, last_error in rows:
                spec = self.service.specs.get(name)
                if spec is None or spec.on is None:
                    continue
                out[name] = {
                    "collection": spec.on.collection,
                    "events": list(spec.on.events),
                    "when": spec.on.when,
                    "cursor": change_id,
                    "behind": max(0, latest - change_id),
                    "delivered": delivered,
                    "failed": failed,
                    "last_error": last_error,
                    "runner": owner if until is not None and until >= self._now() else None,
                }
            return out

        return await self.db.read(read)
