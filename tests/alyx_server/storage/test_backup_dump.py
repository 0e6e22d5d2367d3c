"""`alyx db backup`/`restore` carry the local file storage, `alyx db dump` lists each
file's metadata; and a realtime subscriber sees an upload's metadata, never a secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from alyx_cli.main import cli
from alyx_server.app import create_app
from tests.alyx_server.auth.support import bearer, register
from tests.alyx_server.storage.support import form, png, settings_for


async def _project_with_a_file(root: Path, aiohttp_client: Any) -> tuple[dict[str, Any], bytes]:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings_for(root)))
    account = await register(client, "ada@example.com")
    image = png()
    data = form({"title": "t", "owner": account.id}, [("avatar", "me.png", image)])
    r = await client.post("/api/collections/docs", data=data, headers=bearer(account.access))
    assert r.status == 201, await r.text()
    doc = await r.json()
    await client.close()
    return doc, image


def _alyx(root: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "-C", str(root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_backup_and_restore_carry_the_local_files(tmp_path: Path, aiohttp_client: Any) -> None:
    root = tmp_path / "project"
    doc, image = await _project_with_a_file(root, aiohttp_client)
    backup = tmp_path / "backups" / "today.db"
    out = _alyx(root, "db", "backup", str(backup))
    assert "copied 1 stored file(s)" in out, out
    key = doc["avatar"]["key"]
    assert (tmp_path / "backups" / "today.db.files" / key).read_bytes() == image
    # The files are lost (a disk replaced); the restore brings them back with the data.
    storage = root / "data" / "storage"
    for path in sorted(storage.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    out = _alyx(root, "db", "restore", str(backup), "--yes")
    assert "restored 1 stored file(s)" in out, out
    assert (storage / key).read_bytes() == image


async def test_dump_lists_file_metadata(tmp_path: Path, aiohttp_client: Any) -> None:
    root = tmp_path / "project"
    doc, image = await _project_with_a_file(root, aiohttp_client)
    out = tmp_path / "dump.json"
    _alyx(root, "db", "dump", str(out))
    (dumped,) = json.loads(out.read_text())["docs"]
    avatar = dumped["avatar"]
    assert avatar == doc["avatar"] and avatar["size"] == len(image) and avatar["type"] == "image/png"
    assert set(avatar) == {"name", "size", "type", "sha256", "key"}


async def test_a_dropped_file_field_loses_its_files_after_the_migration(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    root = tmp_path / "project"
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings_for(root)))
    account = await register(client, "ada@example.com")
    files = [("avatar", "me.png", png()), ("attachments", "a.txt", b"a"), ("attachments", "b.txt", b"b")]
    data = form({"title": "t", "owner": account.id}, files)
    r = await client.post("/api/collections/docs", data=data, headers=bearer(account.access))
    assert r.status == 201, await r.text()
    doc = await r.json()
    await client.close()
    storage = root / "data" / "storage"
    assert {p.parts[1] for p in (q.relative_to(storage) for q in storage.rglob("*") if q.is_file())} == {
        "avatar", "attachments",
    }  # fmt: skip
    # attachments dropped, avatar renamed to picture (its files stay: picture references them).
    schema = (root / "schema.yaml").read_text()
    schema = schema.replace("      attachments: { type: file, nullable: true, maxFiles: 3 }\n", "")
    (root / "schema.yaml").write_text(schema.replace("      avatar:", "      picture:"))
    (root / "migrations").mkdir()
    (root / "migrations" / "001_files.yaml").write_text(
        "version: 1\noperations:\n"
        "  - drop_field: { collection: docs, field: attachments }\n"
        "  - rename_field: { collection: docs, from: avatar, to: picture }\n"
    )
    out = await asyncio.to_thread(_alyx, root, "migrate", "apply")  # it runs its own event loop
    assert "deleted 2 stored file(s) of removed file fields" in out, out
    left = sorted(p.relative_to(storage).as_posix() for p in storage.rglob("*") if p.is_file())
    assert left == [doc["avatar"]["key"]]
