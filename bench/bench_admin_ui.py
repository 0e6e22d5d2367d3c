"""The admin UI's data browser on 100,000 documents: server time of a page, and page weight.

Runs the real application in this process on a loopback port (aiohttp's TestServer),
fills a `posts` collection with `--docs` documents (straight into SQLite, in one
transaction), makes an admin token with `alyx admin create-token`, then times, one
request at a time, `GET /_admin/data/posts` (the first page, 50 rows), the page 90% of
the way down by keyset (`after=` the cursor of that row), the same two sorted by an
indexed field (`sort=-created_at`), and, for comparison, the REST API reaching the same
depth by `offset=`. The figure is the time to the whole response on loopback, so it
includes a fraction of a millisecond of client. Then the weight of a cold load of the
page: the HTML and every asset it references (stylesheet, icon, scripts and the modules
they import), uncompressed, as nothing is cached on a first visit.

    .venv/bin/python bench/bench_admin_ui.py [--docs 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from alyx_server.admin_ui.browse import cursor_of, order_keys
from alyx_server.app import create_app
from alyx_server.config import default_settings
from alyx_server.db.query import parse_sort
from alyx_server.schema.loader import parse_schema

SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:         { type: uuid, primary: true, default: auto }
      title:      { type: string }
      views:      { type: int, default: 0 }
      published:  { type: bool, default: false }
      tags:       { type: json, nullable: true }
      created_at: { type: timestamp, default: now, index: true }
"""
ALYX = Path(sys.executable).with_name("alyx")


def fill(database: Path, count: int) -> None:
    import uuid

    conn = sqlite3.connect(database)
    rows = (
        (
            str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % (1 << 128), version=4)),
            f"Post number {i}",
            i % 1000,
            i % 2,
            f'["tag{i % 7}", "tag{i % 11}"]',
            f"2026-01-{1 + i // 86400 % 28:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
        )
        for i in range(count)
    )
    with conn:
        conn.executemany(
            "INSERT INTO posts (id, title, views, published, tags, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.close()


def deep_cursor(database: Path, sort: str, depth: int) -> str:
    """The keyset cursor of the row at `depth` in the order of `sort`."""
    collection = parse_schema(SCHEMA).get("posts")
    assert collection is not None
    keys = order_keys(collection, parse_sort(collection, sort) if sort else ())
    order = ", ".join(f'"{f.name}" {"DESC" if d else "ASC"}' for f, d in keys)
    names = [f.name for f, _d in keys]
    conn = sqlite3.connect(database)
    row = conn.execute(
        f"SELECT {', '.join(names)} FROM posts ORDER BY {order} LIMIT 1 OFFSET ?", (depth - 1,)
    ).fetchone()
    conn.close()
    return cursor_of(keys, dict(zip(names, row, strict=True)))


async def timed(
    session: aiohttp.ClientSession, path: str, headers: dict[str, str], n: int
) -> tuple[list[float], int]:
    size = 0
    for _ in range(5):  # warm-up
        async with session.get(path, headers=headers) as answer:
            assert answer.status == 200, (path, answer.status, (await answer.text())[:300])
            size = len(await answer.read())
    times = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.get(path, headers=headers) as answer:
            await answer.read()
        times.append(time.perf_counter() - start)
    return times, size


async def page_weight(
    session: aiohttp.ClientSession, path: str, headers: dict[str, str]
) -> list[tuple[str, int]]:
    """The HTML and every asset it references, with their sizes in bytes."""
    async with session.get(path, headers=headers) as answer:
        html = await answer.text()
        loaded = [(path, len(html.encode()))]
    pending = re.findall(r'(?:src|href)="(/_admin/static/[^"]+)"', html)
    seen: set[str] = set()
    while pending:
        url = pending.pop(0).replace("&amp;", "&")
        if url.split("?")[0] in seen:
            continue
        seen.add(url.split("?")[0])
        async with session.get(url) as answer:
            body = await answer.read()
        loaded.append((url, len(body)))
        if url.split("?")[0].endswith(".js"):
            folder = url.rsplit("/", 1)[0]
            pending += [f"{folder}/{name}" for name in re.findall(r'from "\./([^"]+)"', body.decode())]
    return loaded


def ms(values: list[float], q: float | None = None) -> str:
    if q is None:
        return f"{statistics.median(values) * 1000:.1f}"
    return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "project"
        root.mkdir()
        (root / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
        settings = default_settings(
            root, "serve",
            overrides={"auth.jwt.secret": "b" * 40, "logging.level": "warning", "admin_ui.enabled": True},
        )  # fmt: skip
        server = TestServer(create_app(settings))
        await server.start_server()
        try:
            async with aiohttp.ClientSession(str(server.make_url(""))) as session:
                while True:
                    async with session.get("/health/ready") as answer:
                        if answer.status == 200:
                            break
                    await asyncio.sleep(0.05)
                database = settings.database.path
                started = time.perf_counter()
                fill(database, args.docs)
                print(f"filled {args.docs} docs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
                made = subprocess.run(
                    [str(ALYX), "admin", "create-token", "--name", "bench", "-C", str(root)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                token = next(w for w in made.stdout.split() if w.startswith("alyx_"))
                headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
                depth = args.docs * 9 // 10
                cases: list[tuple[str, str]] = [
                    ("first page", "/_admin/data/posts"),
                    (
                        f"page at row {depth:,} (keyset)",
                        f"/_admin/data/posts?after={deep_cursor(database, '', depth)}",
                    ),
                    ("first page, sort=-created_at", "/_admin/data/posts?sort=-created_at"),
                    (
                        f"page at row {depth:,}, sort=-created_at (keyset)",
                        "/_admin/data/posts?sort=-created_at&after="
                        + deep_cursor(database, "-created_at", depth),
                    ),
                    (
                        f"REST offset={depth:,} limit=50 (for comparison)",
                        f"/api/collections/posts?limit=50&offset={depth}&total=false",
                    ),
                ]
                results: list[tuple[str, list[float], int]] = []
                for name, path in cases:
                    times, size = await timed(session, path, headers, args.requests)
                    results.append((name, times, size))
                weight = await page_weight(session, "/_admin/data/posts", headers)
        finally:
            await server.close()
    print(f"\n{args.docs:,} posts, {args.requests} requests each, one at a time; "
          f"Python {platform.python_version()}, {platform.machine()}\n")  # fmt: skip
    print("| request | median ms | p95 ms | response bytes |")
    print("|---|---:|---:|---:|")
    for name, times, size in results:
        print(f"| {name} | {ms(times)} | {ms(times, 95)} | {size:,} |")
    total = sum(size for _url, size in weight)
    print(f"\nCold load of /_admin/data/posts: {total:,} bytes in {len(weight)} requests, uncompressed")
    for url, size in weight:
        print(f"  {size:>8,}  {url.split('?')[0]}")


if __name__ == "__main__":
    asyncio.run(main())
