"""The HTTP side of `alyx deploy`: calls to a running server's /api/admin/deploy/* routes.

Every call sends the deploy token as a bearer token. A refusal becomes one CommandError
line holding the server's error code and message (SPEC section 7's envelope); a server
that cannot be reached is named with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import requests

from alyx_cli.deploy.targets import DeployTarget
from alyx_cli.output import CommandError

__all__ = ["DeployClient", "UploadBody"]

_TIMEOUT = (10.0, 600.0)  # connect, read: a deploy with migrations may take minutes


class UploadBody:
    """The bundle bytes as a file-like body that reports its progress as it is read.

    Having a length, it is sent with a Content-Length (never chunked)."""

    def __init__(self, data: bytes, advance: Callable[[int], None], chunk: int = 64 * 1024) -> None:
        self._data = memoryview(data)
        self._offset = 0
        self._advance = advance
        self._chunk = chunk

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int = -1) -> bytes:
        size = self._chunk if size is None or size < 0 else min(size, self._chunk)
        piece = bytes(self._data[self._offset : self._offset + size])
        self._offset += len(piece)
        if piece:
            self._advance(len(piece))
        return piece


class DeployClient:
    """One deploy target's routes; `session` is injectable for tests of the edge."""

    def __init__(self, target: DeployTarget, session: requests.Session | None = None) -> None:
        self.target = target
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {target.token}"

    def prepare(self, body: UploadBody, sha256: str, params: Mapping[str, str]) -> dict[str, Any]:
        sent = {"Content-Type": "application/gzip", "X-Bundle-SHA256": sha256}
        return self._call("POST", "prepare", data=body, headers=sent, params=dict(params))

    def execute(self, payload: Mapping[str, object]) -> dict[str, Any]:
        return self._call("POST", "execute", json=dict(payload))

    def rollback(self, payload: Mapping[str, object]) -> dict[str, Any]:
        return self._call("POST", "rollback", json=dict(payload))

    def history(self) -> dict[str, Any]:
        return self._call("GET", "history")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "status")

    def _call(self, method: str, route: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.target.url}/api/admin/deploy/{route}"
        try:
            response = self.session.request(method, url, timeout=_TIMEOUT, **kwargs)
        except requests.RequestException as e:
            raise CommandError(f"cannot reach {self.target.url}: {_reason(e)}") from e
        try:
            body = response.json()
        except ValueError:  # requests' JSONDecodeError is one
            body = None
        if response.status_code >= 400:
            raise CommandError(_refusal(route, response, body))
        if not isinstance(body, dict):
            raise CommandError(
                f"{url} answered {response.status_code} without a JSON object: is it an Alyx server?"
            )
        return body


def _refusal(route: str, response: requests.Response, body: object) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body.get("code") or response.status_code
        message = f"{route}: {code}: {body['error']}"
        details = body.get("details")
        if isinstance(details, list) and details:
            message += (
                " ("
                + "; ".join(str(d.get("message", d)) if isinstance(d, dict) else str(d) for d in details)
                + ")"
            )
        return message
    if response.status_code == 404:
        return (
            f"{route}: {response.url} answered 404: the server has no deploy routes (is it Alyx, and recent?)"
        )
    return f"{route}: the server answered {response.status_code} {response.reason}"


def _reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.ConnectionError):
        return "connection refused or host unreachable"
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    return type(error).__name__
