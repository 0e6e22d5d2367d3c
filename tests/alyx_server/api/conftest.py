"""Fixtures: a project on disk and the real application from `create_app` on a real port;
the account fixtures (`auth_app`, `clock`, `smtp`) of tests/alyx_server/auth/support.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from alyx_server.app import create_app
from tests.alyx_server.api.projects import make_settings, write_project
from tests.alyx_server.auth.support import auth_app, clock, smtp

__all__ = ["ClientFactory", "app", "auth_app", "client", "clock", "project", "smtp", "statements"]

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


@pytest.fixture
def statements() -> list[str]:
    """Every SQL statement that document reads ran (filled through create_app's sql_trace)."""
    return []


@pytest.fixture
def app(project: Path, statements: list[str]) -> web.Application:
    return create_app(make_settings(project), sql_trace=statements.append)


@pytest.fixture
async def client(app: web.Application, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(app)
