"""Functions whose manifest has a `job:` section, as kinds of job the queue runs.

A job runs on the function's warm pool like a call, with the job's payload as its input,
no caller (`ctx.auth` is null: its database calls run under the rules as an anonymous
caller, or past them when the manifest says `privileged: true`) and `context.job`
({id, name, attempt}) for idempotency. A run that returns an error, times out, crashes
or finds the pool busy fails: it is retried after a backoff, up to `max_attempts`.
"""

from __future__ import annotations

from typing import Any

from alyx_server.errors import AlyxError
from alyx_server.functions.service import FunctionService
from alyx_server.functions.tokens import Grant
from alyx_server.functions.worker import FunctionLoadFailed, WorkerCrashed, WorkerTimeout
from alyx_server.jobs.queue import JobFailed, JobKind
from alyx_server.jobs.store import Job
from alyx_server.rules import RequestInfo

__all__ = ["function_job_kinds", "run_function_job"]


IN_FLIGHT_PER_INSTANCE = 8
"""Jobs a process claims per worker of the function's pool: the extra ones wait in the
pool's queue, so that one claim (one write) feeds the workers for several runs."""


def function_job_kinds(
    service: FunctionService, max_instances: int, max_queue: int = 100
) -> dict[str, JobKind]:
    """A JobKind per served function with a `job:` section; this process claims up to
    IN_FLIGHT_PER_INSTANCE jobs per pool worker (within the pool's queue) or `concurrency`."""
    kinds: dict[str, JobKind] = {}
    for name, spec in service.specs.items():
        options = spec.job
        if options is None:
            continue
        ahead = min(max_instances * IN_FLIGHT_PER_INSTANCE, max_instances + max_queue)
        local = min(ahead, options.concurrency or ahead)
        check = spec.input.check if spec.input is not None else None

        async def run(job: Job, name: str = name) -> Any:
            return await run_function_job(service, name, job)

        kinds[name] = JobKind(name, options, run, local_limit=local, check_payload=check)
    return kinds


async def run_function_job(service: FunctionService, name: str, job: Job) -> Any:
    """Run one job on function `name`'s pool; its output, or JobFailed with the reason."""
    spec = service.specs.get(name)
    pool = service.pools.get(name)
    if spec is None or pool is None or spec.job is None:
        raise JobFailed(f"function {name} is not served as a job now")
    info = RequestInfo("JOB", "", service.clock.now(), {}, job.payload)
    token = service.tokens.issue(Grant(name, None, spec.privileged, info))
    request = {
        "request_id": job.id,
        "function": name,
        "input": job.payload,
        "context": {
            "auth": None,
            "env": dict(spec.env),
            "alyx_url": "",
            "internal_token": token,
            "job": {"id": job.id, "name": name, "attempt": job.attempts},
        },
    }
    try:
        answer = await pool.invoke(request, spec.timeout)
    except (WorkerTimeout, WorkerCrashed, FunctionLoadFailed) as e:
        raise JobFailed(str(e)) from e
    except AlyxError as e:
        raise JobFailed(f"{e.code}: {e.message}") from e
    finally:
        service.tokens.revoke(token)
    if answer.get("success") is True:
        return answer.get("output")
    error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
    assert isinstance(error, dict)
    raise JobFailed(
        f"{error.get('code') or 'FUNCTION_ERROR'}: {error.get('message') or 'the function failed'}"
    )
