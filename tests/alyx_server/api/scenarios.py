"""Table-driven API tests: a `Scenario` row is one request and the answer it must get.

The idea is PocketBase's `ApiScenario`: each row names who calls (a bearer token taken
from the test's seeded `names`), what is sent, and the status, error code, message and
body values expected. A test file seeds what its rows need (documents, accounts), then
`run_scenario` sends the row to the real application and checks the answer, including
the error envelope of SPEC §7 whenever a code is expected.

Placeholders `{name}` in the path, the body and the expected values are filled from
`names` (`{post}` -> a seeded document's id). `token` is a key of `names` whose value
is sent as `Authorization: Bearer ...`, or a function of `names` that builds the token
(a forged or altered one). `before` runs on `names` just before the request (moving an
injected clock, for example).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient

__all__ = ["Names", "Scenario", "fill", "run_scenario"]

Names = Mapping[str, Any]
_ENVELOPE = {"error", "code", "details", "request_id", "timestamp"}


@dataclass(frozen=True)
class Scenario:
    """One request and what must come back."""

    name: str
    method: str
    path: str
    body: Any = None
    raw: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    token: str | Callable[[Names], str] | None = None
    # Settings overrides of the application this row runs on (files that build one per row),
    # and whether the file's seed runs first (a closed registration cannot seed an account).
    settings: Mapping[str, object] = field(default_factory=dict)
    seed: bool = True
    before: Callable[[Names], None] | None = None
    status: int = 200
    code: str | None = None
    error: str | None = None  # the whole message
    error_starts: str | None = None  # how the message begins
    message: str | None = None  # a part of the message
    # Body values by dotted path ("user.email", "details.0.field"); each must equal the value.
    expect: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def fill(value: Any, names: Names) -> Any:
    """`value` with each `{name}` in its strings replaced from `names`."""
    if isinstance(value, str):
        return value.format_map(names) if "{" in value and "}" in value else value
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    return value


def _at(body: Any, path: str) -> Any:
    for key in path.split("."):
        body = body[int(key)] if isinstance(body, list) else body[key]
    return body


async def run_scenario(client: TestClient[Any, Any], scenario: Scenario, names: Names | None = None) -> Any:
    """Send `scenario`'s request, assert its answer; the parsed body (None for a 204)."""
    names = names or {}
    if scenario.before is not None:
        scenario.before(names)
    headers = dict(scenario.headers)
    token = scenario.token
    if token is not None:
        headers["Authorization"] = f"Bearer {token(names) if callable(token) else names[token]}"
    kwargs: dict[str, Any] = {"headers": headers}
    if scenario.raw is not None:
        kwargs["data"] = scenario.raw
    elif scenario.body is not None:
        kwargs["json"] = fill(scenario.body, names)
    response = await client.request(scenario.method, fill(scenario.path, names), **kwargs)
    assert response.status == scenario.status, (scenario.name, await response.text())
    assert response.headers["X-Request-ID"]
    if scenario.status == 204:
        assert await response.read() == b""
        return None
    body = await response.json()
    if scenario.code is not None:
        assert set(body) == _ENVELOPE, body
        assert body["code"] == scenario.code, body
        assert body["request_id"] == response.headers["X-Request-ID"]
        assert body["timestamp"].endswith("Z")
    if scenario.error is not None:
        assert body["error"] == scenario.error, body
    if scenario.error_starts is not None:
        assert body["error"].startswith(scenario.error_starts), body
    if scenario.message is not None:
        assert scenario.message in body["error"], body
    for path, value in fill(dict(scenario.expect), names).items():
        assert _at(body, path) == value, (path, body)
    return body
