"""The sweeper: orphans left by a crash between storage and commit are removed, referenced
files never; `kill -9` of a real `alyx dev` in the middle of an upload leaves a partial
upload no document references, which `alyx storage sweep` removes (both backends)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from alyx_server.storage import Storage
from alyx_server.storage.s3 import PART_SIZE
from alyx_server.storage.sweeper import SweepLock, sweep, sweep_once
from tests.servers import ALYX, AlyxProcess, cli_environment

SCHEMA = """\
version: 1
collections:
  blobs:
    fields:
      id:   { type: uuid, primary: true, default: auto }
      data: { type: file, nullable: true }
    rules: { create: "true", read: "true" }
"""


async def _chunks(data: bytes):  # type: ignore[no-untyped-def]
    yield data


async def _keys(storage: Storage) -> list[str]:
    return sorted([i.key async for i in storage.list()])


async def test_sweep_removes_old_orphans_only(storage: Storage, tmp_path: Path) -> None:
    kept = "blobs/data/" + "a" * 32 + "/kept.bin"
    orphan = "blobs/data/" + "b" * 32 + "/orphan.bin"
    gone_field = "old/field/" + "c" * 32 + "/x.bin"
    for key in (kept, kept.rsplit("/", 1)[0] + "/thumbs/10x10", orphan, gone_field):
        await storage.put(key, _chunks(b"data"), max_size=10)
    referenced = {"blobs/data/" + "a" * 32 + "/"}
    now = time.time()
    young = await sweep(storage, referenced, now=now, grace=3600)
    assert young.deleted == [] and young.young == 2 and young.kept == 2
    dry = await sweep(storage, referenced, now=now + 7200, grace=3600, dry_run=True)
    assert sorted(dry.deleted) == sorted([orphan, gone_field]) and len(await _keys(storage)) == 4
    done = await sweep(storage, referenced, now=now + 7200, grace=3600)
    assert sorted(done.deleted) == sorted([orphan, gone_field])
    assert await _keys(storage) == sorted([kept, kept.rsplit("/", 1)[0] + "/thumbs/10x10"])


async def test_one_sweep_at_a_time_per_database(storage: Storage, tmp_path: Path) -> None:
    database = tmp_path / "alyx.db"
    holder, other = SweepLock(database), SweepLock(database)
    try:
        assert holder.try_acquire()

        async def nothing() -> set[str]:
            return set()

        assert await sweep_once(storage, nothing, other, now=time.time(), grace=60) is None
        holder.release()
        assert await sweep_once(storage, nothing, other, now=time.time(), grace=60) is not None
    finally:
        holder.close()
        other.close()


def _partial_upload(port: int, size: int) -> socket.socket:
    """Send the start of a `size`-byte upload and leave the request open."""
    boundary = "KillMe"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="data"; filename="big.bin"\r\n\r\n'.encode()
    request = (
        f"POST /api/collections/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + 4 * size}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(request + head)
    chunk = b"\x09" * (1024 * 1024)
    for _ in range(size // len(chunk)):
        sock.sendall(chunk)
    return sock


def _sweep_cli(project: Path, *args: str) -> str:
    done = subprocess.run(
        [str(ALYX), "storage", "sweep", *args], cwd=project, env=cli_environment(),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kill_9_mid_upload_then_sweep(
    tmp_path: Path, storage_overrides: dict[str, object], backend: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "schema.yaml").write_text(SCHEMA)
    config = {"storage": {"max_file_size": "256MiB", "sweep_interval": "0"}}
    for path, value in storage_overrides.items():
        section = (
            config["storage"]
            if not path.startswith("storage.s3.")
            else config["storage"].setdefault("s3", {})
        )
        section[path.rsplit(".", 1)[1]] = value  # type: ignore[index]
    (project / "alyx.yaml").write_text(json.dumps(config))
    server = AlyxProcess(project).start()
    try:
        body = (b'--B\r\nContent-Disposition: form-data; name="data"; filename="kept.txt"\r\n\r\n'
                b"kept\r\n--B--\r\n")  # fmt: skip
        request = urllib.request.Request(
            f"{server.url}/api/collections/blobs", data=body, method="POST",
            headers={"Content-Type": "multipart/form-data; boundary=B"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as answer:
            kept = json.loads(answer.read())
        sock = _partial_upload(server.port, PART_SIZE + 4 * 1024 * 1024)
        dry = ""
        for _ in range(200):  # until the server has a partial upload in storage
            dry = _sweep_cli(project, "--dry-run", "--grace", "0")
            if ".partial/" in dry:
                break
            time.sleep(0.05)
        assert ".partial/" in dry, dry
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=60)
        sock.close()
    finally:
        server.stop()
    # Nothing references the partial upload; the young-file grace keeps it, then it goes.
    if backend == "local":  # moto lists every multipart upload as initiated in 2010
        out = _sweep_cli(project)
        assert "removed 0 unreferenced" in out and "1 younger" in out, out
    out = _sweep_cli(project, "--grace", "0")
    assert "removed 1 unreferenced" in out and ".partial/" in out and "kept 1 referenced" in out, out
    assert "removed 0 unreferenced" in _sweep_cli(project, "--grace", "0")
    with AlyxProcess(project) as again:
        url = f"{again.url}/api/files/blobs/{kept['id']}/data/{kept['data']['name']}"
        with urllib.request.urlopen(url, timeout=60) as answer:
            assert answer.read() == b"kept"
        with urllib.request.urlopen(f"{again.url}/api/collections/blobs", timeout=60) as answer:
            assert [d["id"] for d in json.loads(answer.read())["docs"]] == [kept["id"]]


@pytest.mark.parametrize("grace", ["soon", "-1h"])
def test_a_bad_grace_is_one_clear_line(tmp_path: Path, grace: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "schema.yaml").write_text(SCHEMA)
    subprocess.run([str(ALYX), "migrate", "apply"], cwd=project, env=cli_environment(), check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    done = subprocess.run([str(ALYX), "storage", "sweep", "--grace", grace], cwd=project,
                          env=cli_environment(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and "--grace" in done.stderr and "Traceback" not in done.stderr, done.stderr
