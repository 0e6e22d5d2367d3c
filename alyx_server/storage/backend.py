"""The `Storage` interface: where the bytes of `file` fields live.

A backend stores opaque objects under keys that Alyx makes (`storage/files.py`:
`<collection>/<field>/<32 hex>/<name>` for a file, `.../thumbs/<WxH>` beside it). Every
backend (the local disk here, an S3-compatible bucket later) must give these guarantees,
which the upload, download, consistency and sweeper code rely on:

- `put` streams: it consumes the chunks as they come, holding at most a few chunks in
  memory, hashes them (sha256) and counts them. It is all or nothing: when the size passes
  `max_size` (`ObjectTooLarge`), the chunk iterator raises (a client that went away, a
  content check that failed) or the write itself fails (`StorageUnavailable`), nothing is
  left under `key` and no partial object is visible to `get`, `exists` or `list` of that
  key. An object is visible only once complete. A crash in the middle may leave a partial
  object under a key starting with `.partial/`, which `list` reports like any other so a
  sweeper can remove it.
- `get` streams the bytes of `[start, end]` (inclusive; `end` None: to the end), in
  chunks of bounded size; `ObjectMissing` when there is no such object.
- `stat` gives the size of an object, or None; `exists` is `stat(...) is not None`.
- `delete` removes one object; a missing one is not an error. `delete_prefix` removes
  every object whose key starts with the prefix (a file with its thumbnails, a dropped
  field) and says how many.
- `list` yields every object under a prefix with its size and modification time (epoch
  seconds), in no particular order, for the sweeper that removes objects no document
  references.
- Keys are relative, `/`-separated, without `.`/`..` segments, NUL or backslashes;
  `check_key` refuses any other (`InvalidKey`), so no backend ever resolves a path out
  of its root or bucket.

Errors: `ObjectTooLarge` (the API answers 413), `ObjectMissing` (404),
`StorageUnavailable` (503: the disk or the remote service failed).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from alyx_server.errors import AlyxError, PayloadTooLarge

__all__ = [
    "CHUNK_SIZE",
    "InvalidKey",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectTooLarge",
    "Storage",
    "StorageUnavailable",
    "StoredObject",
    "check_key",
]

CHUNK_SIZE = 256 * 1024
"""The largest chunk a backend yields from `get`."""


class ObjectTooLarge(PayloadTooLarge):
    """The stream passed the size limit; nothing was stored."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class ObjectMissing(AlyxError):
    status = 404
    code = "FILE_NOT_FOUND"


class StorageUnavailable(AlyxError):
    status = 503
    code = "STORAGE_UNAVAILABLE"


class InvalidKey(ValueError):
    """A key that could leave the backend's root; always a defect in the caller."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What `put` stored: the key, its size in bytes and its sha256 (hex)."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as `list` sees it."""

    key: str
    size: int
    modified: float


@runtime_checkable
class Storage(Protocol):
    """A file storage backend; see the module docstring for what each method must do."""

    name: str
    """The backend's name as `storage.backend` writes it (`local`, `s3`)."""

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_size: int) -> StoredObject: ...

    def get(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...

    async def stat(self, key: str) -> int | None: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> int: ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]: ...

    async def close(self) -> None: ...


def check_key(key: str, *, prefix: bool = False) -> str:
    """`key` if it is a safe relative key (a prefix may be empty or end with `/`)."""
    if prefix and key == "":
        return key
    parts = key[:-1].split("/") if prefix and key.endswith("/") else key.split("/")
    bad = (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(p in ("", ".", "..") for p in parts)
    )
    if bad:
        raise InvalidKey(f"invalid storage key {key!r}")
    return key
