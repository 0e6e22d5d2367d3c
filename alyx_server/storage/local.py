"""The local disk backend (`storage.backend: local`): objects as files under one folder,
by default `<project>/data/storage/`.

An upload is written to `.partial/<random>` under the root, hashed as it goes, flushed
and then renamed into place (`os.replace`, atomic on one file system), so a reader never
sees half a file and a failed upload leaves nothing under its key. A process killed in
the middle leaves its `.partial/` file, which `list` reports for the sweeper. Disk work
runs on threads (`asyncio.to_thread`), in writes of up to 1 MiB, so the event loop never
waits on the disk and memory stays bounded whatever the size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

from alyx_server.storage.backend import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectMissing,
    ObjectTooLarge,
    StorageUnavailable,
    StoredObject,
    check_key,
)

__all__ = ["PARTIAL_PREFIX", "LocalStorage"]

PARTIAL_PREFIX = ".partial/"
_WRITE_BATCH = 1024 * 1024


class LocalStorage:
    """See the module docstring; `root` is created on first write."""

    name = "local"

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self._fsync = fsync

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_size: int) -> StoredObject:
        target = self._path(key)
        partial = self._path(PARTIAL_PREFIX + uuid.uuid4().hex)
        digest = hashlib.sha256()
        size = 0
        try:
            handle = await asyncio.to_thread(_open_new, partial)
        except OSError as e:
            raise StorageUnavailable(f"cannot write to the file storage: {e.strerror}") from e
        try:
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in chunks:  # its own errors (a client gone) pass through as they are
                size += len(chunk)
                if size > max_size:
                    raise ObjectTooLarge(f"the file is over {max_size} bytes", max_size)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_BATCH:
                    await _on_disk(_write, handle, digest, pending)
                    pending, pending_size = [], 0
            await _on_disk(_write, handle, digest, pending)
            await _on_disk(_finish, handle, partial, target, self._fsync)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(_discard, handle, partial))
            raise
        return StoredObject(key, size, digest.hexdigest())

    async def get(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as e:
            raise ObjectMissing(f"no stored file {key!r}") from e
        except OSError as e:
            raise StorageUnavailable(f"cannot read the file storage: {e.strerror}") from e
        try:
            await asyncio.to_thread(handle.seek, start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                want = CHUNK_SIZE if left is None else min(CHUNK_SIZE, left)
                chunk = await asyncio.to_thread(handle.read, want)
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def stat(self, key: str) -> int | None:
        try:
            result = await asyncio.to_thread(self._path(key).stat)
        except FileNotFoundError:
            return None
        return result.st_size

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(_unlink_and_prune, path, self.root)

    async def delete_prefix(self, prefix: str) -> int:
        check_key(prefix, prefix=True)
        return await asyncio.to_thread(_delete_prefix, self.root, prefix)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        check_key(prefix, prefix=True)
        infos = await asyncio.to_thread(_walk, self.root, prefix)
        for info in infos:
            yield info

    async def close(self) -> None:
        return None


async def _on_disk(fn: Callable[..., None], *args: Any) -> None:
    """`fn(*args)` on a thread; a failing disk is StorageUnavailable (503)."""
    try:
        await asyncio.to_thread(fn, *args)
    except OSError as e:
        raise StorageUnavailable(f"cannot write to the file storage: {e.strerror or e}") from e


def _open_new(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("xb")


def _write(handle: BinaryIO, digest: hashlib._Hash, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digest.update(chunk)
        handle.write(chunk)


def _finish(handle: BinaryIO, partial: Path, target: Path, fsync: bool) -> None:
    handle.flush()
    if fsync:
        os.fsync(handle.fileno())
    handle.close()
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, target)


def _discard(handle: BinaryIO, partial: Path) -> None:
    with contextlib.suppress(OSError):
        handle.close()
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()


def _unlink_and_prune(path: Path, root: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    _prune_empty(path.parent, root)


def _prune_empty(folder: Path, root: Path) -> None:
    # Empty folders left by deletes go too, up to (not including) the root.
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _delete_prefix(root: Path, prefix: str) -> int:
    infos = _walk(root, prefix)
    for info in infos:
        with contextlib.suppress(FileNotFoundError):
            root.joinpath(*info.key.split("/")).unlink()
    if prefix.endswith("/"):
        folder = root.joinpath(*prefix[:-1].split("/"))
        shutil.rmtree(folder, ignore_errors=True)
        _prune_empty(folder.parent, root)
    return len(infos)


def _walk(root: Path, prefix: str) -> list[ObjectInfo]:
    # Walk the deepest folder the prefix names fully, then filter by the whole prefix.
    head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    start = root.joinpath(*head.split("/")) if head else root
    out: list[ObjectInfo] = []
    if not start.is_dir():
        return out
    for folder, _dirs, files in os.walk(start):
        for name in files:
            path = Path(folder, name)
            key = path.relative_to(root).as_posix()
            if not key.startswith(prefix):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append(ObjectInfo(key, st.st_size, st.st_mtime))
    return out
