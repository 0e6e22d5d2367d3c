"""`POST /api/jobs/{name}` and the admin routes of the job queue.

    POST /api/jobs/{name}   {"payload": {...}, "delay": 30, "dedupe_key": "k"}
        -> 202 {id, created, state}   created false: a queued or running job held
                                      dedupe_key (that job, state queued or running)
        404 JOB_NOT_FOUND      no such function, or its manifest has no job: section
        403 FORBIDDEN          the function's rule refuses the caller (no rule: admins only)
        400 VALIDATION_ERROR   the payload does not fit the manifest's input
    GET    /api/admin/jobs?state=&name=&limit=   {jobs: [...], counts: {queued, running, done, dead}}
    GET    /api/admin/jobs/{id}                  one job, with its payload, result and last error
    POST   /api/admin/jobs/{id}/retry            a dead or done job queued again
    DELETE /api/admin/jobs?dead=true             purge done jobs (or dead ones): {deleted}

The admin routes need an admin, or a token with the `functions` permission.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from alyx_server.api.auth import caller
from alyx_server.api.bodies import read_object
from alyx_server.api.collections import access_for
from alyx_server.api.functions import FUNCTIONS
from alyx_server.api.pipeline import json_response
from alyx_server.api.runtime import RUNTIME
from alyx_server.errors import Forbidden, FunctionError, NotFound, Unauthorized, ValidationError
from alyx_server.jobs import JobQueue
from alyx_server.jobs.store import count_jobs, get_job, list_jobs, purge_jobs, retry_job

__all__ = ["JOBS", "Jobs", "add_routes", "queue_of"]

_BODY_KEYS = frozenset({"payload", "delay", "dedupe_key"})


@dataclass(slots=True)
class Jobs:
    """The application's job queue, set by app.py's jobs context while it serves."""

    queue: JobQueue | None = None


JOBS = web.AppKey("alyx.jobs", Jobs)


def queue_of(app: web.Application) -> JobQueue:
    queue = app[JOBS].queue
    if queue is None:
        message = "the job queue is starting; try again in a moment"
        raise FunctionError(message, code="UNAVAILABLE", status=503)
    return queue


async def enqueue(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    body = await read_object(request)
    unknown = sorted(set(body) - _BODY_KEYS)
    if unknown:
        shape = '{"payload": {...}, "delay"?, "dedupe_key"?}'
        raise ValidationError(f"unknown key {unknown[0]!r}: the body is {shape}")
    service = request.app[FUNCTIONS].service
    spec = service.specs.get(name) if service is not None else None
    if service is None or spec is None or spec.job is None:
        raise NotFound(f"no job named {name!r}", code="JOB_NOT_FOUND")
    rt = request.app[RUNTIME]
    _policy, auth, info = access_for(rt, request, body.get("payload"))
    # The function's rule and input, as for a call: who may queue it, and with what.
    payload = service.authorize(name, body.get("payload"), auth, info)
    queued = await queue_of(request.app).enqueue(
        name, payload, delay=body.get("delay", 0), dedupe_key=body.get("dedupe_key")
    )
    return json_response(queued.to_dict(), status=202)


def _admin(request: web.Request) -> None:
    auth = caller(request)
    if auth is None:
        raise Unauthorized("sign in as an admin to manage jobs")
    if not auth.allows("functions"):
        raise Forbidden("only admins (or tokens with the functions permission) may manage jobs")


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise ValidationError("limit must be a whole number from 1 to 1000")
    return int(raw)


async def admin_list(request: web.Request) -> web.StreamResponse:
    _admin(request)
    state, name, limit = request.query.get("state"), request.query.get("name"), _limit(request)
    db = request.app[RUNTIME].ready_db()
    jobs = await db.read(lambda conn: list_jobs(conn, state=state, name=name, limit=limit))
    counts = await db.read(count_jobs)
    return json_response({"jobs": [job.to_dict() for job in jobs], "counts": counts})


async def admin_show(request: web.Request) -> web.StreamResponse:
    _admin(request)
    job_id = request.match_info["id"]
    job = await request.app[RUNTIME].ready_db().read(lambda conn: get_job(conn, job_id))
    return json_response(job.to_dict())


async def admin_retry(request: web.Request) -> web.StreamResponse:
    _admin(request)
    job_id = request.match_info["id"]
    queue = queue_of(request.app)
    now = queue.now()
    job = await request.app[RUNTIME].ready_db().write(lambda conn: retry_job(conn, job_id, now=now))
    queue.wake()
    return json_response(job.to_dict())


async def admin_purge(request: web.Request) -> web.StreamResponse:
    _admin(request)
    dead = request.query.get("dead", "false").lower() in ("1", "true", "yes")
    deleted = await request.app[RUNTIME].ready_db().write(lambda conn: purge_jobs(conn, dead=dead))
    return json_response({"deleted": deleted})


def add_routes(app: web.Application) -> None:
    app[JOBS] = Jobs()
    app.router.add_post("/api/jobs/{name}", enqueue)
    app.router.add_get("/api/admin/jobs", admin_list)
    app.router.add_get("/api/admin/jobs/{id}", admin_show)
    app.router.add_post("/api/admin/jobs/{id}/retry", admin_retry)
    app.router.add_delete("/api/admin/jobs", admin_purge)
