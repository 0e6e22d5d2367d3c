"""A manifest's `job:` section: the function also runs as a job of the queue (alyx_server/jobs).

    job:
      max_attempts: 5          runs before the job is dead (1 to 100)
      backoff: 1s              wait before the second run; doubled each time, with jitter
      max_backoff: 1h          the longest wait between two runs
      concurrency: 2           most runs of this job at once, across every server process
                               (default: no limit beyond the function's pool)
      visibility_timeout: 60s  a run not finished by then (its process died) is run again;
                               longer than the function's timeout (default: timeout + 30s)

`job: true` (or `job: {}`) takes every default. Each problem is one line naming the
manifest, line and column, like the rest of the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

from alyx_server.schema.validate import SchemaSource, expect_mapping, reject_unknown
from alyx_server.tools.durations import parse_duration
from alyx_server.tools.yaml_lines import YamlEntry, YamlScalar, kind_name

__all__ = ["JOB_KEYS", "JobOptions", "parse_job"]

JOB_KEYS = ("max_attempts", "backoff", "max_backoff", "concurrency", "visibility_timeout")
_EXAMPLE = "job: { max_attempts: 5, backoff: 1s, concurrency: 2 }"
VISIBILITY_MARGIN = 30.0
"""How much longer than the function's timeout a run's lease lasts by default (seconds)."""


@dataclass(frozen=True, slots=True)
class JobOptions:
    """How the queue runs a job function (see the module docstring)."""

    max_attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 3600.0
    concurrency: int | None = None
    visibility_timeout: float = 60.0


def parse_job(src: SchemaSource, entry: YamlEntry | None, timeout: float) -> JobOptions | None:
    """The `job:` section of a manifest (None when absent or false); `timeout` is the function's."""
    if entry is None:
        return None
    node = entry.value
    if isinstance(node, YamlScalar) and node.value in (None, False):
        return None
    default_lease = timeout + VISIBILITY_MARGIN
    if isinstance(node, YamlScalar) and node.value is True:
        return JobOptions(visibility_timeout=default_lease)
    body = expect_mapping(src, node, "job", "job", _EXAMPLE)
    reject_unknown(src, body, "job", JOB_KEYS, "job option")
    values = {item.name: item for item in body}
    options = JobOptions(
        max_attempts=_count(src, values.get("max_attempts"), 5, 100) or 5,
        backoff=_duration(src, values.get("backoff"), 1.0),
        max_backoff=_duration(src, values.get("max_backoff"), 3600.0),
        concurrency=_count(src, values.get("concurrency"), None, 10_000),
        visibility_timeout=_duration(src, values.get("visibility_timeout"), default_lease),
    )
    lease = values.get("visibility_timeout")
    if lease is not None and options.visibility_timeout <= timeout:
        raise src.error(
            f"{options.visibility_timeout:g}s must be longer than the function's timeout ({timeout:g}s)",
            lease.value, "job.visibility_timeout",
            "a run still going when its lease ends would run twice at once; raise it or lower timeout",
        )  # fmt: skip
    return options


def _count(src: SchemaSource, entry: YamlEntry | None, default: int | None, high: int) -> int | None:
    if entry is None:
        return default
    node = entry.value
    value = node.value if isinstance(node, YamlScalar) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        shown = repr(value) if isinstance(node, YamlScalar) else kind_name(node)
        raise src.error(
            f"must be a whole number from 1 to {high}, not {shown}",
            node, f"job.{entry.name}", f"e.g. {_EXAMPLE}",
        )  # fmt: skip
    return value


def _duration(src: SchemaSource, entry: YamlEntry | None, default: float) -> float:
    if entry is None:
        return default
    node = entry.value
    raw = node.value if isinstance(node, YamlScalar) else None
    try:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError(raw)
        value = float(parse_duration(str(raw)))
    except ValueError as e:
        shown = repr(raw) if isinstance(node, YamlScalar) else kind_name(node)
        raise src.error(
            f"must be a duration such as 1s or 5m, not {shown}",
            node, f"job.{entry.name}", f"e.g. {_EXAMPLE}",
        ) from e  # fmt: skip
    if value <= 0:
        raise src.error("must be longer than 0", node, f"job.{entry.name}", "e.g. 1s")
    return value
