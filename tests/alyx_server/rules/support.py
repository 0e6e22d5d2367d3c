"""A signed-in caller and a request, shared by the rules tests."""

from __future__ import annotations

from datetime import UTC, datetime

from alyx_server.rules.policy import RequestInfo

__all__ = ["AUTH", "REQUEST"]

AUTH = {
    "id": "u1",
    "email": "a@example.com",
    "role": "user",
    "verified": True,
    "metadata": {},
    "app_metadata": {},
}
REQUEST = RequestInfo("GET", "127.0.0.1", datetime(2026, 1, 31, tzinfo=UTC), {})
