"""`FunctionService`: the functions of one project, their pools, and invocation.

    invoke(name, input, auth, request)
        404 FUNCTION_NOT_FOUND    no such function
        403 FORBIDDEN             no rule and not an admin, or the rule says no
        400 VALIDATION_ERROR      input does not fit the manifest (before any dispatch)
        503 FUNCTIONS_BUSY        max_instances running and max_queue waiting
        504 FUNCTION_TIMEOUT      no answer in time: the worker is killed
        500 INVOCATION_ERROR      the worker crashed, ran out of memory or cannot load
        -> InvocationResult       success true with output, or false with the error a
                                  function raised (answered 200)
    recent_invocations(name)      this process's last `RECENT_INVOCATIONS` calls of `name`
                                  that ran (or timed out, crashed, found no worker), newest
                                  first: {id, time, function, status, success, duration_ms,
                                  user, logs, error}; kept in memory only, so a restart
                                  forgets them and each worker process has its own

Each invocation gets an internal API token (`TokenRegistry`) revoked when it ends.
A recorded invocation keeps at most `KEPT_LOG_LINES` log lines of `KEPT_LOG_CHARS`
characters each, so the record of a chatty function stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alyx_server.errors import AlyxError, Forbidden, FunctionError, NotFound, ValidationError
from alyx_server.functions.backend import Backend
from alyx_server.functions.manifest import Discovery, FunctionSpec
from alyx_server.functions.pool import FunctionPool, PoolLimits
from alyx_server.functions.tokens import Grant, TokenRegistry
from alyx_server.functions.worker import FunctionLoadFailed, Worker, WorkerCrashed, WorkerTimeout
from alyx_server.rules import Auth, RequestInfo
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock, now_timestamp

__all__ = [
    "KEPT_LOG_CHARS",
    "KEPT_LOG_LINES",
    "RECENT_INVOCATIONS",
    "FunctionService",
    "FunctionStats",
    "InvocationResult",
    "RuleCheck",
    "RuleCompiler",
]

log = logging.getLogger("alyx.functions")

RuleCheck = Callable[[Auth | None, RequestInfo, Mapping[str, Any]], bool]
"""A compiled function rule: (auth, request, input) -> allowed."""
RuleCompiler = Callable[[FunctionSpec], RuleCheck]
"""Compiles a manifest's rule (raises RuleError naming the manifest and column)."""

RECENT_INVOCATIONS = 50
"""How many invocations of each function a process remembers (`recent_invocations`)."""
KEPT_LOG_LINES = 100
KEPT_LOG_CHARS = 2000


@dataclass(slots=True)
class FunctionStats:
    invocations: int = 0
    succeeded: int = 0
    failed: int = 0
    timeouts: int = 0
    crashes: int = 0
    total_ms: float = 0.0
    last_invoked: float | None = None

    def to_dict(self) -> dict[str, Any]:
        finished = self.succeeded + self.failed
        return {
            "invocations": self.invocations,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "timeouts": self.timeouts,
            "crashes": self.crashes,
            "mean_ms": round(self.total_ms / finished, 3) if finished else None,
        }


@dataclass(frozen=True, slots=True)
class InvocationResult:
    success: bool
    output: Any = None
    error: dict[str, Any] | None = None
    logs: list[Any] = field(default_factory=list)
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"success": self.success}
        if self.success:
            out["output"] = self.output
        else:
            out["error"] = self.error
        out["logs"] = self.logs
        out["duration_ms"] = self.duration_ms
        return out


class FunctionService:
    """See the module docstring. `start()` warms the pools; `close()` stops every worker."""

    def __init__(
        self,
        discovery: Discovery,
        backend: Backend,
        limits: PoolLimits,
        *,
        compile_rule: RuleCompiler | None = None,
        tokens: TokenRegistry | None = None,
        show_stacks: bool = False,
        start_timeout: float = 15.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.limits = limits
        self.tokens = tokens if tokens is not None else TokenRegistry()
        self.show_stacks = show_stacks
        self.start_timeout = start_timeout
        self.specs: dict[str, FunctionSpec] = dict(discovery.functions)
        self.problems: dict[str, str] = {p.name: p.message for p in discovery.problems}
        self.stats: dict[str, FunctionStats] = {name: FunctionStats() for name in self.specs}
        self.recent: dict[str, deque[dict[str, Any]]] = {}
        self._rules: dict[str, RuleCheck] = {}
        self._compile_rule = compile_rule
        self.pools = {name: self._pool(spec) for name, spec in self.specs.items()}
        self._reaper: asyncio.Task[None] | None = None
        self._retiring: dict[asyncio.Task[None], FunctionPool] = {}
        self._compile_rules()

    def _pool(self, spec: FunctionSpec) -> FunctionPool:
        async def start() -> Worker:
            return await self.backend.start_worker(spec, timeout=self.start_timeout)

        return FunctionPool(spec.name, start, self.limits)

    def _compile_rules(self) -> None:
        for name, spec in list(self.specs.items()):
            if spec.rule is None or self._compile_rule is None:
                continue
            try:
                self._rules[name] = self._compile_rule(spec)
            except AlyxError as e:
                self._fail(name, str(e))

    def _fail(self, name: str, message: str) -> None:
        # Not logged here: `start`, `reload`'s caller and `invoke` log each problem once.
        self.problems[name] = message
        self.specs.pop(name, None)
        pool = self.pools.pop(name, None)
        if pool is not None:
            task = asyncio.get_running_loop().create_task(pool.close())
            task.add_done_callback(lambda _t: None)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Report problems and missing isolation, warm every pool, start the idle reaper."""
        for warning in self.backend.isolation_warnings():
            log.warning("functions: %s", warning)
        for message in self.problems.values():
            log.error("function not served: %s", message)
        results = await asyncio.gather(*(p.warm() for p in self.pools.values()), return_exceptions=True)
        for name, result in zip(list(self.pools), results, strict=True):
            if isinstance(result, FunctionLoadFailed):
                self._fail(name, str(result))
                log.error("function not served: %s", self.problems[name])
            elif isinstance(result, BaseException):
                log.warning("function %s: no warm worker: %s", name, result)
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        period = max(0.05, min(self.limits.idle_timeout / 2, 5.0))
        while True:
            await asyncio.sleep(period)
            for pool in list(self.pools.values()):
                await pool.reap()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        retiring = dict(self._retiring)
        for task, pool in retiring.items():
            # A drain still waiting for its calls is cut short; one already stopping its
            # workers finishes (cancelled there, a worker's control group would be left).
            if not pool.closing:
                task.cancel()
        pools = [*self.pools.values(), *retiring.values()]
        await asyncio.gather(*(p.close() for p in pools), *retiring, return_exceptions=True)
        await self.backend.close()

    async def reload(self, discovery: Discovery, names: Iterable[str] | None = None) -> dict[str, str | None]:
        """Take `names` (None: every function) from a fresh discovery (`alyx dev`, deploys).

        The cut-over never fails a call: each function's new pool is warmed on its new
        code (as many workers as the old pool runs, at least min_warm) while the old pool
        keeps serving; then, with no await in between, new calls
        go to the new pool; the old pool drains (the calls it already took, running or
        queued, finish on the old code) and its workers stop. A function whose new code
        cannot load gets its problem instead; a name no longer discovered is gone.
        Returns {name: None when served, else the problem}.
        """
        found = {p.name: p.message for p in discovery.problems}
        every = {*discovery.functions, *found, *self.specs, *self.problems}
        wanted = set(names) if names is not None else every
        fresh = {name: self._pool(spec) for name in sorted(wanted) if (spec := discovery.functions.get(name))}
        # As many workers as the old pool has now (at least min_warm), started one after
        # another: the load it carries moves over warm. Warming only one and growing after
        # the cut-over was measured: the deploy is shorter, but the calls right after the
        # switch queue on the one worker while the next starts, and the p99 is worse.
        sizes = {name: pool.total for name, pool in self.pools.items()}
        replaced = [pool for name, pool in self.pools.items() if name in wanted]
        for pool in replaced:  # a pool about to be replaced does not grow meanwhile
            pool.growing = False
        try:
            results = await asyncio.gather(
                *(p.warm(sizes.get(name), one_by_one=True) for name, p in fresh.items()),
                return_exceptions=True,
            )
        except BaseException:
            for pool in replaced:
                pool.growing = True
            raise
        cannot = {
            name: str(result)
            for name, result in zip(list(fresh), results, strict=True)
            if isinstance(result, FunctionLoadFailed)
        }
        # The cut-over: from here to the end of the loop nothing awaits.
        for name in wanted:
            old_spec = self.specs.pop(name, None)
            old = self.pools.pop(name, None)
            if old is not None:
                self._retire(old, (old_spec.timeout if old_spec is not None else 30.0) + 5.0)
            self.problems.pop(name, None)
            self._rules.pop(name, None)
            spec = discovery.functions.get(name)
            if spec is None or name in cannot:
                if name in fresh:
                    self._retire(fresh[name], 0.0)
                if name in cannot or name in found:
                    self.problems[name] = cannot.get(name) or found[name]
                continue
            self.specs[name] = spec
            self.stats.setdefault(name, FunctionStats())
            self.pools[name] = fresh[name]
        self._compile_rules()
        known = {*self.specs, *self.problems}
        return {name: self.problems.get(name) for name in sorted(wanted) if name in known}

    def _retire(self, pool: FunctionPool, timeout: float) -> None:
        """Drain a replaced pool in the background; `close()` ends the ones still draining."""
        task = asyncio.get_running_loop().create_task(pool.drain(timeout))
        self._retiring[task] = pool
        task.add_done_callback(lambda t: self._retiring.pop(t, None))

    # -- invocation --------------------------------------------------------------------------
    def authorize(self, name: str, data: Any, auth: Auth | None, request: RequestInfo) -> dict[str, Any]:
        """The checked input of an allowed call (404, 403, 400 or 500 otherwise)."""
        spec = self.specs.get(name)
        if spec is None:
            raise self._missing(name, auth)
        is_admin = auth is not None and auth.get("role") == "admin"
        if spec.rule is None and not is_admin:
            raise Forbidden(f"only admins may call function {name}: its manifest has no rule")
        if data is None:
            data = {}
        checked = spec.input.check(data) if spec.input is not None else data
        if not isinstance(checked, dict):
            raise ValidationError("input must be a JSON object")
        if spec.rule is not None and not is_admin:
            rule = self._rules.get(name)
            if rule is None:
                raise Forbidden(
                    f"function {name} has a rule, and this server cannot evaluate function rules; "
                    "only admins may call it"
                )
            if not rule(auth, request, checked):
                raise Forbidden(f"the rule of function {name} does not allow this call")
        return checked

    def _missing(self, name: str, auth: Auth | None) -> AlyxError:
        problem = self.problems.get(name)
        if problem is None:
            return NotFound(f"no function named {name!r}", code="FUNCTION_NOT_FOUND")
        if self.show_stacks or (auth is not None and auth.get("role") == "admin"):
            return FunctionError(f"function {name} cannot load: {problem}")
        return FunctionError(f"function {name} cannot load; the server log says why")

    async def invoke(
        self, name: str, data: Any, auth: Auth | None, request: RequestInfo, *, request_id: str | None = None
    ) -> InvocationResult:
        """Authorize, check the input, run on a warm worker; see the module docstring.
        `request_id` names the call in `recent_invocations`."""
        checked = self.authorize(name, data, auth, request)
        spec = self.specs[name]
        stats = self.stats[name]
        stats.invocations += 1
        stats.last_invoked = time.time()
        token = self.tokens.issue(Grant(name, auth, spec.privileged, request))
        at = now_timestamp(self.clock)
        started = time.perf_counter()
        try:
            answer = await self._run(spec, checked, auth, token)
        except FunctionLoadFailed as e:
            if self.specs.get(name) is spec:  # not a call the old code took before a reload
                self._fail(name, str(e))
                log.error("function not served: %s", self.problems[name])
            failed = FunctionError(f"function {name} cannot load: {e}")
            self._remember(name, request_id, at, auth, started, failed)
            raise failed from e
        except AlyxError as e:
            self._remember(name, request_id, at, auth, started, e)
            raise
        finally:
            self.tokens.revoke(token)
            stats.total_ms += (time.perf_counter() - started) * 1000
        duration = round((time.perf_counter() - started) * 1000, 3)
        result = self._result(spec, stats, answer, duration)
        self._remember(name, request_id, at, auth, started, result)
        return result

    def _remember(
        self,
        name: str,
        request_id: str | None,
        at: str,
        auth: Auth | None,
        started: float,
        outcome: InvocationResult | AlyxError,
    ) -> None:
        """Keep one invocation in `name`'s ring (see `recent_invocations`)."""
        if isinstance(outcome, InvocationResult):
            status, success, logs, error = 200, outcome.success, outcome.logs, outcome.error
            duration = outcome.duration_ms
        else:
            status, success, logs = outcome.status, False, []
            error = {"code": outcome.code, "message": outcome.message}
            duration = round((time.perf_counter() - started) * 1000, 3)
        user = None if auth is None else auth.get("email") or auth.get("name") or auth.get("id")
        ring = self.recent.setdefault(name, deque(maxlen=RECENT_INVOCATIONS))
        ring.append(
            {
                "id": request_id,
                "time": at,
                "function": name,
                "status": status,
                "success": success,
                "duration_ms": duration,
                "user": None if user is None else str(user),
                "logs": _kept_logs(logs),
                "error": error,
            }
        )

    def recent_invocations(self, name: str | None = None) -> list[dict[str, Any]]:
        """This process's remembered invocations of `name` (None: of every function), newest first."""
        rings = [self.recent.get(name, ())] if name is not None else list(self.recent.values())
        out = [record for ring in rings for record in reversed(ring)]
        out.sort(key=lambda r: str(r["time"]), reverse=True)
        return out

    async def _run(self, spec: FunctionSpec, data: dict[str, Any], auth: Auth | None, token: str) -> Any:
        request = {
            "request_id": uuid.uuid4().hex,
            "function": spec.name,
            "input": data,
            "context": {
                "auth": dict(auth) if auth is not None else None,
                "env": dict(spec.env),
                "alyx_url": "",  # the worker fills in the address it sees
                "internal_token": token,
            },
        }
        pool = self.pools[spec.name]
        stats = self.stats[spec.name]
        try:
            return await pool.invoke(request, spec.timeout)
        except WorkerTimeout as e:
            stats.timeouts += 1
            raise AlyxError(str(e), code="FUNCTION_TIMEOUT", status=504) from e
        except WorkerCrashed as e:
            stats.crashes += 1
            limit = f" (limit {spec.memory // (1024 * 1024)}MiB)" if e.out_of_memory else ""
            raise FunctionError(f"{e}{limit}; a fresh worker takes its place") from e

    def _result(
        self, spec: FunctionSpec, stats: FunctionStats, answer: dict[str, Any], duration: float
    ) -> InvocationResult:
        raw_logs = answer.get("logs")
        logs: list[Any] = raw_logs if isinstance(raw_logs, list) else []
        if answer.get("success") is True:
            output = answer.get("output")
            if spec.output is not None:
                try:
                    output = spec.output.check(output)
                except ValidationError as e:
                    stats.failed += 1
                    invalid = {"code": "INVALID_OUTPUT", "message": e.message, "details": e.details}
                    return InvocationResult(False, error=invalid, logs=logs, duration_ms=duration)
            stats.succeeded += 1
            return InvocationResult(True, output=output, logs=logs, duration_ms=duration)
        stats.failed += 1
        raw = answer.get("error") if isinstance(answer.get("error"), dict) else {}
        assert isinstance(raw, dict)
        error: dict[str, Any] = {
            "code": str(raw.get("code") or "FUNCTION_ERROR"),
            "message": str(raw.get("message") or "the function failed"),
            "details": raw.get("details") if isinstance(raw.get("details"), list) else [],
        }
        if raw.get("stack"):
            log.info("function %s failed: %s", spec.name, raw["stack"])
            if self.show_stacks:
                error["stack"] = raw["stack"]
        return InvocationResult(False, error=error, logs=logs, duration_ms=duration)

    # -- listing -----------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """Every function with its runtime, state and statistics (for /api/admin/functions)."""
        out: list[dict[str, Any]] = []
        for name, spec in sorted(self.specs.items()):
            pool = self.pools[name]
            out.append(
                {
                    "name": name,
                    "runtime": spec.runtime,
                    "state": "ready" if pool.total else "cold",
                    "instances": pool.state,
                    "timeout": spec.timeout,
                    "memory": spec.memory,
                    "network": spec.network,
                    "privileged": spec.privileged,
                    "rule": spec.rule,
                    "stats": self.stats[name].to_dict(),
                    "workers_started": pool.started,
                    "workers_replaced": pool.replaced,
                }
            )
        for name, message in sorted(self.problems.items()):
            out.append({"name": name, "state": "failed", "error": message})
        return out


def _kept_logs(logs: list[Any]) -> list[Any]:
    """At most KEPT_LOG_LINES lines, each message cut at KEPT_LOG_CHARS characters."""
    kept: list[Any] = []
    for line in logs[:KEPT_LOG_LINES]:
        if isinstance(line, dict) and isinstance(line.get("message"), str):
            message = line["message"]
            if len(message) > KEPT_LOG_CHARS:
                line = {**line, "message": message[:KEPT_LOG_CHARS] + " …"}
        elif isinstance(line, str) and len(line) > KEPT_LOG_CHARS:
            line = line[:KEPT_LOG_CHARS] + " …"
        kept.append(line)
    if len(logs) > KEPT_LOG_LINES:
        kept.append({"level": "info", "message": f"… {len(logs) - KEPT_LOG_LINES} more lines not kept"})
    return kept
