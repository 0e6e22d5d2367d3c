"""Prometheus series of SPEC §12, one registry per application (no process globals).

Lower layers (db, realtime, functions) receive the `Metrics` object they need as a
parameter; the HTTP pipeline records requests; `/metrics` renders the registry.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Every series Alyx exports, registered on a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "alyx_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "alyx_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.realtime_connections = Gauge(
            "alyx_realtime_connections", "Open realtime WebSocket connections", registry=r
        )
        self.realtime_subscriptions = Gauge(
            "alyx_realtime_subscriptions", "Live query subscriptions", registry=r
        )
        self.realtime_messages = Counter(
            "alyx_realtime_messages_sent", "Realtime messages sent by type", ["type"], registry=r
        )
        self.function_invocations = Counter(
            "alyx_function_invocations",
            "Function invocations by function and outcome",
            ["function", "outcome"],
            registry=r,
        )
        self.function_duration = Histogram(
            "alyx_function_duration_seconds",
            "Function invocation duration",
            ["function"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.write_batch_size = Histogram(
            "alyx_db_write_batch_size", "Writes committed per group-commit transaction",
            buckets=_BATCH_BUCKETS, registry=r,
        )  # fmt: skip

        # Labelled children, looked up once per (route, method, status): `labels()` takes
        # a lock and builds a key on every call, too much for every request.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        pair = self._children.get(key)
        if pair is None:
            pair = (self.http_requests.labels(route, method, str(status)), self.http_latency.labels(route))
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def observe_write_group(self, size: int, seconds: float) -> None:
        """A group-commit listener (`Database.add_group_listener`): one committed group."""
        self.write_batch_size.observe(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)
