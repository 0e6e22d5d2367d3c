"""File fields over HTTP: the real application on a real port, real multipart clients."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from alyx_server.app import create_app
from alyx_server.storage.s3 import PART_SIZE
from alyx_server.tools.timestamps import ManualClock
from tests.alyx_server.auth.support import bearer, register
from tests.alyx_server.storage.support import bomb_png, form, png, raw_form, settings_for, stored_files

Client = TestClient[Any, Any]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "project"


@pytest.fixture
async def client(
    root: Path, clock: ManualClock, aiohttp_client: Any, storage_overrides: dict[str, object]
) -> Client:
    settings = settings_for(root, **storage_overrides)
    return await aiohttp_client(create_app(settings, clock=clock))  # type: ignore[no-any-return]


@pytest.fixture
async def ada(client: Client) -> dict[str, Any]:
    account = await register(client, "ada@example.com")
    return {"id": account.id, "h": bearer(account.access)}


@pytest.fixture
async def bob(client: Client) -> dict[str, Any]:
    account = await register(client, "bob@example.com")
    return {"id": account.id, "h": bearer(account.access)}


async def create(
    client: Client, who: dict[str, Any], files: list[tuple[str, str, bytes]], **fields: Any
) -> Any:
    data = form({"title": "t", "owner": who["id"], **fields}, files)
    return await client.post("/api/collections/docs", data=data, headers=who["h"])


async def test_upload_and_download_round_trip(client: Client, ada: dict[str, Any], root: Path) -> None:
    image, report = png(), b"%PDF-1.4 report body"
    r = await create(client, ada, [("avatar", "me.png", image), ("attachments", "report.pdf", report),
                                   ("attachments", "notes.txt", b"plain notes")], n="7")  # fmt: skip
    assert r.status == 201, await r.text()
    doc = await r.json()
    assert doc["n"] == 7
    avatar = doc["avatar"]
    assert avatar["type"] == "image/png" and avatar["size"] == len(image)
    assert avatar["sha256"] == hashlib.sha256(image).hexdigest()
    assert avatar["name"].startswith("me_") and avatar["name"].endswith(".png")
    assert [a["type"] for a in doc["attachments"]] == ["application/pdf", "text/plain"]
    got = await (await client.get(f"/api/collections/docs/{doc['id']}", headers=ada["h"])).json()
    assert got["avatar"] == avatar
    r = await client.get(f"/api/files/docs/{doc['id']}/avatar/{avatar['name']}", headers=ada["h"])
    assert r.status == 200
    assert await r.read() == image
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Disposition"].startswith("inline;")
    assert r.headers["ETag"] == f'"{avatar["sha256"]}"'
    assert "private" in r.headers["Cache-Control"]
    assert len(await stored_files(client.app)) == 3


async def test_range_and_etag(client: Client, ada: dict[str, Any]) -> None:
    body = bytes(range(256)) * 40
    doc = await (await create(client, ada, [("attachments", "data.bin", body)])).json()
    url = f"/api/files/docs/{doc['id']}/attachments/{doc['attachments'][0]['name']}"
    r = await client.get(url, headers={**ada["h"], "Range": "bytes=10-19"})
    assert r.status == 206 and await r.read() == body[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    r = await client.get(url, headers={**ada["h"], "Range": "bytes=-5"})
    assert r.status == 206 and await r.read() == body[-5:]
    r = await client.get(url, headers={**ada["h"], "Range": f"bytes={len(body)}-"})
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(body)}"
    etag = (await client.get(url, headers=ada["h"])).headers["ETag"]
    r = await client.get(url, headers={**ada["h"], "If-None-Match": etag})
    assert r.status == 304 and await r.read() == b""
    r = await client.get(url, headers={**ada["h"], "Range": "bytes=0-3", "If-Range": '"stale"'})
    assert r.status == 200 and await r.read() == body


async def test_html_or_svg_named_png_is_refused_by_mime_types(
    client: Client, ada: dict[str, Any], root: Path
) -> None:
    for content in (b"<html><script>alert(document.cookie)</script></html>",
                    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'):  # fmt: skip
        r = await create(client, ada, [("avatar", "cute.png", content)])
        assert r.status == 400
        body = await r.json()
        assert body["details"][0]["code"] == "mime_type"
        assert "does not accept" in body["error"]
    assert (await stored_files(client.app)) == []


async def test_active_content_is_served_as_attachment(client: Client, ada: dict[str, Any]) -> None:
    files = [
        ("attachments", "x.png", b"<!DOCTYPE html><script>alert(1)</script>"),
        ("attachments", "y.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'),
    ]
    doc = await (await create(client, ada, files)).json()
    for entry, mime in zip(doc["attachments"], ("text/html", "image/svg+xml"), strict=True):
        assert entry["type"] == mime
        r = await client.get(f"/api/files/docs/{doc['id']}/attachments/{entry['name']}", headers=ada["h"])
        assert r.headers["Content-Type"] == mime
        assert r.headers["Content-Disposition"].startswith("attachment;")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]


async def test_a_file_over_max_size_is_refused_and_nothing_stays(
    client: Client, ada: dict[str, Any], root: Path
) -> None:
    big = png() + b"\x00" * (1024 * 1024 + 10)
    r = await create(client, ada, [("attachments", "ok.txt", b"fine"), ("avatar", "big.png", big)])
    assert r.status == 413
    body = await r.json()
    assert body["code"] == "PAYLOAD_TOO_LARGE" and "maxSize of docs.avatar" in body["error"]
    assert (await stored_files(client.app)) == []
    r = await create(client, ada, [("attachments", "huge.bin", b"\x01" * (4 * 1024 * 1024 + 1))])
    assert r.status == 413 and "storage.max_file_size" in (await r.json())["error"]
    assert (await stored_files(client.app)) == []


async def test_a_declared_length_that_lies_stores_nothing(
    client: Client, ada: dict[str, Any], root: Path
) -> None:
    boundary = "XyZ"
    headers = {**ada["h"], "Content-Type": f"multipart/form-data; boundary={boundary}"}
    # A part that declares 10 bytes and carries 1.1 MiB: the bytes are counted, not the claim.
    big = png() + b"\x00" * (1024 * 1024 + 100)
    payload = raw_form(boundary, {"title": "t"}, [("avatar", "a.png", big)], extra="Content-Length: 10\r\n")
    r = await client.post("/api/collections/docs", data=io.BytesIO(payload), headers=headers)
    assert r.status == 413, (r.status, (await r.text())[:300])
    # The request's own Content-Length claims less than is sent: the body ends mid-part.
    small = raw_form(boundary, {"title": "t"}, [("attachments", "a.bin", b"\x02" * 200_000)])
    reader, writer = await asyncio.open_connection(client.host, client.port)
    auth = ada["h"]["Authorization"]
    head = (f"POST /api/collections/docs HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 300\r\n"
            "Connection: close\r\n\r\n").encode()  # fmt: skip
    writer.write(head + small)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert b" 400 " in answer.split(b"\r\n", 1)[0] and b" 201 " not in answer, answer[:300]
    assert (await stored_files(client.app)) == []
    listed = await (await client.get("/api/collections/docs", headers=ada["h"])).json()
    assert listed["docs"] == []


async def test_a_failed_write_leaves_no_file(client: Client, ada: dict[str, Any], root: Path) -> None:
    # The document fails validation after its files were stored.
    r = await create(client, ada, [("avatar", "a.png", png()), ("attachments", "b.txt", b"b")], title="")
    assert r.status == 400 and (await r.json())["details"][0]["field"] == "title"
    # One file too many for maxFiles.
    r = await create(client, ada, [("attachments", f"{i}.txt", b"x") for i in range(4)])
    assert r.status == 400 and (await r.json())["details"][0]["code"] == "max_files"
    # The create rule refuses (anonymous) after reading the body.
    r = await client.post(
        "/api/collections/docs", data=form({"title": "t"}, [("attachments", "c.txt", b"c")])
    )
    assert r.status in (401, 403)
    assert (await stored_files(client.app)) == []


async def test_a_client_that_goes_away_mid_upload_leaves_no_file(
    root: Path, aiohttp_client: Any, storage_overrides: dict[str, object]
) -> None:
    # Past one S3 part (8 MiB), so that each backend has a partial upload to clean up.
    settings = settings_for(root, **{**storage_overrides, "storage.max_file_size": "64MiB"})
    client = await aiohttp_client(create_app(settings))
    account = await register(client, "ada@example.com")
    boundary = "Cut"
    head = (f"POST /api/collections/docs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account.access}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 30000000\r\n\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="attachments"; filename="a.bin"\r\n\r\n'
            ).encode()  # fmt: skip
    _, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head + b"\x03" * (PART_SIZE + 2_000_000))
    await writer.drain()
    for _ in range(500):  # the partial upload appears once its first megabyte (or part) is written
        if await stored_files(client.app):
            break
        await asyncio.sleep(0.02)
    assert any(p.startswith(".partial/") for p in (await stored_files(client.app)))
    writer.close()
    for _ in range(500):
        if not (await stored_files(client.app)):
            break
        await asyncio.sleep(0.02)
    assert (await stored_files(client.app)) == []


async def test_replace_append_remove_and_delete_free_files_after_commit(
    client: Client, ada: dict[str, Any], root: Path
) -> None:
    doc = await (
        await create(client, ada, [("avatar", "a.png", png()), ("attachments", "1.txt", b"1")])
    ).json()
    url = f"/api/collections/docs/{doc['id']}"
    old = doc["avatar"]["key"]
    upload = form({}, [("avatar", "b.png", png(color="blue")), ("attachments+", "2.txt", b"2")])
    r = await client.patch(url, data=upload, headers=ada["h"])
    assert r.status == 200, await r.text()
    doc = await r.json()
    assert doc["avatar"]["key"] != old and len(doc["attachments"]) == 2
    assert all(not p.startswith(old.rsplit("/", 1)[0]) for p in (await stored_files(client.app)))
    first = doc["attachments"][0]["name"]
    r = await client.patch(url, json={"attachments-": [first], "avatar": None}, headers=ada["h"])
    doc = await r.json()
    assert r.status == 200 and doc["avatar"] is None and [a["name"] for a in doc["attachments"]] != [first]
    assert len(await stored_files(client.app)) == 1
    r = await client.patch(url, json={"attachments-": ["nope.txt"]}, headers=ada["h"])
    assert r.status == 400 and (await r.json())["details"][0]["code"] == "file_not_found"
    assert (await client.delete(url, headers=ada["h"])).status == 204
    assert (await stored_files(client.app)) == []


async def test_file_metadata_cannot_be_written_as_json(
    client: Client, ada: dict[str, Any], bob: dict[str, Any]
) -> None:
    doc = await (await create(client, ada, [("secret", "s.txt", b"ada's secret")])).json()
    forged = {"title": "t", "owner": bob["id"], "attachments": [doc["secret"]]}
    r = await client.post("/api/collections/docs", json=forged, headers=bob["h"])
    assert r.status == 400 and (await r.json())["details"][0]["field"] == "attachments"
    r = await client.post(
        "/api/collections/docs", data=form({**forged, "attachments": "x"}), headers=bob["h"]
    )
    assert r.status == 400


async def test_thumbnails(client: Client, ada: dict[str, Any], root: Path) -> None:
    doc = await (await create(client, ada, [("avatar", "a.png", png(200, 100))])).json()
    url = f"/api/files/docs/{doc['id']}/avatar/{doc['avatar']['name']}"
    r = await client.get(url + "?thumb=32x32", headers=ada["h"])
    assert r.status == 200 and r.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(await r.read())).size == (32, 32)
    r = await client.get(url + "?thumb=64x48f", headers=ada["h"])
    assert Image.open(io.BytesIO(await r.read())).size == (64, 32)
    assert sum("/thumbs/" in p for p in (await stored_files(client.app))) == 2
    r = await client.get(url + "?thumb=1000x1000", headers=ada["h"])
    body = await r.json()
    assert r.status == 400 and body["code"] == "INVALID_THUMB" and "32x32, 64x48f" in body["error"]
    assert sum("/thumbs/" in p for p in (await stored_files(client.app))) == 2


@pytest.mark.parametrize("side", [8000, 50_000])
async def test_a_decompression_bomb_gets_no_thumbnail(
    client: Client, ada: dict[str, Any], root: Path, side: int
) -> None:
    # 8000x8000 is over storage.thumb_max_pixels (40M); 50000x50000 over Pillow's own guard too.
    bomb = bomb_png(side, side)
    assert len(bomb) < 50_000
    doc = await (await create(client, ada, [("avatar", "bomb.png", bomb)])).json()
    url = f"/api/files/docs/{doc['id']}/avatar/{doc['avatar']['name']}?thumb=32x32"
    r = await client.get(url, headers=ada["h"])
    body = await r.json()
    assert r.status == 400 and body["code"] == "IMAGE_TOO_LARGE", body
    assert (f"{side}x{side}" if side == 8000 else "2500000000 pixels") in body["error"]
    assert not any("/thumbs/" in p for p in (await stored_files(client.app)))


async def test_reads_follow_the_read_rule(client: Client, ada: dict[str, Any], bob: dict[str, Any]) -> None:
    doc = await (await create(client, ada, [("attachments", "a.txt", b"ada only")])).json()
    url = f"/api/files/docs/{doc['id']}/attachments/{doc['attachments'][0]['name']}"
    assert (await client.get(url, headers=bob["h"])).status == 404
    assert (await client.get(url)).status == 404
    assert (await client.get(url + "x", headers=ada["h"])).status == 404
    assert (await client.get(url, headers=ada["h"])).status == 200


async def test_protected_files_need_a_token_for_that_file(
    client: Client, ada: dict[str, Any], bob: dict[str, Any], clock: ManualClock
) -> None:
    one = await (await create(client, ada, [("secret", "s.txt", b"secret one")])).json()
    two = await (await create(client, ada, [("secret", "t.txt", b"secret two")])).json()
    name = one["secret"]["name"]
    url = f"/api/files/docs/{one['id']}/secret/{name}"
    assert (await client.get(url, headers=ada["h"])).status == 401
    wanted = {"collection": "docs", "id": one["id"], "field": "secret", "name": name}
    assert (await client.post("/api/files/token", json=wanted, headers=bob["h"])).status == 404
    assert (await client.post("/api/files/token", json=wanted)).status in (401, 404)
    r = await client.post("/api/files/token", json=wanted, headers=ada["h"])
    assert r.status == 200
    token = (await r.json())["token"]
    r = await client.get(url, params={"token": token})
    assert r.status == 200 and await r.read() == b"secret one"
    assert r.headers["Cache-Control"] == "private, no-store"
    other = f"/api/files/docs/{two['id']}/secret/{two['secret']['name']}"
    r = await client.get(other, params={"token": token})
    assert r.status == 403 and "another file" in (await r.json())["error"]
    assert (await client.get(url, params={"token": token[:-2] + "AA"})).status == 401
    clock.advance(121)
    r = await client.get(url, params={"token": token})
    assert r.status == 401 and (await r.json())["code"] == "TOKEN_EXPIRED"


def _wide(text: str) -> str:
    """`text` in full-width characters (U+FF01..U+FF5E), which NFKC folds back to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow.txt", "shadow.txt"),
        ("a\x00b.txt", "ab.txt"),
        ("evil\r\nSet-Cookie: x.txt", "evilSet-Cookie_x.txt"),
        ("A" * 1000 + ".txt", "A" * 85 + ".txt"),
        (_wide("report.txt"), "report.txt"),  # full-width look-alikes
        (_wide("../../") + "x.txt", "x.txt"),
        ("photo\u202etxt.exe", "phototxt.exe"),
    ],
)
async def test_filenames_are_sanitised_end_to_end(
    client: Client, ada: dict[str, Any], root: Path, sent: str, expected: str
) -> None:
    payload = raw_form("B0", {"title": "t", "owner": ada["id"]}, [("attachments", sent, b"content")])
    headers = {**ada["h"], "Content-Type": "multipart/form-data; boundary=B0"}
    r = await client.post("/api/collections/docs", data=io.BytesIO(payload), headers=headers)
    assert r.status == 201, await r.text()
    entry = (await r.json())["attachments"][0]
    stem, _, ext = expected.rpartition(".") if "." in expected else (expected, "", "")
    assert entry["name"].startswith(stem + "_") and entry["name"].endswith("." + ext if ext else "")
    assert len(entry["name"]) <= 100
    (path,) = await stored_files(client.app)
    assert path.endswith("/" + entry["name"]) and path.startswith("docs/attachments/")
    r = await client.get(
        f"/api/files/docs/{(await r.json())['id']}/attachments/{entry['name']}", headers=ada["h"]
    )
    assert await r.read() == b"content"
    assert "\r" not in r.headers["Content-Disposition"]


async def test_batch_deletes_and_clears_free_files_after_commit_only(
    client: Client, ada: dict[str, Any], bob: dict[str, Any]
) -> None:
    one = await (
        await create(client, ada, [("avatar", "a.png", png()), ("attachments", "1.txt", b"1")])
    ).json()
    two = await (await create(client, ada, [("avatar", "b.png", png(color="blue"))])).json()
    theirs = await (await create(client, bob, [("attachments", "x.txt", b"x")])).json()
    assert len(await stored_files(client.app)) == 4
    # A batch that fails (bob's doc is not ada's to delete) deletes nothing and keeps every file.
    refused = {"operations": [
        {"method": "DELETE", "collection": "docs", "id": one["id"]},
        {"method": "DELETE", "collection": "docs", "id": theirs["id"]},
    ]}  # fmt: skip
    r = await client.post("/api/batch", json=refused, headers=ada["h"])
    assert r.status >= 400
    assert len(await stored_files(client.app)) == 4
    done = {"operations": [
        {"method": "DELETE", "collection": "docs", "id": one["id"]},
        {"method": "PATCH", "collection": "docs", "id": two["id"], "body": {"avatar": None}},
    ]}  # fmt: skip
    r = await client.post("/api/batch", json=done, headers=ada["h"])
    assert r.status == 200, await r.text()
    assert await stored_files(client.app) == [theirs["attachments"][0]["key"]]
