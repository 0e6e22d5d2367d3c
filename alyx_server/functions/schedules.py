"""Schedules: `schedule: "*/5 * * * *"` (cron, in `timezone`) or `every: 30s` runs a function on time.

Each schedule has a row in `_alyx_schedules` (times in Unix seconds of the server's clock):
`next_run`, the last run's time, status, error and duration, counts, and a lease. Every
`tick` seconds each process looks at the rows that are due; the one that takes a due
row's lease runs it, the others pass, so one run at a time per schedule across processes.
`next_run` moves on only when the run has finished, so a process killed mid-run leaves the
row due: its lease (held by a dead process of this machine, or past its expiry) is taken
by the next tick of any process and the run happens again.

When a tick finds several fire times gone by (the server was down), `catch_up` decides:

    none   the missed runs are skipped; a run only happens if its time is recent
           (within `2 * tick + 5` seconds)
    one    one run for all of them (the default)
    all    one run per missed time, in order (at most `MAX_CATCH_UP`)

The function receives `{"schedule": "*/5 * * * *", "scheduled_at": "<time>", "missed": n,
"run": k}`: `scheduled_at` is the fire time the run stands for, `missed` how many earlier
ones were skipped. Its `auth` is the system's (admin rights). Tests drive `tick()` with a
`ManualClock` instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import zoneinfo
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from alyx_server.db.database import Database
from alyx_server.errors import AlyxError
from alyx_server.functions.hooks import call_function, claim_lease, owner_alive, owner_name
from alyx_server.functions.manifest import FunctionSpec
from alyx_server.functions.service import FunctionService
from alyx_server.functions.triggers import Schedule
from alyx_server.schema.system_tables import SCHEDULES_TABLE
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock, format_timestamp

__all__ = ["MAX_CATCH_UP", "Scheduler", "fire_times", "next_fire"]

log = logging.getLogger("alyx.schedules")

MAX_CATCH_UP = 1000
"""The most runs `catch_up: all` makes up for at once."""


def next_fire(schedule: Schedule, after: float) -> float:
    """The first fire time strictly after `after` (Unix seconds)."""
    if schedule.every is not None:
        return after + schedule.every
    assert schedule.cron is not None
    start = datetime.fromtimestamp(after, zoneinfo.ZoneInfo(schedule.timezone))
    nxt: datetime = croniter(schedule.cron, start).get_next(datetime)
    return nxt.timestamp()


def fire_times(schedule: Schedule, first: float, now: float, limit: int) -> list[float]:
    """The fire times from `first` (itself one) up to `now`, at most `limit` of the latest."""
    out = [first]
    while True:
        nxt = next_fire(schedule, out[-1])
        if nxt > now:
            return out
        out.append(nxt)
        if len(out) > limit:
            del out[0]


def _iso(value: float | None) -> str | None:
    return None if value is None else format_timestamp(datetime.fromtimestamp(value, UTC))


class Scheduler:
    """Runs the scheduled functions of `service`; see the module docstring."""

    def __init__(
        self,
        db: Database,
        service: FunctionService,
        *,
        clock: Clock = SYSTEM_CLOCK,
        tick: float = 1.0,
        lease_margin: float = 30.0,
    ) -> None:
        self.db = db
        self.service = service
        self.clock = clock
        self.tick_interval = tick
        self.lease_margin = lease_margin
        self.owner = owner_name()
        self._task: asyncio.Task[None] | None = None
        self._running: set[str] = set()

    def _now(self) -> float:
        return self.clock.now().timestamp()

    @property
    def schedules(self) -> dict[str, Schedule]:
        return {name: spec.schedule for name, spec in self.service.specs.items() if spec.schedule is not None}

    async def start(self, *, loop: bool = True) -> None:
        """Create or update each schedule's row; with `loop`, tick every `tick` seconds."""
        await self.sync()
        if loop:
            self._task = asyncio.get_running_loop().create_task(self._forever(), name="alyx-scheduler")

    async def sync(self) -> None:
        """Rows for the schedules of the current functions (a changed schedule starts afresh)."""
        wanted = self.schedules
        known = set(self.service.specs) | set(self.service.problems)
        now = self._now()

        def write(conn: sqlite3.Connection) -> None:
            stored = dict(conn.execute(f"SELECT name, spec FROM {SCHEDULES_TABLE}").fetchall())
            for name, schedule in wanted.items():
                text = _stored_spec(schedule)
                if stored.get(name) == text:
                    continue
                conn.execute(
                    f"INSERT INTO {SCHEDULES_TABLE} (name, spec, next_run) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, next_run = excluded.next_run",
                    (name, text, next_fire(schedule, now)),
                )
            for name in stored:
                if name not in wanted and (name not in known or name in self.service.specs):
                    conn.execute(f"DELETE FROM {SCHEDULES_TABLE} WHERE name = ?", (name,))

        await self.db.write(write)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("schedules: tick failed")

    async def tick(self) -> int:
        """Run every due schedule this process can lease; returns the number of runs made."""
        now = self._now()

        def due(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(f"SELECT name FROM {SCHEDULES_TABLE} WHERE next_run <= ?", (now,)).fetchall()
            return [name for (name,) in rows]

        names = [n for n in await self.db.read(due) if n in self.schedules and n not in self._running]
        counts = await asyncio.gather(*(self.run_due(name) for name in names))
        return sum(counts)

    async def run_due(self, name: str) -> int:
        """Lease `name` if due and free, make its runs, record them; returns how many ran."""
        spec = self.service.specs.get(name)
        if spec is None or spec.schedule is None:
            return 0
        schedule = spec.schedule
        now = self._now()
        lease = spec.timeout * (MAX_CATCH_UP if schedule.catch_up == "all" else 1) + self.lease_margin

        def claim(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(f"SELECT next_run FROM {SCHEDULES_TABLE} WHERE name = ?", (name,)).fetchone()
            if row is None or row[0] > now:
                return None
            if claim_lease(conn, SCHEDULES_TABLE, "name", name, self.owner, now, lease) == 0.0:
                return None
            return float(row[0])

        self._running.add(name)
        try:
            first = await self.db.write(claim)
            if first is None:
                return 0
            return await self._runs(spec, schedule, first, now)
        finally:
            self._running.discard(name)

    async def _runs(self, spec: FunctionSpec, schedule: Schedule, first: float, now: float) -> int:
        times = fire_times(schedule, first, now, MAX_CATCH_UP)
        grace = 2 * self.tick_interval + 5.0
        if schedule.catch_up == "all":
            runs = times
        elif schedule.catch_up == "one" or now - times[-1] <= grace:
            runs = times[-1:]
        else:
            runs = []
        skipped = len(times) - len(runs)
        status, error, duration = None, None, None
        for index, at in enumerate(runs, 1):
            event = {
                "schedule": schedule.text,
                "scheduled_at": _iso(at),
                "missed": skipped if index == 1 else 0,
                "run": index,
            }
            started = time.perf_counter()
            try:
                await call_function(self.service, spec, event)
            except AlyxError as e:
                status, error = "failed", e.message
                log.error(
                    "schedule %s: the run for %s failed: %s", spec.name, event["scheduled_at"], e.message
                )
            else:
                status, error = "ok", None
            duration = round((time.perf_counter() - started) * 1000, 3)
        last_at = self._now()
        # The fire time after the last one due: `every` keeps its grid (first + k * every)
        # however late the tick that ran it.
        following = next_fire(schedule, times[-1])

        def record(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE {SCHEDULES_TABLE} SET next_run = ?, last_run = coalesce(?, last_run), "
                "last_scheduled = coalesce(?, last_scheduled), last_status = coalesce(?, last_status), "
                "last_error = CASE WHEN ? IS NULL THEN last_error ELSE ? END, "
                "last_duration_ms = coalesce(?, last_duration_ms), runs = runs + ?, skipped = skipped + ?, "
                "lease_owner = NULL, lease_until = NULL WHERE name = ? AND lease_owner = ?",
                (
                    following,
                    last_at if runs else None,
                    runs[-1] if runs else None,
                    status,
                    status,
                    error,
                    duration,
                    len(runs),
                    skipped,
                    spec.name,
                    self.owner,
                ),
            )

        await self.db.write(record)
        if skipped:
            log.info(
                "schedule %s: %d missed runs skipped (catch_up: %s)", spec.name, skipped, schedule.catch_up
            )
        return len(runs)

    async def describe(self) -> dict[str, dict[str, Any]]:
        """Each schedule's spec, next and last runs and counts (admin API, CLI, TUI)."""
        now = self._now()

        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                f"SELECT name, next_run, last_run, last_scheduled, last_status, last_error, "
                f"last_duration_ms, runs, skipped, lease_owner, lease_until FROM {SCHEDULES_TABLE}"
            ).fetchall()

        out: dict[str, dict[str, Any]] = {}
        for row in await self.db.read(read):
            name, next_run, last_run, last_scheduled, status, error, duration, runs, skipped, owner, until = (
                row
            )
            schedule = self.schedules.get(name)
            if schedule is None:
                continue
            running = owner is not None and until is not None and until >= now and owner_alive(owner)
            out[name] = {
                "schedule": schedule.cron,
                "every": schedule.every,
                "timezone": schedule.timezone,
                "catch_up": schedule.catch_up,
                "next_run": _iso(next_run),
                "last_run": _iso(last_run),
                "last_scheduled": _iso(last_scheduled),
                "last_status": status,
                "last_error": error,
                "last_duration_ms": duration,
                "runs": runs,
                "skipped": skipped,
                "running": owner if running else None,
            }
        return out


def _stored_spec(schedule: Schedule) -> str:
    if schedule.cron is not None:
        return f"cron {schedule.cron} {schedule.timezone}"
    return f"every {schedule.every}"
