"""The job queue's rows in `_alyx_jobs`, and every statement that moves them.

    queued --claim--> running --complete--> done
       ^                 |
       +----fail---------+ (attempts < max_attempts: queued again after a backoff)
                         +--fail / lease expired after the last attempt--> dead
    dead --retry--> queued (attempts start again)

Each function here takes a connection and runs inside the caller's transaction (the
server's writer, or the CLI's own), so any process serving the database may call them.
A claim is one `UPDATE ... WHERE ... RETURNING`: the writer's transaction is held by one
process at a time, so two processes never claim the same row. Each claim writes a fresh
lease token; `complete` and `fail` only touch a row still holding it, so a run whose
lease expired (its process was slow or died) and was claimed again cannot overwrite the
newer run's outcome. Times are Unix seconds from the caller's clock.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from alyx_server.errors import NotFound, ValidationError
from alyx_server.schema.system_tables import JOBS_TABLE

__all__ = [
    "STATES",
    "ClaimedJob",
    "Job",
    "JobState",
    "backoff_delay",
    "claim_jobs",
    "complete_job",
    "count_jobs",
    "enqueue_job",
    "fail_job",
    "get_job",
    "job_state",
    "list_jobs",
    "next_due",
    "purge_jobs",
    "retry_job",
]

JobState = Literal["queued", "running", "done", "dead"]
STATES: tuple[JobState, ...] = ("queued", "running", "done", "dead")
_COLUMNS = (
    "id, name, payload, state, attempts, max_attempts, run_at, lease_owner, lease_until, "
    "dedupe_key, last_error, result, created_at, updated_at, finished_at"
)
MAX_ERROR = 2000


@dataclass(frozen=True, slots=True)
class Job:
    """One row of `_alyx_jobs`."""

    id: str
    name: str
    payload: Any
    state: JobState
    attempts: int
    max_attempts: int
    run_at: float
    lease_owner: str | None
    lease_until: float | None
    dedupe_key: str | None
    last_error: str | None
    result: Any
    created_at: float
    updated_at: float
    finished_at: float | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        values = list(row)
        values[2] = orjson.loads(values[2])
        values[11] = None if values[11] is None else orjson.loads(values[11])
        return cls(*values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "payload": self.payload,
            "state": self.state,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "run_at": self.run_at,
            "lease_until": self.lease_until,
            "dedupe_key": self.dedupe_key,
            "last_error": self.last_error,
            "result": self.result,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this process now runs, with the lease token that proves it."""

    job: Job
    lease: str


def backoff_delay(
    attempts: int, base: float, ceiling: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before run `attempts + 1`: base * 2^(attempts-1), at most `ceiling`, then
    "equal jitter" (half of it fixed, half random) so that jobs failing together spread out."""
    delay = float(min(ceiling, base * 2 ** max(0, attempts - 1)))
    return delay / 2 + rand() * delay / 2


def enqueue_job(
    conn: sqlite3.Connection,
    name: str,
    payload: Any,
    *,
    now: float,
    delay: float = 0.0,
    max_attempts: int = 5,
    dedupe_key: str | None = None,
) -> tuple[str, bool]:
    """Queue a job; returns (id, created). With a `dedupe_key` that a queued or running job
    of the same name holds already, nothing is queued and that job's id comes back."""
    if dedupe_key is not None:
        row = conn.execute(
            f"SELECT id FROM {JOBS_TABLE} WHERE name = ? AND dedupe_key = ? "
            "AND state IN ('queued', 'running')",
            (name, dedupe_key),
        ).fetchone()
        if row is not None:
            return str(row[0]), False
    job_id = uuid.uuid4().hex
    conn.execute(
        f"INSERT INTO {JOBS_TABLE} (id, name, payload, max_attempts, run_at, dedupe_key, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (job_id, name, orjson.dumps(payload).decode(), max_attempts, now + delay, dedupe_key, now, now),
    )
    return job_id, True


def job_state(conn: sqlite3.Connection, job_id: str) -> str:
    """The state of one job (queued, running, done or dead); `dead` if it is gone."""
    row = conn.execute(f"SELECT state FROM {JOBS_TABLE} WHERE id = ?", (job_id,)).fetchone()
    return str(row[0]) if row is not None else "dead"


def claim_jobs(
    conn: sqlite3.Connection,
    name: str,
    *,
    now: float,
    limit: int,
    visibility_timeout: float,
    concurrency: int | None = None,
) -> list[ClaimedJob]:
    """Lease up to `limit` due jobs of `name` (queued and due, or running with an expired
    lease), fewer when `concurrency` runs of `name` hold live leases in any process."""
    lease = uuid.uuid4().hex
    # A run whose lease expired after its last attempt is dead, not run once more.
    conn.execute(
        f"UPDATE {JOBS_TABLE} SET state = 'dead', lease_owner = NULL, lease_until = NULL, "
        "last_error = coalesce(last_error, '') || CASE WHEN last_error IS NULL THEN '' ELSE '; ' END "
        "|| 'its last run did not finish before its lease ended', finished_at = ?, updated_at = ? "
        "WHERE name = ? AND state = 'running' AND lease_until <= ? AND attempts >= max_attempts",
        (now, now, name, now),
    )
    cap = (
        "?"
        if concurrency is None
        else (
            f"min(?, max(0, ? - (SELECT count(*) FROM {JOBS_TABLE} WHERE name = ? AND state = 'running' "
            "AND lease_until > ?)))"
        )
    )
    params: tuple[Any, ...] = (limit,) if concurrency is None else (limit, concurrency, name, now)
    rows = conn.execute(
        f"UPDATE {JOBS_TABLE} SET state = 'running', attempts = attempts + 1, lease_owner = ?, "
        "lease_until = ?, updated_at = ? WHERE id IN ("
        f"  SELECT id FROM {JOBS_TABLE} WHERE name = ? AND ("
        "    (state = 'queued' AND run_at <= ?) OR (state = 'running' AND lease_until <= ?))"
        f"  ORDER BY run_at LIMIT {cap}"
        f") RETURNING {_COLUMNS}",
        (lease, now + visibility_timeout, now, name, now, now, *params),
    ).fetchall()
    return [ClaimedJob(Job.from_row(row), lease) for row in sorted(rows, key=lambda r: (r[6], r[0]))]


def complete_job(conn: sqlite3.Connection, claimed: ClaimedJob, result: Any, *, now: float) -> bool:
    """Mark a run done; False when its lease was lost (another run took the job)."""
    cursor = conn.execute(
        f"UPDATE {JOBS_TABLE} SET state = 'done', result = ?, lease_owner = NULL, lease_until = NULL, "
        "finished_at = ?, updated_at = ? WHERE id = ? AND lease_owner = ? AND state = 'running'",
        (orjson.dumps(result).decode(), now, now, claimed.job.id, claimed.lease),
    )
    return cursor.rowcount == 1


def fail_job(
    conn: sqlite3.Connection, claimed: ClaimedJob, error: str, *, now: float, delay: float
) -> JobState | None:
    """Record a failed run: queued again after `delay`, or dead after its last attempt.
    Returns the new state, None when the lease was lost."""
    job = claimed.job
    state: JobState = "dead" if job.attempts >= job.max_attempts else "queued"
    cursor = conn.execute(
        f"UPDATE {JOBS_TABLE} SET state = ?, last_error = ?, run_at = ?, lease_owner = NULL, "
        "lease_until = NULL, finished_at = ?, updated_at = ? WHERE id = ? AND lease_owner = ? "
        "AND state = 'running'",
        (state, error[:MAX_ERROR], now + delay, now if state == "dead" else None, now, job.id, claimed.lease),
    )
    return state if cursor.rowcount == 1 else None


def next_due(conn: sqlite3.Connection, names: tuple[str, ...]) -> float | None:
    """When the earliest queued job or running lease of `names` comes due (None: nothing)."""
    if not names:
        return None
    marks = ", ".join("?" * len(names))
    row = conn.execute(
        f"SELECT min(CASE state WHEN 'queued' THEN run_at ELSE lease_until END) FROM {JOBS_TABLE} "
        f"WHERE state IN ('queued', 'running') AND name IN ({marks})",
        names,
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def get_job(conn: sqlite3.Connection, job_id: str) -> Job:
    row = conn.execute(f"SELECT {_COLUMNS} FROM {JOBS_TABLE} WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job with id {job_id!r}", code="JOB_NOT_FOUND")
    return Job.from_row(row)


def list_jobs(
    conn: sqlite3.Connection, *, state: str | None = None, name: str | None = None, limit: int = 100
) -> list[Job]:
    """The newest jobs first, optionally of one state and one name."""
    where, params = _filter(state, name)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM {JOBS_TABLE}{where} ORDER BY created_at DESC, id LIMIT ?", (*params, limit)
    ).fetchall()
    return [Job.from_row(row) for row in rows]


def count_jobs(conn: sqlite3.Connection) -> dict[str, int]:
    """How many jobs are in each state."""
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
    for state, count in conn.execute(f"SELECT state, count(*) FROM {JOBS_TABLE} GROUP BY state"):
        counts[state] = count
    return counts


def retry_job(conn: sqlite3.Connection, job_id: str, *, now: float) -> Job:
    """Queue a dead (or done) job again, due now, with its attempts counted from zero."""
    job = get_job(conn, job_id)
    if job.state in ("queued", "running"):
        raise ValidationError(f"job {job_id} is {job.state}; only a dead or done job can be retried")
    conn.execute(
        f"UPDATE {JOBS_TABLE} SET state = 'queued', attempts = 0, run_at = ?, finished_at = NULL, "
        "updated_at = ? WHERE id = ?",
        (now, now, job_id),
    )
    return get_job(conn, job_id)


def purge_jobs(conn: sqlite3.Connection, *, dead: bool = False, before: float | None = None) -> int:
    """Delete finished jobs: done ones (or, with `dead`, dead ones), finished before `before`."""
    state = "dead" if dead else "done"
    sql = f"DELETE FROM {JOBS_TABLE} WHERE state = ?"
    params: tuple[Any, ...] = (state,)
    if before is not None:
        sql += " AND finished_at < ?"
        params = (state, before)
    return conn.execute(sql, params).rowcount


def _filter(state: str | None, name: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if state is not None:
        if state not in STATES:
            raise ValidationError(f"unknown job state {state!r}; states are: {', '.join(STATES)}")
        clauses.append("state = ?")
        params.append(state)
    if name is not None:
        clauses.append("name = ?")
        params.append(name)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
