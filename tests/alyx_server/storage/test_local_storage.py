"""The local backend against the `Storage` guarantees (storage/backend.py), on a real folder."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alyx_server.storage import InvalidKey, LocalStorage, ObjectMissing, ObjectTooLarge, Storage


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([c async for c in storage.get(key, start, end)])


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def test_put_get_range_list_delete(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert isinstance(storage, Storage)
    data = b"x" * 700_000 + b"end"
    stored = await storage.put("c/f/abc/a.bin", _chunks(data[:100], data[100:]), max_size=len(data))
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert await _read(storage, "c/f/abc/a.bin") == data
    assert await _read(storage, "c/f/abc/a.bin", 699_999, 700_002) == b"xend"
    await storage.put("c/f/abc/thumbs/10x10", _chunks(b"t"), max_size=1)
    assert await storage.stat("c/f/abc/a.bin") == len(data) and await storage.exists("c/f/abc/thumbs/10x10")
    assert sorted([i.key async for i in storage.list("c/")]) == ["c/f/abc/a.bin", "c/f/abc/thumbs/10x10"]
    assert await storage.delete_prefix("c/f/abc/") == 2
    await storage.delete("c/f/abc/a.bin")  # already gone: not an error
    assert _files(tmp_path) == [] and not (tmp_path / "c").exists()
    with pytest.raises(ObjectMissing):
        await _read(storage, "c/f/abc/a.bin")


async def test_a_failed_put_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with pytest.raises(ObjectTooLarge):
        await storage.put("k/too-big", _chunks(b"a" * 600_000, b"a" * 600_000), max_size=1_000_000)

    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 2_000_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await storage.put("k/broken", broken(), max_size=10_000_000)
    assert _files(tmp_path) == []
    assert not await storage.exists("k/broken")


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", "a\\b", "a/\x00", "", "a/./b"])
async def test_keys_that_could_leave_the_root_are_refused(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "root")
    with pytest.raises(InvalidKey):
        await storage.put(key, _chunks(b"x"), max_size=10)
    assert (not (tmp_path / "x").exists() and not (tmp_path / "root").exists()) or _files(tmp_path) == []
