"""A project whose functions run on writes and on time, and the real application around it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from alyx_server.app import create_app
from alyx_server.config import default_settings
from alyx_server.tools.timestamps import SYSTEM_CLOCK, Clock

__all__ = ["SCHEMA", "make_app", "rows", "wait_for", "write_project"]

SCHEMA = """\
version: 1
collections:
  posts:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
      n:     { type: int, default: 0 }
      flag:  { type: bool, default: false }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
  seen:
    fields:
      id:        { type: int, primary: true, default: auto }
      hook:      { type: string }
      change_id: { type: int }
      event:     { type: string }
      post_id:   { type: string }
      n:         { type: int, nullable: true }
      previous_n: { type: int, nullable: true }
      user:      { type: string, nullable: true }
      attempt:   { type: int, default: 1 }
      at:        { type: string, nullable: true }
    rules: { read: "true" }
"""

# Records each event it gets in `seen` (an after-write hook, or a schedule's run).
RECORD_PY = """\
from alyx_functions import define_function


async def handler(event, ctx):
    doc = event.get("doc") or {}
    previous = event.get("previous") or {}
    user = event.get("user") or {}
    await ctx.db.seen.create({
        "hook": "record", "change_id": event["change_id"], "event": event["event"],
        "post_id": str(event["id"]), "n": doc.get("n"), "previous_n": previous.get("n"),
        "user": user.get("email"), "attempt": event.get("attempt", 1),
    })
    return None


record = define_function(handler=handler)
"""

TICK_PY = """\
from alyx_functions import define_function


async def handler(event, ctx):
    await ctx.db.seen.create({
        "hook": ctx.env["NAME"], "change_id": event["run"], "event": "run",
        "post_id": "", "n": event["missed"], "at": event["scheduled_at"],
    })


tick = define_function(handler=handler)
"""


def write_project(root: Path, functions: Mapping[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.yaml").write_text(SCHEMA)
    for name, text in functions.items():
        path = root / "functions" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def make_app(root: Path, *, clock: Clock = SYSTEM_CLOCK, **overrides: object) -> web.Application:
    values: dict[str, object] = {
        "realtime.poll_interval": "20ms",
        "auth.bcrypt_cost": 4,
        "auth.rate_limit.register": "off",
        "auth.rate_limit.login": "off",
        "functions.pool.min_warm": 1,
        **overrides,
    }
    return create_app(default_settings(root, "dev", overrides=values), clock=clock)


def rows(root: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(root / "data" / "alyx.db") as conn:
        return conn.execute(sql, params).fetchall()


async def wait_for(check: Any, *, deadline: float = 60.0) -> None:
    """Poll `check()` until true (a bound, not a claim about speed)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not check():
        if loop.time() > end:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)
