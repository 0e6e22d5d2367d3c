"""Webhooks as the dispatcher uses them: alyx.yaml's and the admin API's, with their
`when` conditions compiled.

Those of alyx.yaml (`settings.webhook_targets`) come with the configuration; those added
through the admin API are rows of `_alyx_webhooks`, read at each dispatch pass so that
every server process sees a webhook another one added. A name is unique across both.
`when` is CEL over `doc` (the document as it is when the event is dispatched, null
after a delete), compiled by the rules engine like a function's rule.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from alyx_server.config.webhooks import (
    EVENT_TYPES,
    NAME,
    SECRET_HINT,
    WebhookEvents,
    WebhookTarget,
    check_secret,
    check_url,
)
from alyx_server.errors import Conflict, Location, NotFound, RuleError, ValidationError
from alyx_server.rules.compile_py import CompileEnv, Fn, Unsupported, compile_node
from alyx_server.rules.syntax import CelCompileError, parse
from alyx_server.rules.values import CelEvalError, from_json
from alyx_server.schema.system_tables import CHANGES_TABLE, WEBHOOK_CURSOR_TABLE, WEBHOOKS_TABLE
from alyx_server.webhooks.signing import new_secret

__all__ = [
    "API_NAME_PATTERN",
    "Webhook",
    "compile_webhook",
    "delete_stored",
    "insert_stored",
    "parse_webhook_body",
    "read_stored",
]

log = logging.getLogger("alyx.webhooks")

_WHEN_VARIABLES = frozenset({"doc"})

API_NAME_PATTERN = r"^(?!deliveries$)[a-z][a-z0-9_-]{0,62}$"
"""A webhook name the admin API takes: not `deliveries`, whose admin URL is the delivery log
(`/api/admin/webhooks/deliveries`), so that it could never be removed there."""
_API_NAME = re.compile(API_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class _Route:
    collection: str
    events: frozenset[str]
    when: Fn | None


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook, ready to match change events."""

    target: WebhookTarget
    source: str  # "config" or "api"
    routes: tuple[_Route, ...]

    @property
    def name(self) -> str:
        return self.target.name

    def wants(self, collection: str, event: str) -> bool:
        return any(r.collection == collection and event in r.events for r in self.routes)

    def matches(self, collection: str, event: str, doc: Mapping[str, Any] | None) -> bool:
        """Whether this webhook receives `event` on `collection` for `doc`."""
        for route in self.routes:
            if route.collection != collection or event not in route.events:
                continue
            if route.when is None:
                return True
            try:
                if route.when({"doc": None if doc is None else from_json(doc)}) is True:
                    return True
            except CelEvalError as e:
                log.warning("webhook %s: when on %s did not hold: %s", self.name, collection, e.message)
        return False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.target.url,
            "source": self.source,
            "events": [
                {"collection": e.collection, "events": list(e.events), "when": e.when}
                for e in self.target.events
            ],
        }


def compile_webhook(target: WebhookTarget, source: str) -> Webhook:
    """A Webhook with its `when` conditions compiled (RuleError naming where, if one is bad)."""
    routes = []
    for events in target.events:
        when: Fn | None = None
        if events.when is not None:
            try:
                when = compile_node(parse(events.when), CompileEnv(variables=_WHEN_VARIABLES))
            except CelCompileError as e:
                message = f"webhook {target.name}: when does not compile: {e.message} (CEL column {e.column})"
                raise RuleError(message, events.when_location) from e
            except Unsupported:
                from alyx_server.rules.cel import FallbackProgram  # cel-python, loaded when needed

                when = FallbackProgram(events.when)
        routes.append(_Route(events.collection, frozenset(events.events), when))
    return Webhook(target, source, tuple(routes))


def parse_webhook_body(data: Mapping[str, Any]) -> WebhookTarget:
    """An admin API body `{name, url, events, secret?}` as a target (a secret is made when
    none is given). ValidationError with one line per problem."""
    unknown = sorted(set(data) - {"name", "url", "events", "secret"})
    if unknown:
        raise ValidationError(f"unknown key {unknown[0]!r}; a webhook is {{name, url, events, secret?}}")
    name, url, secret = data.get("name"), data.get("url"), data.get("secret")
    if secret is None:
        secret = new_secret()
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValidationError("name must be a lower-case letter, then letters, digits, _ or -")
    if not _API_NAME.fullmatch(name):
        raise ValidationError(f"name {name!r} is reserved (its URL is the delivery log); pick another")
    if not isinstance(url, str) or (problem := check_url(url)):
        raise ValidationError(f"url: {problem if isinstance(url, str) else 'must be a string'}")
    if not isinstance(secret, str) or (problem := check_secret(secret)):
        raise ValidationError(
            f"secret: {problem if isinstance(secret, str) else 'must be a string'}; {SECRET_HINT}"
        )
    raw = data.get("events")
    if not isinstance(raw, list) or not raw:
        raise ValidationError('events must be a list such as [{"collection": "posts", "events": ["create"]}]')
    events = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("collection"), str):
            raise ValidationError(f"events[{index}] must be an object with a collection")
        kinds = item.get("events", list(EVENT_TYPES))
        if not isinstance(kinds, list) or not kinds or any(k not in EVENT_TYPES for k in kinds):
            raise ValidationError(f"events[{index}].events must list some of: {', '.join(EVENT_TYPES)}")
        when = item.get("when")
        if when is not None and not isinstance(when, str):
            raise ValidationError(f"events[{index}].when must be a CEL expression over doc")
        where = Location("admin API", path=f"events[{index}].when")
        events.append(WebhookEvents(item["collection"], tuple(kinds), when, where if when else None))
    return WebhookTarget(name, url, secret, tuple(events))


def _to_json(target: WebhookTarget) -> str:
    return orjson.dumps(
        [{"collection": e.collection, "events": list(e.events), "when": e.when} for e in target.events]
    ).decode()


def read_stored(conn: sqlite3.Connection) -> list[WebhookTarget]:
    """The webhooks added through the admin API."""
    out = []
    for name, url, events, secret in conn.execute(
        f"SELECT name, url, events, secret FROM {WEBHOOKS_TABLE} ORDER BY name"
    ):
        parsed = tuple(
            WebhookEvents(e["collection"], tuple(e["events"]), e.get("when"), None)
            for e in orjson.loads(events)
        )
        out.append(WebhookTarget(name, url, secret, parsed))
    return out


def insert_stored(conn: sqlite3.Connection, target: WebhookTarget, *, now: float, taken: set[str]) -> None:
    if (
        target.name in taken
        or conn.execute(f"SELECT 1 FROM {WEBHOOKS_TABLE} WHERE name = ?", (target.name,)).fetchone()
    ):
        raise Conflict(f"a webhook named {target.name!r} exists already", code="WEBHOOK_EXISTS")
    if not taken and conn.execute(f"SELECT 1 FROM {WEBHOOKS_TABLE} LIMIT 1").fetchone() is None:
        # The first webhook: the dispatcher, idle until now, may trail the change log by a
        # few seconds (webhooks/service.py); the new webhook starts at the newest change.
        conn.execute(
            f"UPDATE {WEBHOOK_CURSOR_TABLE} SET change_id = "
            f"(SELECT coalesce(max(id), 0) FROM {CHANGES_TABLE}) WHERE id = 1"
        )
    conn.execute(
        f"INSERT INTO {WEBHOOKS_TABLE} (name, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?)",
        (target.name, target.url, _to_json(target), target.secret, now),
    )


def delete_stored(conn: sqlite3.Connection, name: str) -> None:
    if conn.execute(f"DELETE FROM {WEBHOOKS_TABLE} WHERE name = ?", (name,)).rowcount == 0:
        raise NotFound(f"no webhook named {name!r} was added through the admin API", code="WEBHOOK_NOT_FOUND")
