"""The durable job queue: rows in `_alyx_jobs` (store.py), the per-process runner
(queue.py) and functions as jobs (functions.py). docs/automation.md describes it."""

from alyx_server.jobs.queue import EnqueueResult, JobFailed, JobKind, JobQueue
from alyx_server.jobs.store import Job

__all__ = ["EnqueueResult", "Job", "JobFailed", "JobKind", "JobQueue"]
