"""`/api/files/...`: downloads of stored files, their thumbnails, and file tokens.

- `GET /api/files/{collection}/{id}/{field}/{filename}` streams one file of a document the
  caller may read (the collection's read rule, as `GET /api/collections/{c}/{id}`; a doc
  the caller may not read is a 404 like a missing one). A `protected` field's files need
  `?token=` from `POST /api/files/token` instead (storage/tokens.py).
- `?thumb=WxH` serves a thumbnail in one of the field's `thumbs` sizes (storage/thumbs.py),
  made on first request off the event loop and cached in storage beside the file.
- `POST /api/files/token` `{collection, id, field, name}` → `{token, expires_at}`, under the
  read rule.

Responses: `ETag` (the sha256) with `If-None-Match` → 304; single `Range` requests → 206
(416 when unsatisfiable); `Cache-Control: private` (files never change under a name; a
protected one is `no-store`); `Content-Type` as sniffed at upload; `Content-Disposition`
`inline` only for types a browser shows without running anything (storage/sniff.py), else
`attachment`; always `X-Content-Type-Options: nosniff` and a sandboxing
`Content-Security-Policy`. These routes do not hold the schema gate for the transfer
(api/pipeline.py), only for their database reads.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from alyx_server.api.bodies import read_object
from alyx_server.api.collections import access_for
from alyx_server.api.file_service import FILES, FileService
from alyx_server.api.operations import stored_doc
from alyx_server.api.pipeline import HTTP_POLICY, json_response
from alyx_server.api.runtime import RUNTIME, CollectionView
from alyx_server.db import get_doc
from alyx_server.errors import NotFound, Unauthorized, ValidationError
from alyx_server.schema.model import Field, FieldType
from alyx_server.storage.backend import ObjectMissing, Storage
from alyx_server.storage.files import find_file, folder_of
from alyx_server.storage.sniff import is_passive
from alyx_server.storage.thumbs import THUMB_SOURCE_TYPES, make_thumbnail, parse_thumb, thumb_type
from alyx_server.storage.tokens import FileRef
from alyx_server.tools.timestamps import format_timestamp

__all__ = ["add_routes", "serve_file"]

_THUMB_SOURCE_MAX = 50 * 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _setting(request: web.Request, path: str, fallback: int | float) -> Any:
    value = request.app[RUNTIME].settings.values.get(path, fallback)
    return value if isinstance(value, int | float) else fallback


def _file_field(view: CollectionView, name: str) -> Field:
    f = view.collection.field(name)
    if f is None or f.type is not FieldType.FILE or f.internal:
        raise NotFound(f"{view.name} has no file field {name!r}", code="FILE_NOT_FOUND")
    return f


async def _read_doc(
    request: web.Request, view: CollectionView, doc_id: str, *, by_rule: bool
) -> dict[str, Any]:
    rt = request.app[RUNTIME]
    db = rt.ready_db()
    access = access_for(rt, request)

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        if by_rule:
            return stored_doc(conn, view, doc_id, access)
        doc = get_doc(conn, view.collection, doc_id, internal=True)
        if doc is None:
            raise NotFound(f"no document {doc_id!r} in {view.name}")
        return doc

    async with request.app[HTTP_POLICY].gate.shared():
        return db.read_now(read)


async def download(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    service = request.app[FILES]
    info = request.match_info
    view = rt.catalog.get(info["collection"])
    f = _file_field(view, info["field"])
    assert f.file is not None
    token = request.query.get("token")
    if f.file.protected:
        if not token:
            raise Unauthorized(
                f"{view.name}.{f.name} is protected: ask POST /api/files/token for a token and "
                "add it as ?token=", code="UNAUTHORIZED",
            )  # fmt: skip
        ref = FileRef(view.name, info["id"], f.name, info["filename"])
        service.tokens.check(token, ref, rt.clock.now().timestamp())
    doc = await _read_doc(request, view, info["id"], by_rule=not f.file.protected)
    return await serve_file(request, view, f.name, doc, info["filename"])


async def serve_file(
    request: web.Request, view: CollectionView, field_name: str, doc: dict[str, Any], filename: str
) -> web.StreamResponse:
    """Send the file `filename` of `doc`'s field (or its `?thumb=` thumbnail), the caller's
    right to it already checked: the download route, and the admin UI's data browser."""
    service = request.app[FILES]
    f = _file_field(view, field_name)
    assert f.file is not None
    entry = find_file(doc.get(f.name), filename)
    if entry is None:
        doc_id = doc.get(view.codec.pk.name)
        raise NotFound(f"{view.name}.{f.name} of {doc_id!r} has no file {filename!r}", code="FILE_NOT_FOUND")
    thumb = request.query.get("thumb")
    if thumb is not None:
        return await _thumbnail(request, service, f, entry, thumb)
    return await _send(request, service.storage, entry["key"], int(entry["size"]), str(entry["type"]),
                       str(entry["sha256"]), str(entry["name"]), protected=f.file.protected)  # fmt: skip


async def _thumbnail(
    request: web.Request, service: FileService, f: Field, entry: dict[str, Any], thumb: str
) -> web.StreamResponse:
    assert f.file is not None
    spec = parse_thumb(thumb, f.file.thumbs)
    mime = str(entry["type"])
    if mime not in THUMB_SOURCE_TYPES:
        raise ValidationError(f"no thumbnails of {mime} files", code="INVALID_THUMB")
    key = folder_of(str(entry["key"])) + f"thumbs/{spec.text}"
    etag_base = f"{entry['sha256']}-{spec.text}"
    size = await service.storage.stat(key)
    if size is None:
        if int(entry["size"]) > _THUMB_SOURCE_MAX:
            raise ValidationError("the image is too large to make a thumbnail of", code="IMAGE_TOO_LARGE")
        async with service.thumb_slots:
            data = b"".join([c async for c in service.storage.get(str(entry["key"]))])
            max_pixels = int(_setting(request, "storage.thumb_max_pixels", 40_000_000))
            out, _ = await asyncio.to_thread(make_thumbnail, data, mime, spec, max_pixels)
            del data
            stored = await service.storage.put(key, _once(out), max_size=len(out))
        size = stored.size
    name = str(entry["name"]).rsplit(".", 1)[0] + f"_{spec.text}"
    return await _send(request, service.storage, key, size, thumb_type(mime), etag_base, name,
                       protected=f.file.protected)  # fmt: skip


async def _once(data: bytes) -> Any:
    yield data


def _disposition(mime: str, name: str) -> str:
    kind = "inline" if is_passive(mime) else "attachment"
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) of a single satisfiable range; None to send everything."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges or another unit: the whole file (RFC 9110 allows it)
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        start, end = max(size - int(last), 0), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end or size == 0:
        raise _Unsatisfiable
    return start, end


class _Unsatisfiable(Exception):
    pass


async def _send(
    request: web.Request, storage: Storage, key: str, size: int, mime: str, sha256: str, name: str,
    *, protected: bool,
) -> web.StreamResponse:  # fmt: skip
    etag = f'"{sha256}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-store" if protected else "private, max-age=86400, immutable",
        "Content-Disposition": _disposition(mime, name),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        "Accept-Ranges": "bytes",
    }
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    if_range = request.headers.get("If-Range")
    try:
        wanted = _range(request.headers.get("Range"), size) if if_range in (None, etag) else None
    except _Unsatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=headers)
    start, end = wanted if wanted is not None else (0, size - 1)
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    response.content_type = mime
    if mime == "text/plain":
        response.charset = "utf-8"
    if wanted:
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    response.content_length = end - start + 1 if size else 0
    if request.method == "HEAD" or size == 0:
        await response.prepare(request)
        await response.write_eof()
        return response
    chunks = storage.get(key, start, end)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""
    except ObjectMissing as e:
        raise NotFound("the stored file is missing", code="FILE_NOT_FOUND") from e
    await response.prepare(request)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def issue_token(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    service = request.app[FILES]
    body = await read_object(request)
    wanted = {k: body.get(k) for k in ("collection", "id", "field", "name")}
    if isinstance(wanted["id"], float) and wanted["id"].is_integer():
        wanted["id"] = int(wanted["id"])  # JSON's 1.0 is the integer 1 (JSON Schema agrees)
    missing = [k for k, v in wanted.items() if not isinstance(v, str | int) or isinstance(v, bool) or v == ""]
    if missing:
        raise ValidationError(
            f"send {{collection, id, field, name}}; missing or not text: {', '.join(missing)}",
            code="VALIDATION_ERROR",
        )
    view = rt.catalog.get(str(wanted["collection"]))
    f = _file_field(view, str(wanted["field"]))
    doc = await _read_doc(request, view, str(wanted["id"]), by_rule=True)
    if find_file(doc.get(f.name), str(wanted["name"])) is None:
        raise NotFound(
            f"{view.name}.{f.name} of {wanted['id']!r} has no file {wanted['name']!r}", code="FILE_NOT_FOUND"
        )
    ttl = float(_setting(request, "storage.file_token_ttl", 120.0))
    now = rt.clock.now()
    expires = now.timestamp() + ttl
    ref = FileRef(view.name, str(wanted["id"]), f.name, str(wanted["name"]))
    token = service.tokens.issue(ref, expires)
    return json_response(
        {"token": token, "expires_at": format_timestamp(datetime.fromtimestamp(int(expires), UTC))}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/files/{collection}/{id}/{field}/{filename}", download)
    app.router.add_post("/api/files/token", issue_token)
