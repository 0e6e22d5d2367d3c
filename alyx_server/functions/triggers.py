"""The manifest keys that make a function run on its own: hooks on writes and schedules.

    on:       { collection: posts, events: [create, update, delete], when: "doc.published" }
    before:   { collection: posts, events: [create, update], timeout: 1s }
    schedule: "*/5 * * * *"       cron (five fields), in `timezone` (default UTC)
    every:    30s                  or a fixed interval instead of `schedule`
    timezone: Europe/Paris
    catch_up: one                  after downtime: none | one | all (default one)

`on` runs the function after each committed write that matches (see automation/hooks.py),
`before` before a create or update is queued, with a time limit (automation/before.py),
`schedule`/`every` on time (automation/schedules.py). Whether `collection` exists, and
whether `when` compiles against its fields, is checked where the schema is known, with
the locations kept here, so the errors name the manifest's file and line.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from typing import Literal

from croniter import croniter

from alyx_server.errors import Location
from alyx_server.schema.validate import SchemaSource, expect_mapping, reject_unknown
from alyx_server.tools.durations import parse_duration
from alyx_server.tools.yaml_lines import (
    YamlEntry,
    YamlMapping,
    YamlNode,
    YamlScalar,
    YamlSequence,
    kind_name,
)

__all__ = [
    "AFTER_EVENTS",
    "BEFORE_EVENTS",
    "CATCH_UP",
    "AfterHook",
    "BeforeHook",
    "CatchUp",
    "Schedule",
    "parse_after",
    "parse_before",
    "parse_schedule",
]

AFTER_EVENTS = ("create", "update", "delete")
BEFORE_EVENTS = ("create", "update")
CATCH_UP = ("none", "one", "all")
CatchUp = Literal["none", "one", "all"]
DEFAULT_BEFORE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class AfterHook:
    """`on:` run after each committed create, update or delete of `collection` (when `when`)."""

    collection: str
    events: tuple[str, ...]
    when: str | None
    location: Location
    collection_location: Location
    when_location: Location | None = None


@dataclass(frozen=True, slots=True)
class BeforeHook:
    """`before:` run before a create or update of `collection` is queued, within `timeout`."""

    collection: str
    events: tuple[str, ...]
    timeout: float
    location: Location
    collection_location: Location


@dataclass(frozen=True, slots=True)
class Schedule:
    """`schedule:` (cron) or `every:` (seconds), with its time zone and catch-up mode."""

    cron: str | None
    every: float | None
    timezone: str
    catch_up: CatchUp
    location: Location

    @property
    def text(self) -> str:
        """As the manifest wrote it: `*/5 * * * * (Europe/Paris)` or `every 30s`."""
        if self.cron is not None:
            return self.cron if self.timezone == "UTC" else f"{self.cron} ({self.timezone})"
        return f"every {_seconds(self.every or 0)}"


def _seconds(value: float) -> str:
    return f"{int(value)}s" if value == int(value) else f"{value}s"


def _string(src: SchemaSource, entry: YamlEntry, path: str, want: str) -> str:
    node = entry.value
    if not isinstance(node, YamlScalar) or not isinstance(node.value, str) or not node.value.strip():
        raise src.error(f"{path} must be {want}, not {kind_name(node)}", node, path, f"write {want}")
    return node.value.strip()


def _events(
    src: SchemaSource, entry: YamlEntry | None, path: str, allowed: tuple[str, ...]
) -> tuple[str, ...]:
    if entry is None:
        return allowed
    node = entry.value
    items = [node] if isinstance(node, YamlScalar) else list(node) if isinstance(node, YamlSequence) else None
    if not items:
        raise src.error("no events listed", node, path, f"e.g. events: [{', '.join(allowed)}]")
    out: list[str] = []
    for item in items:
        value = item.value if isinstance(item, YamlScalar) else None
        if value not in allowed:
            raise src.error(f"unknown event {value!r}", item, path, f"the events are: {', '.join(allowed)}")
        assert isinstance(value, str)
        if value not in out:
            out.append(value)
    return tuple(out)


def _hook_body(src: SchemaSource, entry: YamlEntry, keys: tuple[str, ...], example: str) -> YamlMapping:
    body = expect_mapping(src, entry.value, entry.name, f"{entry.name}:", example)
    reject_unknown(src, body, entry.name, keys, f"{entry.name} key")
    return body


def _collection(src: SchemaSource, body: YamlMapping, path: str, example: str) -> tuple[str, Location]:
    entry = body.get("collection")
    if entry is None:
        raise src.error(f"{path} needs a collection", body, path, example)
    return _string(src, entry, f"{path}.collection", "a collection name"), src.location(
        entry.value, f"{path}.collection"
    )


def _content_location(src: SchemaSource, node: YamlNode, path: str) -> Location:
    """Where the text of a scalar begins (after an opening quote): CEL columns count from it."""
    if isinstance(node, YamlScalar):
        return Location(src.filename, node.content_line, node.content_column, path)
    return src.location(node, path)


def parse_after(src: SchemaSource, entry: YamlEntry | None) -> AfterHook | None:
    """The `on:` key (None when absent)."""
    if entry is None or (isinstance(entry.value, YamlScalar) and entry.value.value is None):
        return None
    example = 'on: { collection: posts, events: [create, update], when: "doc.published" }'
    body = _hook_body(src, entry, ("collection", "events", "when"), example)
    collection, where = _collection(src, body, "on", example)
    when_entry = body.get("when")
    when = (
        _string(src, when_entry, "on.when", 'a CEL expression such as "doc.published"')
        if when_entry
        else None
    )
    return AfterHook(
        collection=collection,
        events=_events(src, body.get("events"), "on.events", AFTER_EVENTS),
        when=when,
        location=src.location(entry.value, "on"),
        collection_location=where,
        when_location=_content_location(src, when_entry.value, "on.when") if when_entry else None,
    )


def parse_before(src: SchemaSource, entry: YamlEntry | None) -> BeforeHook | None:
    """The `before:` key (None when absent)."""
    if entry is None or (isinstance(entry.value, YamlScalar) and entry.value.value is None):
        return None
    example = "before: { collection: posts, events: [create, update], timeout: 1s }"
    body = _hook_body(src, entry, ("collection", "events", "timeout"), example)
    collection, where = _collection(src, body, "before", example)
    timeout = DEFAULT_BEFORE_TIMEOUT
    limit = body.get("timeout")
    if limit is not None:
        raw = limit.value.value if isinstance(limit.value, YamlScalar) else None
        try:
            timeout = float(parse_duration(str(raw)))
        except ValueError:
            timeout = -1.0
        if raw is None or isinstance(raw, bool) or timeout <= 0:
            raise src.error(
                f"before.timeout {raw!r} is not a duration",
                limit.value,
                "before.timeout",
                "e.g. timeout: 500ms",
            )
    return BeforeHook(
        collection=collection,
        events=_events(src, body.get("events"), "before.events", BEFORE_EVENTS),
        timeout=timeout,
        location=src.location(entry.value, "before"),
        collection_location=where,
    )


def parse_schedule(src: SchemaSource, body: YamlMapping) -> Schedule | None:
    """`schedule` or `every`, with `timezone` and `catch_up` (None when neither is set)."""
    cron_entry, every_entry = body.get("schedule"), body.get("every")
    tz_entry, catch_entry = body.get("timezone"), body.get("catch_up")
    if cron_entry is None and every_entry is None:
        for extra in (tz_entry, catch_entry):
            if extra is not None:
                raise src.error(
                    f"{extra.name} needs schedule or every", extra.key, extra.name,
                    'add schedule: "*/5 * * * *" or every: 30s, or remove it',
                )  # fmt: skip
        return None
    if cron_entry is not None and every_entry is not None:
        raise src.error("schedule and every cannot both be set", every_entry.key, "every", "keep one of them")
    cron: str | None = None
    every: float | None = None
    if cron_entry is not None:
        cron = _string(src, cron_entry, "schedule", 'a cron expression such as "*/5 * * * *"')
        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise src.error(
                f"{cron!r} is not a cron expression", cron_entry.value, "schedule",
                'five fields: minute hour day-of-month month day-of-week, e.g. "*/5 * * * *"',
            )  # fmt: skip
    else:
        assert every_entry is not None
        raw = every_entry.value.value if isinstance(every_entry.value, YamlScalar) else None
        try:
            every = float(parse_duration(str(raw)))
        except ValueError:
            every = -1.0
        if raw is None or isinstance(raw, bool) or every < 1:
            raise src.error(
                f"every {raw!r} is not an interval of at least 1s", every_entry.value, "every",
                "e.g. every: 30s, every: 5m",
            )  # fmt: skip
    timezone = "UTC"
    if tz_entry is not None:
        timezone = _string(src, tz_entry, "timezone", "a time zone such as Europe/Paris")
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise src.error(
                f"unknown time zone {timezone!r}",
                tz_entry.value,
                "timezone",
                "use an IANA name such as Europe/Paris",
            ) from None
    catch_up: CatchUp = "one"
    if catch_entry is not None:
        value = _string(src, catch_entry, "catch_up", "none, one or all")
        if value not in CATCH_UP:
            raise src.error(
                f"unknown catch_up {value!r}", catch_entry.value, "catch_up", "write none, one or all"
            )
        catch_up = value  # type: ignore[assignment]
    where = cron_entry if cron_entry is not None else every_entry
    assert where is not None
    return Schedule(cron, every, timezone, catch_up, src.location(where.value, where.name))
