"""The generated Python client's file helpers against a real `alyx dev`: `upload` (create
and update, multipart), `file_url` (with a thumbnail size) and `file_token` (a protected
field), sync and asyncio; the bytes downloaded are the bytes uploaded."""

from __future__ import annotations

import importlib
import io
import sys
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.alyx_cli.codegen.conftest import generate_project
from tests.servers import AlyxProcess, cli_environment

PASSWORD = "correct horse 1"
SCHEMA = """\
version: 1
collections:
  albums:
    fields:
      id:       { type: uuid, primary: true, default: auto }
      owner:    { type: uuid, references: _alyx_users.id }
      title:    { type: string }
      cover:    { type: file, nullable: true, mimeTypes: [image/png], thumbs: [16x16] }
      pages:    { type: file, nullable: true, maxFiles: 4 }
      contract: { type: file, nullable: true, protected: true }
    rules:
      create: "auth != null && doc.owner == auth.id"
      read:   "auth != null && doc.owner == auth.id"
      update: "auth != null && doc.owner == auth.id"
      delete: "auth != null && doc.owner == auth.id"
"""


def _png(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "blue").save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlyxProcess]:
    project = tmp_path_factory.mktemp("files") / "project"
    (project / "functions").mkdir(parents=True)
    (project / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    env = cli_environment(ALYX_AUTH_RATE_LIMIT_REGISTER="off", ALYX_LOGGING_LEVEL="warning")
    with AlyxProcess(project, "dev", env=env, log=project / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def mod(server: AlyxProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("py-files-client")
    generate_project(server.project, out, ("python",))
    sys.path.insert(0, str(out / "python"))
    try:
        yield importlib.import_module("alyx_client")
    finally:
        sys.path.remove(str(out / "python"))
        for name in [m for m in sys.modules if m == "alyx_client" or m.startswith("alyx_client.")]:
            del sys.modules[name]


def _get(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, timeout=30)


def test_upload_download_thumbnail_and_protected_file(mod: ModuleType, server: AlyxProcess) -> None:
    tag = uuid.uuid4().hex[:8]
    image, contract = _png(), b"%PDF-1.4 signed"
    with mod.Alyx(server.url) as a:
        uid = a.auth.register(f"files-{tag}@example.com", PASSWORD)["user"]["id"]
        access = a.auth.tokens["access_token"]
        doc = a.albums.upload(
            {
                "cover": ("me.png", image),
                "pages": [("one.txt", b"page one"), ("two.txt", io.BytesIO(b"page two"))],
            },
            {"owner": uid, "title": "Trip"},
        )
        assert doc["title"] == "Trip"
        cover: Any = doc["cover"]
        assert cover["type"] == "image/png" and cover["size"] == len(image)
        assert [p["size"] for p in doc["pages"]] == [8, 8]

        url = a.albums.file_url(doc["id"], "cover", cover["name"])
        assert url == f"{server.url}/api/files/albums/{doc['id']}/cover/{cover['name']}"
        assert _get(url, access).content == image
        assert _get(url).status_code == 404  # the read rule: anonymous callers see nothing
        thumb = _get(a.albums.file_url(doc["id"], "cover", cover["name"], thumb="16x16"), access)
        assert thumb.status_code == 200
        assert Image.open(io.BytesIO(thumb.content)).size == (16, 16)

        # Update: append a page, remove one, add a protected file.
        first = doc["pages"][0]["name"]
        doc = a.albums.upload(
            {"pages+": ("three.txt", b"page three"), "contract": ("c.pdf", contract)},
            {"pages-": [first]},
            doc_id=doc["id"],
        )
        assert [p["size"] for p in doc["pages"]] == [8, 10]
        name = doc["contract"]["name"]
        bare = a.albums.file_url(doc["id"], "contract", name)
        assert _get(bare, access).status_code == 401  # protected: a file token, not the header
        token = a.albums.file_token(doc["id"], "contract", name)
        assert set(token) == {"token", "expires_at"}
        assert _get(a.albums.file_url(doc["id"], "contract", name, token=token["token"])).content == contract

        with pytest.raises(mod.ValidationError) as refused:
            a.albums.upload({"cover": ("fake.png", b"<html><script>x</script></html>")}, doc_id=doc["id"])
        assert refused.value.details[0]["code"] == "mime_type"


async def test_async_upload_and_download(mod: ModuleType, server: AlyxProcess) -> None:
    tag = uuid.uuid4().hex[:8]
    async with mod.AsyncAlyx(server.url) as a:
        uid = (await a.auth.register(f"files-a-{tag}@example.com", PASSWORD))["user"]["id"]
        data = bytes(range(256)) * 400
        doc = await a.albums.upload({"pages": [("blob.bin", data)]}, {"owner": uid, "title": "Raw"})
        url = a.albums.file_url(doc["id"], "pages", doc["pages"][0]["name"])
        async with httpx.AsyncClient() as http:
            got = await http.get(url, headers={"Authorization": f"Bearer {a.auth.tokens['access_token']}"})
        assert got.content == data
        assert got.headers["Content-Type"] == "application/octet-stream"
