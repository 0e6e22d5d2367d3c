"""`JobQueue`: enqueue jobs and run the due ones, in every server process.

    enqueue(name, payload, delay=0, dedupe_key=None) -> EnqueueResult(id, created, state)
        404 JOB_NOT_FOUND     no job of that name (a function without `job:` is not one)
        400 VALIDATION_ERROR  a payload that is not a JSON object, a negative delay
    start() / close()         the runner task of this process
    wake()                    look for due jobs now (enqueue does it in this process)

Each process serving the database runs one runner. It claims due jobs (store.claim_jobs,
one `UPDATE ... RETURNING` per job name in one write) up to what it can run at once
(`JobKind.local_limit`, and `concurrency` across processes), runs each on a task, and
records the outcome: done, queued again after an exponential backoff with jitter, or dead
after `max_attempts`. Nothing lives only in memory: a process killed mid-run leaves its
jobs `running` with a lease, and whichever process claims after the lease ends runs them
again (at least once). When idle it sleeps until the next job comes due or
`poll_interval` passes, whichever is sooner (a job enqueued by another process is found
within that interval), or until `wake()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alyx_server.db import Database
from alyx_server.errors import AlyxError, NotFound, ValidationError
from alyx_server.functions.job_manifest import JobOptions
from alyx_server.jobs.store import (
    ClaimedJob,
    Job,
    backoff_delay,
    claim_jobs,
    complete_job,
    enqueue_job,
    fail_job,
    job_state,
    next_due,
)
from alyx_server.tools.durations import parse_duration
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock
from alyx_server.tools.waits import wait_event

__all__ = ["MAX_DEDUPE_KEY", "EnqueueResult", "JobFailed", "JobKind", "JobQueue"]

log = logging.getLogger("alyx.jobs")

MAX_DEDUPE_KEY = 200
CLOSE_GRACE = 5.0
"""Seconds `close()` lets the runs in flight finish before it cancels them (their leases
then end and another process, or the next start, runs them again)."""


class JobFailed(Exception):
    """A run that failed in an expected way (the function returned an error); no traceback."""


@dataclass(frozen=True, slots=True)
class JobKind:
    """A name the queue can run: its options and how to run one job of it."""

    name: str
    options: JobOptions
    run: Callable[[Job], Awaitable[Any]]
    local_limit: int = 4
    """Most runs of this kind at once in this process (a function's pool size)."""
    check_payload: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Checks (and completes with defaults) a payload at enqueue: ValidationError if bad."""


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """The queued job: `created` false when a queued or running job of the same name held
    the dedupe key (that job comes back, with its `state`: queued or running)."""

    id: str
    created: bool
    state: str = "queued"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "state": self.state}


class JobQueue:
    """See the module docstring. `source`, when given, is asked for the function kinds at
    each pass (a reload of the functions changes them); `add_kind` adds fixed ones."""

    def __init__(
        self,
        database: Callable[[], Database],
        *,
        clock: Clock = SYSTEM_CLOCK,
        poll_interval: float = 0.5,
        rand: Callable[[], float] = random.random,
        source: Callable[[], Mapping[str, JobKind]] | None = None,
    ) -> None:
        self._source = source
        self._database = database
        self.clock = clock
        self.poll_interval = poll_interval
        self._rand = rand
        self._fixed: dict[str, JobKind] = {}
        self._inflight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self.clock.now().timestamp()

    @property
    def kinds(self) -> dict[str, JobKind]:
        """Every kind of job this process runs now."""
        if self._source is None:
            return self._fixed
        return {**self._source(), **self._fixed}

    def add_kind(self, kind: JobKind) -> None:
        self._fixed[kind.name] = kind
        self.wake()

    # -- enqueue ---------------------------------------------------------------------------
    async def enqueue(
        self, name: str, payload: Any = None, *, delay: float | str = 0.0, dedupe_key: str | None = None
    ) -> EnqueueResult:
        """Queue one job of `name` (see the module docstring); `delay` in seconds or as a
        duration such as "5m"."""
        kind = self.kinds.get(name)
        if kind is None:
            raise NotFound(
                f"no job named {name!r}: a job is a function whose manifest has a job: section",
                code="JOB_NOT_FOUND",
            )
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise ValidationError("a job's payload must be a JSON object")
        if kind.check_payload is not None:
            payload = kind.check_payload(payload)
        if isinstance(delay, str):
            try:
                delay = parse_duration(delay)
            except ValueError as e:
                raise ValidationError(f"delay {delay!r} is not a duration such as 30s or 5m") from e
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay < math.inf:
            raise ValidationError("delay must be a number of seconds, 0 or more, or a duration such as 5m")
        if dedupe_key is not None and (
            not isinstance(dedupe_key, str) or not 0 < len(dedupe_key) <= MAX_DEDUPE_KEY
        ):
            raise ValidationError(f"dedupe_key must be a string of 1 to {MAX_DEDUPE_KEY} characters")
        now, attempts = self.now(), kind.options.max_attempts

        def write(conn: sqlite3.Connection) -> EnqueueResult:
            job_id, created = enqueue_job(
                conn, name, payload, now=now, delay=float(delay), max_attempts=attempts, dedupe_key=dedupe_key
            )
            if created:
                return EnqueueResult(job_id, True)
            return EnqueueResult(job_id, False, job_state(conn, job_id))

        result = await self._database().write(write)
        if result.created and delay == 0:
            self.wake()
        return result

    # -- runner ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run_forever(), name="alyx-jobs")

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _run_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                claimed = await self.run_due()
            except asyncio.CancelledError:
                raise
            except AlyxError as e:
                if e.code != "UNAVAILABLE":  # the database is still migrating: wait quietly
                    log.error("jobs: claiming due jobs failed: %s", e)
                claimed = 0
            except Exception:
                log.exception("jobs: claiming due jobs failed; trying again in %ss", self.poll_interval)
                claimed = 0
            if claimed:
                continue
            await self._idle()

    async def _idle(self) -> None:
        wait = self.poll_interval
        names = tuple(self.kinds)
        if names:
            try:
                due = await self._database().read(lambda conn: next_due(conn, names))
            except AlyxError:
                due = None
            except Exception:
                log.exception("jobs: reading the next due job failed")
                due = None
            if due is not None:
                wait = max(0.0, min(wait, due - self.now()))
        await wait_event(self._wake, wait)

    async def run_due(self) -> int:
        """Claim what this process may run now and start each run; the number claimed."""
        kinds, now = self.kinds, self.now()
        wanted = {
            name: kind.local_limit - self._inflight.get(name, 0)
            for name, kind in kinds.items()
            if kind.local_limit > self._inflight.get(name, 0)
        }
        if not wanted:
            return 0

        def claim(conn: sqlite3.Connection) -> list[tuple[JobKind, ClaimedJob]]:
            out: list[tuple[JobKind, ClaimedJob]] = []
            for name, limit in wanted.items():
                kind = kinds[name]
                options = kind.options
                for job in claim_jobs(
                    conn, name, now=now, limit=limit,
                    visibility_timeout=options.visibility_timeout, concurrency=options.concurrency,
                ):  # fmt: skip
                    out.append((kind, job))
            return out

        claimed = await self._database().write(claim)
        loop = asyncio.get_running_loop()
        for kind, job in claimed:
            self._inflight[kind.name] = self._inflight.get(kind.name, 0) + 1
            task = loop.create_task(self._run_one(kind, job), name=f"alyx-job-{job.job.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def _run_one(self, kind: JobKind, claimed: ClaimedJob) -> None:
        job = claimed.job
        try:
            try:
                result = await kind.run(job)
            except JobFailed as e:
                await self._failed(kind, claimed, str(e))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("job %s (%s) raised", job.name, job.id)
                await self._failed(kind, claimed, f"{type(e).__name__}: {e}")
            else:
                now = self.now()
                kept = await self._database().write(lambda conn: complete_job(conn, claimed, result, now=now))
                if not kept:
                    log.warning(
                        "job %s (%s) finished after its lease ended; its outcome is not kept",
                        job.name,
                        job.id,
                    )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("jobs: recording the outcome of job %s (%s) failed", job.name, job.id)
        finally:
            self._inflight[kind.name] -= 1
            self.wake()

    async def _failed(self, kind: JobKind, claimed: ClaimedJob, error: str) -> None:
        job, options = claimed.job, kind.options
        delay = backoff_delay(job.attempts, options.backoff, options.max_backoff, self._rand)
        now = self.now()
        state = await self._database().write(
            lambda conn: fail_job(conn, claimed, error, now=now, delay=delay)
        )
        if state == "dead":
            log.warning("job %s (%s) is dead after %d attempts: %s", job.name, job.id, job.attempts, error)
        elif state == "queued":
            log.info(
                "job %s (%s) failed (attempt %d), next in %.1fs: %s",
                job.name,
                job.id,
                job.attempts,
                delay,
                error,
            )
