"""What every handler shares, kept on the application under one typed key.

`Runtime` holds the settings, the access policy, the metrics, the clock, the database
(once opened) and the `Catalog`: each collection of the live schema compiled once for the
API (codec, reference fields, public names), so the hot path does no schema walking.
Routes under /api answer 503 until the startup migrations are done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from alyx_server.config import Settings
from alyx_server.db import Database
from alyx_server.db.codec import CollectionCodec, codec_for
from alyx_server.errors import AlyxError, NotFound
from alyx_server.metrics import Metrics
from alyx_server.rules import AccessPolicy
from alyx_server.schema.model import Collection, Reference, Schema
from alyx_server.tools.suggest import did_you_mean
from alyx_server.tools.timestamps import Clock

__all__ = ["RUNTIME", "Catalog", "CollectionView", "Phase", "Runtime", "SqlTrace"]

Phase = Literal["starting", "migrating", "ready", "failed"]
SqlTrace = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class CollectionView:
    """One collection as the API serves it."""

    collection: Collection
    codec: CollectionCodec
    public_names: frozenset[str]
    has_internal: bool
    references: dict[str, Reference]

    @property
    def name(self) -> str:
        return self.collection.name


def _view(collection: Collection) -> CollectionView:
    codec = codec_for(collection)
    return CollectionView(
        collection=collection,
        codec=codec,
        public_names=frozenset(codec.public_names),
        has_internal=len(codec.public_names) != len(collection.fields),
        references={
            f.name: f.references for f in collection.fields if f.references is not None and not f.internal
        },
    )


class Catalog:
    """The collections of one schema, by name; system tables are never among them."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._views = {c.name: _view(c) for c in schema.collections}

    def get(self, name: str) -> CollectionView:
        """The view of `name`, or 404 COLLECTION_NOT_FOUND with a did-you-mean hint."""
        view = self._views.get(name)
        if view is None:
            raise _unknown_collection(name, self._views)
        return view

    def find(self, name: str) -> CollectionView | None:
        return self._views.get(name)


def _unknown_collection(name: str, known: dict[str, CollectionView]) -> NotFound:
    message = f"unknown collection {name!r}"
    hint = did_you_mean(name, known)
    if hint:
        message += f"; {hint}"
    listed = ", ".join(sorted(known)) or "(none)"
    return NotFound(f"{message} (collections: {listed})", code="COLLECTION_NOT_FOUND")


@dataclass(slots=True)
class Runtime:
    """The state of one application; see the module docstring."""

    settings: Settings
    policy: AccessPolicy
    metrics: Metrics
    clock: Clock
    catalog: Catalog
    sql_trace: SqlTrace | None = None
    phase: Phase = "starting"
    failure: str | None = None
    started: float = field(default_factory=time.monotonic)
    # Set when the server cannot go on (startup migrations failed): `serve` then stops.
    fatal: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the startup migrations are done (`mark_ready`): services that write to the
    # database at start (hooks, schedules, jobs) wait for it, so they never race the
    # migrations `serve` runs in the background.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _db: Database | None = None

    @property
    def db(self) -> Database:
        db = self._db
        if db is None:
            raise _not_ready(self.phase)
        return db

    def attach(self, db: Database | None) -> None:
        self._db = db

    def set_schema(self, schema: Schema) -> None:
        """Serve `schema` from now on (after a migration)."""
        self.catalog = Catalog(schema)
        if self._db is not None:
            self._db.set_schema(schema)

    def mark_ready(self) -> None:
        self.phase = "ready"
        self.ready.set()

    async def wait_ready(self) -> bool:
        """Wait until the startup migrations are done: True, or False if they failed."""
        if self.phase != "ready":
            ready = asyncio.ensure_future(self.ready.wait())
            failed = asyncio.ensure_future(self.fatal.wait())
            try:
                await asyncio.wait({ready, failed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                failed.cancel()
        return self.phase == "ready"

    def ready_db(self) -> Database:
        """The database, or 503 while migrations run (routes under /api call this first)."""
        if self.phase != "ready" or self._db is None:
            raise _not_ready(self.phase)
        return self._db


def _not_ready(phase: Phase) -> AlyxError:
    if phase == "failed":
        return AlyxError("the server could not start; see its log", code="UNAVAILABLE", status=503)
    return AlyxError(
        "the server is applying migrations; try again in a moment", code="UNAVAILABLE", status=503
    )


RUNTIME = web.AppKey("alyx.runtime", Runtime)
