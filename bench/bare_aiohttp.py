"""The floor under Alyx: a bare aiohttp + sqlite3 + orjson server on an Alyx database file.

    .venv/bin/python bench/bare_aiohttp.py --db PATH --port PORT [--workers N]

Three routes with Alyx's paths and none of its layers (no request id, access log, metrics,
auth, rules, validation or error envelope): `GET /api/collections/posts/{id}` (a point read
on the event-loop thread), `GET /api/collections/posts?filter=author:eq:X&...` (20 rows
ordered by `n DESC, id DESC` and the count, the query Alyx runs) and
`POST /api/collections/posts` (one autocommit insert; the change-log trigger of the
database fires as it does for Alyx). WAL with `synchronous=NORMAL`, a 5 s busy timeout.

With `--workers N` the first process starts N children, each listening on the same port
with SO_REUSEPORT, and waits for them; SIGTERM to the process group stops them all.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Sequence

import orjson
from aiohttp import web

__all__ = ["main"]

COLUMNS = "id, title, author, n, published, created_at"


def _row(cursor: sqlite3.Cursor, row: tuple[object, ...]) -> dict[str, object]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def make_app(db: str) -> web.Application:
    """The three routes over one connection, used on the event-loop thread."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.row_factory = _row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")

    def json_response(body: object, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

    async def view(request: web.Request) -> web.Response:
        doc = conn.execute(
            f"SELECT {COLUMNS} FROM posts WHERE id = ?", (request.match_info["id"],)
        ).fetchone()
        return json_response(doc) if doc is not None else json_response({"error": "not found"}, 404)

    async def listing(request: web.Request) -> web.Response:
        author = request.query.get("filter", "author:eq:").split(":", 2)[2]
        limit = int(request.query.get("limit", "20"))
        items = conn.execute(
            f"SELECT {COLUMNS} FROM posts WHERE author = ? ORDER BY n DESC, id DESC LIMIT ?", (author, limit)
        ).fetchall()
        total = conn.execute("SELECT count(*) AS c FROM posts WHERE author = ?", (author,)).fetchone()["c"]
        return json_response({"items": items, "total": total})

    async def create(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        doc_id = secrets.token_hex(16)
        doc = conn.execute(
            f"INSERT INTO posts (id, title, author, n, published) VALUES (?, ?, ?, ?, ?) RETURNING {COLUMNS}",
            (doc_id, body["title"], body["author"], body["n"], int(body.get("published", False))),
        ).fetchone()
        return json_response(doc, 201)

    app = web.Application()
    app.router.add_get("/api/collections/posts/{id}", view)
    app.router.add_get("/api/collections/posts", listing)
    app.router.add_post("/api/collections/posts", create)
    app.router.add_get("/health/ready", lambda request: _ready())
    return app


async def _ready() -> web.Response:
    return web.Response(text="ok")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", required=True, help="the SQLite file (an Alyx database with `posts`)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes on the port (SO_REUSEPORT)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child or args.workers == 1:
        web.run_app(make_app(args.db), host="127.0.0.1", port=args.port, reuse_port=True, print=None,
                    access_log=None)  # fmt: skip
        return 0
    argv_child = [sys.executable, __file__, "--db", args.db, "--port", str(args.port), "--child"]
    children = [subprocess.Popen(argv_child) for _ in range(args.workers)]

    def stop(signum: int, frame: object) -> None:
        for child in children:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return max(child.wait() for child in children)


if __name__ == "__main__":
    sys.exit(main())
