"""A large upload streams: the server's memory stays bounded (measured on a real process).

`alyx dev` runs as a process of its own; a 200 MB file goes to it over a plain socket in
1 MiB writes while a thread samples the resident memory of the server's processes. The
growth over the idle figure must stay far below the file's size (the figure is printed;
the bound is loose, since it measures memory, not time).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

from tests.servers import AlyxProcess

SCHEMA = """\
version: 1
collections:
  blobs:
    fields:
      id:   { type: uuid, primary: true, default: auto }
      data: { type: file, nullable: true }
    rules: { create: "true", read: "true" }
"""
SIZE = 200 * 1024 * 1024
BOUND = 80 * 1024 * 1024


def _rss(pid: int) -> int:
    """Resident bytes of `pid` and its children (a worker, a function executor)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry))
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _upload(port: int, size: int) -> bytes:
    boundary = "LargeUpload"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="data"; filename="big.bin"\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    request = (
        f"POST /api/collections/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + size + len(tail)}\r\n\r\n"
    ).encode()
    chunk = b"\x07" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(request + head)
        for _ in range(size // len(chunk)):
            sock.sendall(chunk)
        sock.sendall(tail)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return answer


def test_a_200_mb_upload_keeps_server_memory_bounded(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "schema.yaml").write_text(SCHEMA)
    (project / "alyx.yaml").write_text("storage:\n  max_file_size: 300MiB\n")
    with AlyxProcess(project, "dev") as server:
        assert server.process is not None
        pid = server.process.pid
        _upload(server.port, 1024 * 1024)  # warm up the upload path
        idle = _rss(pid)
        peak = [idle]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], _rss(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            answer = _upload(server.port, SIZE)
        finally:
            done.set()
            sampler.join()
        status, _, rest = answer.partition(b"\r\n")
        assert b" 201 " in status, answer[:500]
        doc = json.loads(rest.split(b"\r\n\r\n", 1)[1])
        assert doc["data"]["size"] == SIZE
        stored = project / "data" / "storage" / doc["data"]["key"]
        assert stored.stat().st_size == SIZE
        growth = peak[0] - idle
        print(
            f"server RSS idle {idle / 2**20:.1f} MiB, peak {peak[0] / 2**20:.1f} MiB during a 200 MiB upload"
        )
        assert growth < BOUND, (
            f"memory grew by {growth / 2**20:.1f} MiB during a {SIZE / 2**20:.0f} MiB upload"
        )
