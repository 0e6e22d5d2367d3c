"""Every backend against the `Storage` guarantees (storage/backend.py): the local one on a
real folder, the S3 one on a real S3-compatible server (moto's) on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alyx_server.storage import InvalidKey, ObjectMissing, ObjectTooLarge, Storage, StorageUnavailable
from alyx_server.storage.s3 import PART_SIZE


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([c async for c in storage.get(key, start, end)])


async def _keys(storage: Storage, prefix: str = "") -> list[str]:
    return sorted([info.key async for info in storage.list(prefix)])


async def test_put_get_range_list_delete(storage: Storage) -> None:
    assert isinstance(storage, Storage)
    data = b"x" * 700_000 + b"end"
    stored = await storage.put("c/f/abc/a.bin", _chunks(data[:100], data[100:]), max_size=len(data))
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert await _read(storage, "c/f/abc/a.bin") == data
    assert await _read(storage, "c/f/abc/a.bin", 699_999, 700_002) == b"xend"
    assert await _read(storage, "c/f/abc/a.bin", 700_000) == b"end"
    await storage.put("c/f/abc/thumbs/10x10", _chunks(b"t"), max_size=1)
    await storage.put("c/g/def/b.bin", _chunks(b""), max_size=1)
    assert await storage.stat("c/f/abc/a.bin") == len(data) and await storage.exists("c/f/abc/thumbs/10x10")
    assert await storage.stat("c/g/def/b.bin") == 0 and await storage.stat("c/nope") is None
    assert await _keys(storage, "c/f/") == ["c/f/abc/a.bin", "c/f/abc/thumbs/10x10"]
    infos = [i async for i in storage.list("c/f/abc/a")]
    assert [(i.key, i.size) for i in infos] == [("c/f/abc/a.bin", len(data))] and infos[0].modified > 0
    assert await storage.delete_prefix("c/f/abc/") == 2
    await storage.delete("c/f/abc/a.bin")  # already gone: not an error
    await storage.delete("c/g/def/b.bin")
    assert await _keys(storage) == []
    with pytest.raises(ObjectMissing):
        await _read(storage, "c/f/abc/a.bin")


async def test_a_large_put_streams_in_parts(storage: Storage) -> None:
    # Over one S3 part: the multipart path, with a last part smaller than the others.
    piece = bytes(range(256)) * 4096
    count = PART_SIZE // len(piece) + 3
    stored = await storage.put("big/f/x/data", _chunks(*[piece] * count), max_size=len(piece) * count)
    assert stored.size == len(piece) * count
    assert stored.sha256 == hashlib.sha256(piece * count).hexdigest()
    assert (
        await _read(storage, "big/f/x/data", PART_SIZE - 2, PART_SIZE + 1)
        == (piece * 9)[PART_SIZE - 2 : PART_SIZE + 2]
    )
    assert await _keys(storage) == ["big/f/x/data"]


async def test_a_failed_put_leaves_nothing(storage: Storage) -> None:
    with pytest.raises(ObjectTooLarge):
        await storage.put("k/too-big", _chunks(b"a" * 600_000, b"a" * 600_000), max_size=1_000_000)
    with pytest.raises(ObjectTooLarge):  # after one S3 part was sent
        await storage.put("k/too-big", _chunks(*[b"a" * 1_000_000] * 10), max_size=9_500_000)

    async def broken(size: int) -> AsyncIterator[bytes]:
        for _ in range(size // 1_000_000):
            yield b"a" * 1_000_000
        raise ConnectionResetError("client went away")

    for size in (2_000_000, PART_SIZE + 2_000_000):
        with pytest.raises(ConnectionResetError):
            await storage.put("k/broken", broken(size), max_size=100_000_000)
    assert await _keys(storage) == []
    assert not await storage.exists("k/broken")


async def test_an_unfinished_put_is_listed_under_partial_and_deletes(storage: Storage) -> None:
    # What a process killed mid-upload leaves: invisible under its key, listed under
    # .partial/ (a file being written, or an S3 multipart upload), removable by delete.
    release = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"p" * (PART_SIZE + 1_000)
        await release.wait()
        raise ConnectionResetError("client went away")

    put = asyncio.create_task(storage.put("a/f/x/file.bin", stalled(), max_size=100_000_000))
    partial: list[str] = []
    for _ in range(500):
        partial = await _keys(storage)
        if partial:
            break
        await asyncio.sleep(0.02)
    assert len(partial) == 1 and partial[0].startswith(".partial/"), partial
    assert await _keys(storage, ".partial/") == partial and await _keys(storage, "a/") == []
    assert not await storage.exists("a/f/x/file.bin")
    await storage.delete(partial[0])
    assert await _keys(storage) == []
    release.set()
    with pytest.raises((ConnectionResetError, StorageUnavailable)):  # its upload was aborted under it
        await put
    assert await _keys(storage) == []


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", "a\\b", "a/\x00", "", "a/./b"])
async def test_keys_that_could_leave_the_root_are_refused(storage: Storage, tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidKey):
        await storage.put(key, _chunks(b"x"), max_size=10)
    with pytest.raises(InvalidKey):
        await storage.delete_prefix(key + "/" if key else "../")
    assert await _keys(storage) == []
    assert not (tmp_path / "x").exists()
