"""The file storage service as the application holds it (one typed key, set by app.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from alyx_server.storage.backend import Storage
from alyx_server.storage.tokens import FileTokens

__all__ = ["FILES", "FileService"]


@dataclass(slots=True)
class FileService:
    """The storage backend, the file tokens and a bound on concurrent thumbnail work."""

    storage: Storage
    tokens: FileTokens
    thumb_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))


FILES = web.AppKey("alyx.files", FileService)
