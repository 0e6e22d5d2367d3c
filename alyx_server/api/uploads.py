"""Multipart uploads on create and update: fields and files in one request, all or nothing.

`receive(request, view)` reads the body of `POST /api/collections/{c}` and
`PATCH /api/collections/{c}/{id}`. A JSON body is read as usual. A `multipart/form-data`
body is streamed: each file part goes straight to storage (`Storage.put`, bounded memory,
sized against the field's `maxSize` and `storage.max_file_size`, its type sniffed from
its first bytes and checked against `mimeTypes`), each text part is a field value
converted to the field's type (or `@json`, a JSON object of fields). File parts are named
after their field: `avatar` (replaces), `docs+` (appends to a multiple field); text parts
`docs-` name files to remove. Such requests skip the pipeline's body limit and pre-read
(api/pipeline.py): text parts together are bounded by `server.max_body_size`, and the
schema gate is taken here once the body is in, so a slow upload never holds a deploy up.

If anything fails (a bad part, a file too large or of the wrong type, a client that goes
away, the document's validation, a rule, the write itself), the files this request stored
are deleted before the error is answered; `Upload.release` deletes the files the committed
write replaced, after the commit and never before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from alyx_server.api.bodies import read_object
from alyx_server.api.file_service import FILES
from alyx_server.api.pipeline import HTTP_POLICY
from alyx_server.api.runtime import RUNTIME, CollectionView
from alyx_server.errors import FieldIssue, InvalidJSON, PayloadTooLarge, ValidationError
from alyx_server.schema.model import Field, FieldType
from alyx_server.storage.backend import ObjectTooLarge, Storage
from alyx_server.storage.files import FileEdit, folder_of, metadata, new_key
from alyx_server.storage.names import stored_name
from alyx_server.storage.sniff import SNIFF_BYTES, mime_allowed, sniff

__all__ = ["Upload", "discard", "file_limit", "is_multipart", "receive", "release", "store_file"]

log = logging.getLogger("alyx.storage")
_READ = 64 * 1024
_MAX_PARTS = 1000
_AS_TEXT = (FieldType.STRING, FieldType.TEXT, FieldType.UUID, FieldType.TIMESTAMP, FieldType.BLOB)


def is_multipart(request: web.Request) -> bool:
    return request.content_type == "multipart/form-data"


@dataclass(slots=True)
class Upload:
    """What a create or update request sent: the fields, the file edits, and the keys it
    stored (deleted unless the write commits)."""

    body: dict[str, Any]
    edits: dict[str, FileEdit] = field(default_factory=dict)
    stored: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


def _storage(request: web.Request) -> Storage:
    return request.app[FILES].storage


@contextlib.asynccontextmanager
async def receive(request: web.Request, view: CollectionView) -> AsyncIterator[Upload]:
    """The request's body as an `Upload`; see the module docstring."""
    if not is_multipart(request):
        upload = Upload(await read_object(request))
        yield upload
        await release(request, upload.released)
        return
    storage = _storage(request)
    upload = Upload({})
    gate = request.app[HTTP_POLICY].gate
    entered = held = False
    try:
        await _read_multipart(request, view, storage, upload)
        held = await gate.enter()
        entered = True
        yield upload
    except BaseException:
        await asyncio.shield(_delete(storage, upload.stored))
        raise
    finally:
        if entered:
            gate.leave(held)
    await release(request, upload.released)


async def release(request: web.Request, keys: list[str]) -> None:
    """Delete the files (with their thumbnails) a committed write no longer references."""
    if keys:
        await _delete(_storage(request), keys)


async def _delete(storage: Storage, keys: list[str]) -> None:
    for key in keys:
        try:
            await storage.delete_prefix(folder_of(key))
        except Exception:
            # The sweeper finds what is left; the write itself is done.
            log.exception("could not delete the stored file %s", key)


async def _read_multipart(
    request: web.Request, view: CollectionView, storage: Storage, upload: Upload
) -> None:
    rt = request.app[RUNTIME]
    values = rt.settings.values
    text_limit = int(values.get("server.max_body_size", 10 * 1024 * 1024))  # type: ignore[call-overload]
    file_limit = int(values.get("storage.max_file_size", 100 * 1024 * 1024))  # type: ignore[call-overload]
    text_used = 0
    try:
        reader = await request.multipart()
        for _ in range(_MAX_PARTS + 1):
            part = await reader.next()
            if part is None:
                return
            if not isinstance(part, BodyPartReader):
                raise ValidationError("nested multipart bodies are not accepted", code="INVALID_MULTIPART")
            if part.filename is not None:
                await _file_part(view, storage, upload, part, file_limit)
            else:
                text_used += await _text_part(view, upload, part, text_limit - text_used)
        raise ValidationError(f"more than {_MAX_PARTS} parts in one request", code="INVALID_MULTIPART")
    except (ValueError, AssertionError) as e:
        # aiohttp's multipart reader: a missing boundary, a part cut short, a length that lied.
        raise ValidationError(f"the multipart body is malformed: {e}", code="INVALID_MULTIPART") from e
    except HttpProcessingError as e:
        # A part's headers that do not parse (a control character in a header value).
        message = f"a part's headers are malformed: {e.message}".replace("\n", " ").strip()
        raise ValidationError(message, code="INVALID_MULTIPART") from e


def _file_field(view: CollectionView, name: str, what: str) -> Field:
    fc = view.codec.fields.get(name)
    if fc is None or fc.field.internal:
        message = view.codec.unknown_field_message(name)
        raise ValidationError(message, [FieldIssue(name, "unknown_field", message)])
    if fc.field.type is not FieldType.FILE:
        message = f"{name} is not a file field; send it as a text part, not {what}"
        raise ValidationError(message, [FieldIssue(name, "invalid_type", message)])
    return fc.field


async def _file_part(
    view: CollectionView, storage: Storage, upload: Upload, part: BodyPartReader, file_limit: int
) -> None:
    assert part.filename is not None
    await store_file(view, storage, upload, part.name or "", part.filename, part.read_chunk, file_limit)


def file_limit(request: web.Request) -> int:
    """`storage.max_file_size`: the largest file of any field."""
    value = request.app[RUNTIME].settings.values.get("storage.max_file_size")
    return value if isinstance(value, int) else 100 * 1024 * 1024


async def store_file(
    view: CollectionView,
    storage: Storage,
    upload: Upload,
    raw_name: str,
    filename: str,
    read_chunk: Callable[[int], Awaitable[bytes]],
    file_limit: int,
) -> None:
    """Stream one file sent as `raw_name` (`field`, or `field+` to append) into storage:
    sized against `maxSize` and `file_limit`, its type sniffed and checked against
    `mimeTypes`, its key noted in `upload.stored` and its metadata in `upload.edits`.
    `read_chunk(n)` gives the next bytes (b"" at the end). The multipart reader and the
    admin UI's forms (admin_ui/data.py) both store files through here."""
    appending = raw_name.endswith("+")
    f = _file_field(view, raw_name[:-1] if appending else raw_name, "a file")
    options = f.file
    assert options is not None
    edit = upload.edits.setdefault(f.name, FileEdit())
    target = edit.append if appending else (edit.replace if edit.replace is not None else [])
    if not appending:
        edit.replace = target
    if appending and not options.multiple:
        message = f"{f.name} holds one file: send it as {f.name}, not {f.name}+"
        raise ValidationError(message, [FieldIssue(f.name, "max_files", message)])
    if len(edit.append) + len(edit.replace or ()) >= options.max_files:
        message = f"{f.name} holds at most {options.max_files} file(s)"
        raise ValidationError(message, [FieldIssue(f.name, "max_files", message)])
    limit = min(file_limit, options.max_size or file_limit)
    name = stored_name(filename)
    key = new_key(view.name, f.name, name)
    sniffed: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        head = b""
        while len(head) < SNIFF_BYTES:
            chunk = await read_chunk(_READ)
            if not chunk:
                break
            head += chunk
        mime = sniff(head[:SNIFF_BYTES])
        if not mime_allowed(mime, options.mime_types):
            message = (
                f"{f.name}: the content of {filename!r} is {mime}, which the field does not "
                f"accept (mimeTypes: {', '.join(options.mime_types)})"
            )
            raise ValidationError(message, [FieldIssue(f.name, "mime_type", message)])
        sniffed.append(mime)
        if head:
            yield head
        while chunk := await read_chunk(_READ):
            yield chunk

    upload.stored.append(key)
    try:
        stored = await storage.put(key, chunks(), max_size=limit)
    except ObjectTooLarge as e:
        own = options.max_size is not None and limit == options.max_size
        which = f"maxSize of {view.name}.{f.name}" if own else "storage.max_file_size"
        raise PayloadTooLarge(
            f"{f.name}: {filename!r} is over {limit} bytes ({which})",
            details=[{"field": f.name, "code": "max_size", "message": f"larger than {limit} bytes"}],
        ) from e
    target.append(metadata(name, stored.size, sniffed[0], stored.sha256, key))


async def discard(request: web.Request, upload: Upload) -> None:
    """Delete the files `upload` stored (its write failed or never ran)."""
    await asyncio.shield(_delete(_storage(request), upload.stored))


async def _read_text(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(_READ):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge("the text fields of the multipart body are over server.max_body_size")
    return bytes(data)


async def _text_part(view: CollectionView, upload: Upload, part: BodyPartReader, limit: int) -> int:
    raw = await _read_text(part, limit)
    name = part.name or ""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError(f"the part {name!r} is not UTF-8 text", code="INVALID_MULTIPART") from e
    if name == "@json":
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise InvalidJSON(f"the @json part is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise InvalidJSON("the @json part must be a JSON object")
        upload.body.update(data)
        return len(raw)
    base = name[:-1] if name.endswith("-") else name
    fc = view.codec.fields.get(base)
    if fc is not None and fc.field.type is FieldType.FILE:
        if name.endswith("-"):
            upload.body.setdefault(name, []).append(text)
        elif text == "":
            upload.body[name] = None
        else:
            upload.body[name] = text  # refused by check_input_keys: files are file parts
        return len(raw)
    upload.body[name] = _form_value(fc.field if fc is not None else None, text)
    return len(raw)


def _form_value(f: Field | None, text: str) -> Any:
    """A text part as the field's JSON value; what does not convert is left as text, for
    the codec to refuse with the field's own message."""
    if f is None or f.type in (
        FieldType.STRING,
        FieldType.TEXT,
        FieldType.UUID,
        FieldType.TIMESTAMP,
        FieldType.BLOB,
    ):
        return text
    if text == "" and f.nullable:
        return None
    try:
        if f.type is FieldType.INT:
            return int(text)
        if f.type is FieldType.FLOAT:
            return float(text)
        if f.type is FieldType.JSON:
            return orjson.loads(text)
    except ValueError:
        return text
    if f.type is FieldType.BOOL:
        return {"true": True, "false": False, "1": True, "0": False}.get(text.lower(), text)
    return text
