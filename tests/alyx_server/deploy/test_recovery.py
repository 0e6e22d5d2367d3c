"""A server killed between a deploy's commit and the end of its file swap: at the next start
the new version is fully in place (files from the stored bundle), and history says so.

The state a `kill -9` leaves at that moment is made with the real pieces execute runs
(`compute_plan`, then `commit`, the database commit point), without the swap that follows;
`create_app` then starts on it. A kill before the commit leaves no row, and the old
version in place: the same test checks nothing is touched when no row is left swapping.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from alyx_server.app import create_app
from alyx_server.auth.admin_tokens import create_token
from alyx_server.config import Settings, default_settings
from alyx_server.deploy import build_bundle, read_bundle
from alyx_server.deploy.execute import commit, deployments_folder, stage
from alyx_server.deploy.plan import compute_plan
from alyx_server.deploy.store import next_version, write_bundle_file
from alyx_server.migrations import apply_migrations
from alyx_server.schema.loader import load_schema
from tests.schemas import NOTES

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

WITH_BODY = NOTES.replace(
    "      title: { type: string }\n",
    "      title: { type: string }\n      body:  { type: string, nullable: true }\n",
)
HELLO = "def handler(request):\n    return {'v': 2}\n"


def server(root: Path) -> Settings:
    root.mkdir(parents=True)
    (root / "schema.yaml").write_text(NOTES, encoding="utf-8")
    (root / "functions").mkdir()
    (root / "functions" / "old.py").write_text("def handler(request):\n    return 1\n", encoding="utf-8")
    settings = default_settings(root, "dev", overrides={"realtime.poll_interval": "50ms"})
    settings.database.path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(settings.database.path, isolation_level=None)
    try:
        apply_migrations(conn, load_schema(root / "schema.yaml"), root / "migrations")
        create_token(
            conn, name="ci", kind="deploy", permissions=(), expires_at=None, now="2026-01-01T00:00:00Z"
        )
    finally:
        conn.close()
    return settings


def killed_after_commit(settings: Settings, dev: Path) -> str:
    """Everything execute does up to its commit point; returns the bundle's hash."""
    bundle = build_bundle(dev)
    contents = read_bundle(bundle.data, expected_sha256=bundle.sha256)
    folder = deployments_folder(settings)
    write_bundle_file(folder, contents.sha256, bundle.data)
    staged = stage(contents, folder)
    conn = sqlite3.connect(settings.database.path, isolation_level=None)
    try:
        plan = compute_plan(conn, contents, staged, settings, next_version(conn))
        commit(conn, plan, contents, staged, settings, details={"message": "v1"})
    finally:
        conn.close()
    return contents.sha256


def tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


async def test_a_deploy_cut_short_after_its_commit_is_finished_at_start(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    settings = server(tmp_path / "server")
    dev = tmp_path / "dev"
    (dev / "functions").mkdir(parents=True)
    (dev / "schema.yaml").write_text(WITH_BODY, encoding="utf-8")
    (dev / "functions" / "hello.py").write_text(HELLO, encoding="utf-8")
    sha = killed_after_commit(settings, dev)
    project = settings.project_dir
    # The moment of the kill: the database has the new version, the files the old one.
    assert (project / "schema.yaml").read_text(encoding="utf-8") == NOTES

    client = await aiohttp_client(create_app(settings))

    assert (project / "schema.yaml").read_text(encoding="utf-8") == WITH_BODY
    assert tree(project / "functions") == tree(dev / "functions")
    created = await client.post("/api/collections/notes", json={"title": "t", "body": "b"})
    assert created.status == 201, await created.text()
    conn = sqlite3.connect(settings.database.path)
    try:
        secret = create_token(
            conn, name="ops", kind="admin", permissions=(), expires_at=None, now="2026-01-01T00:00:00Z"
        )[0]
        conn.commit()
    finally:
        conn.close()
    response = await client.get("/api/admin/deploy/history", headers={"Authorization": f"Bearer {secret}"})
    [row] = (await response.json())["deployments"]
    assert (row["version"], row["bundle_sha256"], row["outcome"]) == (1, sha, "applied")
    assert row["summary"]["recovered"] is True
    assert not (deployments_folder(settings) / "staging").exists()


async def test_a_start_without_an_interrupted_deploy_changes_no_file(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    settings = server(tmp_path / "server")
    before = tree(settings.project_dir)
    await aiohttp_client(create_app(settings))
    after = {k: v for k, v in tree(settings.project_dir).items() if not k.startswith("data/")}
    assert after == {k: v for k, v in before.items() if not k.startswith("data/")}
