"""Fixtures: the real application (create_app) with OwnerPolicy, on a real port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from alyx_server.app import create_app
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.realtime.support import OwnerPolicy, settings_for, write_project

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock("2026-03-01T12:00:00.000Z")


@pytest.fixture
def overrides() -> dict[str, object]:
    """Settings a test module may change (e.g. realtime.send_queue)."""
    return {}


@pytest.fixture
def app(project: Path, clock: ManualClock, overrides: dict[str, object]) -> web.Application:
    return create_app(settings_for(project, **overrides), clock=clock, policy=OwnerPolicy())


@pytest.fixture
async def client(app: web.Application, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(app)
