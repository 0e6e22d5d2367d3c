"""Live views: what one subscription's client holds, kept equal to its query's result.

A `LiveView` is either a live window (the subscription gave a `limit`: the first `limit`
docs in `sort` order, ties broken by the primary key, exactly like the REST list) or a
live set (no `limit`: the snapshot's page, then every doc that matches). It tracks the
held ids, their order (windows) and `total`, the number of docs that match.

The change feed says which doc changed, not what it was before, so `apply` gets the
doc's current state and what the event tells about the past:

    existed      False for an INSERT (the doc did not match before)
    unchanged    an UPDATE whose changed fields include none the subscription's match
                 depends on (so the doc matched before exactly when it matches now)

When every match is held (`beyond == 0`) that is enough. When the window is full and
more docs match beyond it, a doc leaving it must be replaced by the next one, and an
update of a doc the view does not hold may have changed `total`: `apply` then answers
True, and the caller re-runs the query (`load`) — "the next doc from the database".

`SQLite order` (sort keys): NULL < numbers < text < blobs; text by code point (BINARY).
`PendingDelta` collects one tick's touches and renders the coalesced `delta` payload.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alyx_server.db.query import tie_break_descending

__all__ = ["Holders", "LiveView", "PendingDelta", "SortKey", "sort_key"]

SortKey = Callable[[Mapping[str, Any]], tuple[Any, ...]]
Holders = dict[Any, set[Any]]
"""doc id -> the subscriptions holding that doc (shared per collection by the index)."""


class _Descending:
    """Reverses the order of the value it wraps (for `-field` sorts)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.v < self.v)

    def __gt__(self, other: _Descending) -> bool:
        return bool(other.v > self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.v == other.v

    def __hash__(self) -> int:
        return hash(self.v)


def _sqlite_value(v: Any) -> tuple[int, Any]:
    """A value ranked the way SQLite orders mixed storage classes."""
    if v is None:
        return (0, 0)
    if isinstance(v, bool | int | float):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    return (3, v)


def sort_key(sort: Sequence[tuple[str, bool]], primary: str) -> SortKey:
    """The key that orders docs as the REST list's `ORDER BY <sort>, <primary>` does in SQLite."""
    parts = list(sort)
    if all(name != primary for name, _desc in parts):
        parts.append((primary, tie_break_descending(parts)))
    names = tuple(n for n, _d in parts)
    descending = tuple(d for _n, d in parts)
    if not any(descending):
        return lambda doc: tuple(_sqlite_value(doc.get(n)) for n in names)

    def key(doc: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            _Descending(_sqlite_value(doc.get(n))) if d else _sqlite_value(doc.get(n))
            for n, d in zip(names, descending, strict=True)
        )

    return key


class LiveView:
    """The held docs of one subscription; see the module docstring."""

    __slots__ = ("_holders", "_keys", "evicted", "held", "ids", "key", "limit", "owner", "total")

    def __init__(self, owner: Any, holders: Holders, key: SortKey, limit: int | None) -> None:
        self.owner = owner
        self._holders = holders
        self.key = key
        self.limit = limit
        self.held: dict[Any, Any] = {}
        self._keys: list[tuple[Any, ...]] = []
        self.ids: list[Any] = []
        self.total = 0
        # Docs pushed out of a full window by `apply`, for the caller's delta.
        self.evicted: list[Any] = []

    @property
    def windowed(self) -> bool:
        return self.limit is not None

    @property
    def beyond(self) -> int:
        """How many matching docs the view does not hold."""
        return self.total - len(self.held)

    # -- holding -------------------------------------------------------------------------
    def _hold(self, doc_id: Any, key: tuple[Any, ...] | None) -> None:
        self.held[doc_id] = key
        holders = self._holders.get(doc_id)
        if holders is None:
            self._holders[doc_id] = {self.owner}
        else:
            holders.add(self.owner)
        if key is not None:
            pos = bisect_left(self._keys, key)
            self._keys.insert(pos, key)
            self.ids.insert(pos, doc_id)

    def _release(self, doc_id: Any) -> None:
        key = self.held.pop(doc_id)
        holders = self._holders.get(doc_id)
        if holders is not None:
            holders.discard(self.owner)
            if not holders:
                del self._holders[doc_id]
        if key is not None:
            pos = bisect_left(self._keys, key)
            del self._keys[pos]
            del self.ids[pos]

    def clear(self) -> None:
        """Release everything (the subscription ends or reloads)."""
        for doc_id in list(self.held):
            self._release(doc_id)
        self.total = 0

    def load(self, docs: Sequence[Mapping[str, Any]], total: int, primary: str) -> None:
        """Hold the result of the subscription's query (snapshot or resync)."""
        self.clear()
        for doc in docs:
            self._hold(doc[primary], self.key(doc) if self.limit is not None else None)
        self.total = max(total, len(self.held))

    # -- changes -------------------------------------------------------------------------
    def apply(self, doc_id: Any, doc: Mapping[str, Any] | None, existed: bool, unchanged: bool) -> bool:
        """Take in the current state of one doc (`doc` None: it does not match now).

        Returns True when the view cannot decide alone and the query must be re-run.
        """
        beyond = self.beyond
        if doc_id in self.held:
            self._release(doc_id)
            if doc is None:
                self.total -= 1
                return beyond > 0 and self.limit is not None
            return self._place(doc_id, doc, beyond)
        if doc is None:
            return beyond > 0 and existed and not unchanged
        if not existed or beyond == 0:
            self.total += 1
            return self._place(doc_id, doc, beyond)
        if unchanged:
            return self._place(doc_id, doc, beyond)
        if self.limit is None:
            self._hold(doc_id, None)
        return True

    def _place(self, doc_id: Any, doc: Mapping[str, Any], beyond: int) -> bool:
        if self.limit is None:
            self._hold(doc_id, None)
            return False
        key = self.key(doc)
        keys = self._keys
        if len(keys) < self.limit:
            if beyond > 0 and (not keys or key > keys[-1]):
                # A doc moved down a window with more docs beyond: the next may come first.
                return True
            self._hold(doc_id, key)
            return False
        if key < keys[-1]:
            self._hold(doc_id, key)
            last = self.ids[-1]
            self.evicted.append(last)
            self._release(last)
        return False


class PendingDelta:
    """One subscription's changes during a tick, coalesced into a single `delta`."""

    __slots__ = ("docs", "start", "start_order", "start_total")

    def __init__(self, view: LiveView) -> None:
        self.start: dict[Any, bool] = {}
        self.docs: dict[Any, Any] = {}
        self.start_order: tuple[Any, ...] | None = tuple(view.ids) if view.windowed else None
        self.start_total = view.total

    def touch(self, view: LiveView, doc_id: Any, doc: Any | None) -> None:
        """Note `doc_id` (held or not at the start of the tick) and its latest public form."""
        if doc_id not in self.start:
            self.start[doc_id] = doc_id in view.held
        if doc is not None:
            self.docs[doc_id] = doc

    def evicted(self, view: LiveView) -> None:
        """Note the docs `view.apply` pushed out (they were held at the start of the tick)."""
        for doc_id in view.evicted:
            self.start.setdefault(doc_id, True)
        view.evicted.clear()

    def render(self, view: LiveView) -> dict[str, Any] | None:
        """The delta payload (without subscription_id), or None when nothing changed."""
        held, docs = view.held, self.docs
        inserts: list[Any] = []
        updates: list[Any] = []
        deletes: list[Any] = []
        for doc_id, was in self.start.items():
            now = doc_id in held
            if now and doc_id in docs:
                (updates if was else inserts).append(docs[doc_id])
            elif was and not now:
                deletes.append(doc_id)
        out: dict[str, Any] = {}
        changes: dict[str, Any] = {}
        if inserts:
            changes["inserts"] = inserts
        if updates:
            changes["updates"] = updates
        if deletes:
            changes["deletes"] = deletes
        if view.total != self.start_total:
            out["total"] = view.total
        order_moved = self.start_order is not None and tuple(view.ids) != self.start_order
        if not changes and not out and not order_moved:
            return None
        if self.start_order is not None:
            out["order"] = list(view.ids)
        out["changes"] = changes
        return out
