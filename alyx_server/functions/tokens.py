"""Internal API tokens: one per invocation, valid only while that invocation runs.

A function calls the internal API with the token its request carried. The token maps
to a `Grant`: who invoked the function (the database calls run as that caller) and
whether the function is privileged. `revoke` runs as soon as the invocation ends, however
it ends, so a token a function leaked is useless afterwards.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from alyx_server.rules import Auth, RequestInfo

__all__ = ["Grant", "TokenRegistry"]


@dataclass(frozen=True, slots=True)
class Grant:
    """What one invocation's token allows."""

    function: str
    auth: Auth | None
    privileged: bool
    request: RequestInfo


class TokenRegistry:
    """Live invocation tokens (in memory: they never outlive the server)."""

    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}

    def issue(self, grant: Grant) -> str:
        token = secrets.token_urlsafe(32)
        self._grants[token] = grant
        return token

    def get(self, token: str) -> Grant | None:
        return self._grants.get(token)

    def revoke(self, token: str) -> None:
        self._grants.pop(token, None)

    def __len__(self) -> int:
        return len(self._grants)
