"""`SubscriptionIndex`: which subscriptions a change may concern, without asking them all.

Per collection, each subscription is filed under one equality that all its matches
share (`Subscription.route`: from the filter, the `where` expression or the read rule
bound to the caller, e.g. `doc.owner == auth.id`), or among the unrouted ones. A changed
doc then reaches:

    the subscriptions filed under its current value of each routed field,
    the unrouted subscriptions,
    the subscriptions holding the doc (it may be leaving them), and
    the incomplete ones (a full window or a capped snapshot with more matches beyond),
      for updates and deletes that may change their `total`.

So the cost of a change grows with the subscriptions it concerns, not with all of them;
each candidate is then checked with its compiled predicate in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from alyx_server.realtime.subscriptions import Subscription
from alyx_server.realtime.windows import Holders

__all__ = ["CollectionRoutes", "SubscriptionIndex"]


class CollectionRoutes:
    """The subscriptions of one collection, filed for routing."""

    __slots__ = ("by_value", "count", "holders", "incomplete", "unrouted")

    def __init__(self) -> None:
        self.by_value: dict[str, dict[Any, set[Subscription]]] = {}
        self.unrouted: set[Subscription] = set()
        self.holders: Holders = {}
        self.incomplete: set[Subscription] = set()
        self.count = 0

    def add(self, sub: Subscription) -> None:
        route = sub.route
        if route is None:
            self.unrouted.add(sub)
        else:
            name, values = route
            table = self.by_value.setdefault(name, {})
            for value in values:
                table.setdefault(value, set()).add(sub)
        self.count += 1

    def remove(self, sub: Subscription) -> None:
        route = sub.route
        if route is None:
            self.unrouted.discard(sub)
        else:
            name, values = route
            table = self.by_value.get(name, {})
            for value in values:
                subs = table.get(value)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del table[value]
            if not table:
                self.by_value.pop(name, None)
        self.incomplete.discard(sub)
        self.count -= 1

    def candidates(
        self, doc_id: Any, doc: Mapping[str, Any] | None, existed: bool, changed: tuple[str, ...] | None
    ) -> set[Subscription]:
        """The subscriptions a change of `doc_id` (now `doc`, None if gone) may concern."""
        out = set(self.unrouted)
        if doc is not None:
            for name, table in self.by_value.items():
                value = doc.get(name)
                try:
                    subs = table.get(value)
                except TypeError:  # an unhashable json value routes nowhere
                    continue
                if subs:
                    out.update(subs)
        if existed:
            held = self.holders.get(doc_id)
            if held:
                out.update(held)
            for sub in self.incomplete:
                if not sub.unchanged_by(changed):
                    out.add(sub)
        return out

    def refresh(self, sub: Subscription) -> None:
        """File `sub` as incomplete or not, after its view changed."""
        if sub.view.beyond > 0 and sub.active:
            self.incomplete.add(sub)
        else:
            self.incomplete.discard(sub)


class SubscriptionIndex:
    """Every collection's routes; see the module docstring."""

    def __init__(self) -> None:
        self._collections: dict[str, CollectionRoutes] = {}
        # Looked-up collection -> the subscriptions whose read rule reads it (get, exists).
        self._dependents: dict[str, set[Subscription]] = {}

    def routes(self, collection: str) -> CollectionRoutes:
        found = self._collections.get(collection)
        if found is None:
            found = self._collections[collection] = CollectionRoutes()
        return found

    def find(self, collection: str) -> CollectionRoutes | None:
        """The routes of `collection`, or None when nobody subscribes to it."""
        found = self._collections.get(collection)
        return found if found is not None and found.count > 0 else None

    def add(self, sub: Subscription) -> None:
        self.routes(sub.query.collection.name).add(sub)
        for name in sub.depends:
            self._dependents.setdefault(name, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        routes = self._collections.get(sub.query.collection.name)
        if routes is not None:
            routes.remove(sub)
        for name in sub.depends:
            subs = self._dependents.get(name)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._dependents[name]

    def dependents(self, collections: Iterable[str]) -> set[Subscription]:
        """The subscriptions whose read rule looks up one of `collections`."""
        out: set[Subscription] = set()
        for name in collections:
            found = self._dependents.get(name)
            if found:
                out |= found
        return out

    def __len__(self) -> int:
        return sum(r.count for r in self._collections.values())

    def collections(self) -> Iterable[str]:
        return (name for name, r in self._collections.items() if r.count > 0)
