"""A project with file fields, the real application on a real port, and upload helpers."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from PIL import Image

from alyx_server.api.file_service import FILES
from alyx_server.config import Settings, default_settings

__all__ = ["FILES_SCHEMA", "bomb_png", "form", "png", "raw_form", "settings_for", "stored_files"]

FILES_SCHEMA = """\
version: 1
collections:
  docs:
    fields:
      id:          { type: uuid, primary: true, default: auto }
      title:       { type: string, minLength: 1 }
      owner:       { type: uuid, nullable: true }
      n:           { type: int, default: 0 }
      avatar:      { type: file, nullable: true, maxSize: 1MiB, mimeTypes: [image/png, image/jpeg],
                     thumbs: [32x32, 64x48f] }
      attachments: { type: file, nullable: true, maxFiles: 3 }
      secret:      { type: file, nullable: true, protected: true }
    rules:
      create: "auth != null"
      read:   "auth != null && doc.owner == auth.id"
      update: "auth != null && doc.owner == auth.id"
      delete: "auth != null && doc.owner == auth.id"
"""


def settings_for(root: Path, schema: str = FILES_SCHEMA, **overrides: object) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(schema, encoding="utf-8")
    values: dict[str, object] = {
        "realtime.poll_interval": "50ms",
        "auth.bcrypt_cost": 4,
        "auth.rate_limit.register": "off",
        "auth.rate_limit.login": "off",
        "storage.max_file_size": "4MiB",
        **overrides,
    }
    return default_settings(root, "dev", overrides=values)


def png(width: int = 40, height: int = 30, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A small PNG whose header claims `width`x`height` pixels (its data is a few rows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" + b"\x00" * (width // 8 + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def form(fields: dict[str, Any] | None = None, files: list[tuple[str, str, bytes]] = ()) -> aiohttp.FormData:  # type: ignore[assignment]
    """A multipart body: text `fields`, then `(part name, file name, bytes)` files."""
    data = aiohttp.FormData(quote_fields=False)
    for name, value in (fields or {}).items():
        for item in value if isinstance(value, list) else [value]:
            data.add_field(name, str(item))
    for name, filename, content in files:
        data.add_field(name, io.BytesIO(content), filename=filename, content_type="application/octet-stream")
    return data


async def stored_files(app: web.Application) -> list[str]:
    """Every object of the app's storage backend (partial uploads included: `.partial/...`)."""
    return sorted([info.key async for info in app[FILES].storage.list()])


def raw_form(
    boundary: str, fields: dict[str, str], files: list[tuple[str, str, bytes]], extra: str = ""
) -> bytes:
    """A multipart body written by hand: file names go as `filename*=UTF-8''<percent-encoded>`
    (so NUL, CR and LF reach the server), `extra` is added to each file part's headers."""
    out = b""
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, filename, content in files:
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f"filename*=UTF-8''{quote(filename, safe='')}\r\n{extra}\r\n")  # fmt: skip
        out += head.encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()
