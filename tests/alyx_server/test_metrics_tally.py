"""The HTTP series count every request, whether `/metrics` renders before or after the
event loop has added the requests of its current pass (alyx_server/metrics.py)."""

from __future__ import annotations

import asyncio
import re

from alyx_server.metrics import Metrics

ROUTE = "/api/collections/{collection}/{id}"
SECONDS = (0.0004, 0.003, 0.003, 2.0, 9.0)


def series(metrics: Metrics) -> dict[str, float]:
    """Every sample of the rendered text, by its line's name and labels."""
    found: dict[str, float] = {}
    for line in metrics.render().decode().splitlines():
        match = re.fullmatch(r"(\S+) (\S+)", line)
        if match and not line.startswith("#"):
            found[match[1]] = float(match[2])
    return found


def check(found: dict[str, float], count: int, total: float, buckets: dict[str, int]) -> None:
    labels = f'method="GET",route="{ROUTE}",status="200"'
    assert found[f"alyx_http_requests_total{{{labels}}}"] == count
    assert found[f'alyx_http_request_duration_seconds_count{{route="{ROUTE}"}}'] == count
    assert abs(found[f'alyx_http_request_duration_seconds_sum{{route="{ROUTE}"}}'] - total) < 1e-9
    for bound, expected in buckets.items():
        key = f'alyx_http_request_duration_seconds_bucket{{le="{bound}",route="{ROUTE}"}}'
        assert found[key] == expected, (bound, found[key])


def test_requests_observed_outside_an_event_loop_are_in_the_series_at_once() -> None:
    metrics = Metrics()
    for seconds in SECONDS:
        metrics.observe_request(ROUTE, "GET", 200, seconds)
    value = metrics.registry.get_sample_value(
        "alyx_http_requests_total", {"route": ROUTE, "method": "GET", "status": "200"}
    )
    assert value == len(SECONDS)
    check(
        series(metrics), 5, sum(SECONDS), {"0.0005": 1, "0.001": 1, "0.005": 3, "2.5": 4, "5.0": 4, "+Inf": 5}
    )


async def test_requests_of_the_current_pass_are_rendered_and_added_by_the_next() -> None:
    metrics = Metrics()
    labels = {"route": ROUTE, "method": "GET", "status": "200"}
    for seconds in SECONDS[:3]:
        metrics.observe_request(ROUTE, "GET", 200, seconds)
    check(series(metrics), 3, sum(SECONDS[:3]), {"0.0005": 1, "0.005": 3, "+Inf": 3})
    for seconds in SECONDS[3:]:
        metrics.observe_request(ROUTE, "GET", 200, seconds)
    await asyncio.sleep(0)  # the loop's next pass adds them
    assert metrics.registry.get_sample_value("alyx_http_requests_total", labels) == 5
    check(series(metrics), 5, sum(SECONDS), {"0.0005": 1, "0.005": 3, "2.5": 4, "+Inf": 5})
