"""Function sources and manifests used by the invocation tests."""

from __future__ import annotations

__all__ = ["FILES"]

NOTES_PY = """
from alyx_functions import AlyxError, define_function


async def handler(input, ctx):
    note = await ctx.db.notes.create({"owner": ctx.auth["id"], "title": input["title"]})
    other = None
    if input.get("other"):
        try:
            await ctx.db.notes.update(input["other"], {"title": "stolen"})
        except AlyxError as e:
            other = e.code
    mine = await ctx.db.notes.find(filter={"title": {"$ne": "zzz"}}, sort="title")
    seen = await ctx.db.notes.get(input["other"]) if input.get("other") else None
    ctx.log.info("created", note["id"])
    return {"id": note["id"], "count": len(mine), "other": other, "seen": seen}


notes = define_function(handler=handler)
"""
NOTES_NODE = """import { AlyxError, defineFunction } from "@alyx/functions";

export default defineFunction({
  async handler(input, ctx) {
    const note = await ctx.db.notes.create({ owner: ctx.auth.id, title: input.title });
    let other = null;
    if (input.other) {
      try {
        await ctx.db.notes.update(input.other, { title: "stolen" });
      } catch (e) {
        other = e instanceof AlyxError ? e.code : String(e);
      }
    }
    const mine = await ctx.db.notes.find({ title: { $ne: "zzz" } }, { sort: "title" });
    const seen = input.other ? await ctx.db.notes.get(input.other) : null;
    ctx.log.info("created", note.id);
    return { id: note.id, count: mine.length, other, seen };
  },
});
"""
NOTES_YAML = """\
input:
  title: { type: string, minLength: 1 }
  other: { type: uuid, nullable: true }
rule: "auth != null"
"""
TX_PY = """
from alyx_functions import define_function


async def handler(input, ctx):
    owner = ctx.auth["id"]
    return await ctx.db.transaction([
        {"method": "POST", "collection": "notes", "body": {"owner": owner, "title": "first"}},
        {"method": "POST", "collection": "notes", "body": {"owner": owner, "title": input["second"]}},
    ])


tx = define_function(handler=handler)
"""
MISBEHAVE_PY = """
import asyncio
import os
import time

from alyx_functions import define_function


async def handler(input, ctx):
    mode = input["mode"]
    if mode == "loop":
        while True:
            pass
    if mode == "crash":
        os._exit(3)
    if mode == "raise":
        raise ValueError("nope")
    if mode == "memory":
        blob = "x" * (1 << 30)
        return {"size": len(blob)}
    if mode == "fork":
        forked = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                forked += 1
        except OSError as e:
            return {"forked": forked, "errno": e.errno}
    if mode == "sleep":
        await asyncio.sleep(input["seconds"])
    print("mode", mode)
    return {"ok": True, "pid": os.getpid()}


misbehave = define_function(handler=handler)
"""
MISBEHAVE_YAML = """\
timeout: 2s
memory: 256MiB
input:
  mode: { type: string, enum: [loop, crash, raise, memory, fork, sleep, ok] }
  seconds: { type: float, default: 0 }
output:
  ok: { type: bool, nullable: true }
  pid: { type: int, nullable: true }
  forked: { type: int, nullable: true }
  errno: { type: int, nullable: true }
  size: { type: int, nullable: true }
rule: "true"
"""
PROBE_PY = """
import os
import socket

from alyx_functions import define_function


def attempt(fn):
    try:
        return fn()
    except OSError as e:
        return type(e).__name__


def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return "connected"


def handler(input, ctx):
    return {
        "db": attempt(lambda: open(input["db"], "rb").read(16) and "read"),
        "secret_file": attempt(lambda: open(input["secret_file"]).read() and "read"),
        "secret_env": os.environ.get("ALYX_AUTH_JWT_SECRET"),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("ALYX", "API"))},
        "ctx_env": ctx.env,
        "net": attempt(lambda: connect(input["port"])),
        "write": attempt(lambda: open(__file__, "a").write("x") and "written"),
    }


probe = define_function(handler=handler)
"""
PROBE_NODE = """import fs from "node:fs";
import net from "node:net";
import { defineFunction } from "@alyx/functions";

const attempt = (fn) => { try { return fn(); } catch (e) { return e.code || String(e); } };
const connect = (port) => new Promise((resolve) => {
  const socket = net.connect({ host: "127.0.0.1", port }, () => { socket.destroy(); resolve("connected"); });
  socket.on("error", (e) => resolve(e.code || String(e)));
  socket.setTimeout(2000, () => { socket.destroy(); resolve("timeout"); });
});

export default defineFunction({
  async handler(input, ctx) {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(ALYX|API)/.test(k)));
    return {
      db: attempt(() => fs.readFileSync(input.db) && "read"),
      secret_file: attempt(() => fs.readFileSync(input.secret_file) && "read"),
      secret_env: process.env.ALYX_AUTH_JWT_SECRET ?? null,
      env,
      ctx_env: ctx.env,
      net: await connect(input.port),
      write: attempt(() => fs.appendFileSync(new URL(import.meta.url).pathname, "x") || "written"),
    };
  },
});
"""
PROBE_YAML = "env: { API_KEY: k1 }\nrule: 'true'\n"
PROBE_NET_YAML = "env: { API_KEY: k1 }\nnetwork: true\nrule: 'true'\n"
LEAK_PY = """
from alyx_functions import define_function

leak = define_function(handler=lambda input, ctx: {"token": ctx._internal_token})
"""
ADMIN_ONLY_PY = """
from alyx_functions import define_function

f = define_function(handler=lambda input, ctx: {"who": ctx.auth["email"]})
"""
BIG_ONLY_YAML = "input: { n: { type: int } }\nrule: auth != null && input.n > 2 && request.method == 'POST'\n"
BROKEN_NODE = (
    'import { defineFunction } from "@alyx/functions";\n\nexport default defineFunction({ handler( });\n'
)

FILES = {
    "notes.py": NOTES_PY,
    "notes.yaml": NOTES_YAML,
    "notes_node/index.mjs": NOTES_NODE,
    "notes_node.yaml": NOTES_YAML,
    "tx.py": TX_PY,
    "tx.yaml": "input: { second: { type: string } }\nrule: auth != null\n",
    "misbehave.py": MISBEHAVE_PY,
    "misbehave.yaml": MISBEHAVE_YAML,
    "probe.py": PROBE_PY,
    "probe.yaml": PROBE_YAML,
    "probe_net.py": PROBE_PY,
    "probe_net.yaml": PROBE_NET_YAML,
    "probe_node.mjs": PROBE_NODE,
    "probe_node.yaml": PROBE_YAML,
    "probe_node_net.mjs": PROBE_NODE,
    "probe_node_net.yaml": PROBE_NET_YAML,
    "leak.py": LEAK_PY,
    "leak.yaml": "rule: 'true'\n",
    "admin_only.py": ADMIN_ONLY_PY,
    "big_only.py": ADMIN_ONLY_PY,
    "big_only.yaml": BIG_ONLY_YAML,
    "broken.mjs": BROKEN_NODE,
    "broken.yaml": "rule: 'true'\n",
}
