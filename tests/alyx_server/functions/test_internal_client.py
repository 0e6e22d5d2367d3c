"""The Node SDK's client of the internal API: HTTP/1.1 over the Unix socket by hand, with
kept connections, so that a new worker does not load and first run `node:http` (about a
third of its warm-up's CPU, spent by every worker a deploy starts)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from alyx_server.resources import data_dir
from tests.alyx_server.functions.projects import call, make_app, service_of, sign_up, write_functions

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# Reads and writes through ctx.db, then says which of Node's own modules the worker loaded.
LOADED = """\
import { defineFunction } from "@alyx/functions";

export default defineFunction({
  async handler(input, ctx) {
    const note = await ctx.db.notes.create({ owner: ctx.auth.id, title: input.title });
    const again = await ctx.db.notes.get(note.id);
    const mine = await ctx.db.notes.find({ title: input.title });
    const loaded = process.moduleLoadList.filter((m) => m.startsWith("NativeModule "));
    return { id: again.id, found: mine.length, loaded: loaded.map((m) => m.slice(13)) };
  },
});
"""


async def test_a_node_worker_talks_to_the_internal_api_without_node_http(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    root = write_functions(tmp_path / "p", {"loaded.mjs": LOADED, "loaded.yaml": 'rule: "true"\n'})
    client = await aiohttp_client(make_app(root, None, **{"functions.pool.min_warm": 1}))
    assert all(worker.warmed for worker in service_of(client).pools["loaded"].workers)
    user = await sign_up(client, "client@example.com")
    status, body = await call(client, "loaded", {"title": "kept"}, user)
    assert status == 200 and body["success"] is True, body
    assert body["output"]["found"] == 1
    assert "net" in body["output"]["loaded"]
    assert "http" not in body["output"]["loaded"]
    assert "_http_client" not in body["output"]["loaded"]


# A node:http server on a Unix socket answering as aiohttp may: a length or chunks, kept
# connections it closes when idle, error statuses; then the SDK's client against it.
CLIENT_SCRIPT = """\
const http = require("node:http");
const fs = require("node:fs");
const sdk = require(process.argv[2]);
const socketPath = process.argv[3];
const seen = { connections: 0, requests: [] };
const server = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    seen.requests.push({ url: req.url, auth: req.headers.authorization, body: JSON.parse(body) });
    const route = req.url.slice("/internal/v1/".length);
    if (route === "db/query" && JSON.parse(body).id === "missing") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "no such note", code: "DOCUMENT_NOT_FOUND" }));
    } else if (route === "db/query" && JSON.parse(body).id === "bad") {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "bad filter", code: "VALIDATION_ERROR", details: [1] }));
    } else if (route === "db/query" && JSON.parse(body).id === "big") {
      res.writeHead(200, { "content-type": "application/json" }); // 4 MB in 1,000 chunks
      res.write('{"doc": {"id": "big", "title": "');
      for (let i = 0; i < 1000; i++) res.write("x".repeat(4000));
      res.end('"}}');
    } else if (route === "db/query") {
      res.writeHead(200, { "content-type": "application/json" }); // chunked: no length
      res.write('{"doc": {"id": ');
      res.end(JSON.stringify(JSON.parse(body).id) + ', "title": "caf\\u00e9"}}');
    } else {
      const text = JSON.stringify({ ok: true });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    }
  });
});
server.on("connection", () => seen.connections++);
server.keepAliveTimeout = 50; // idle kept connections are closed by the server
if (fs.existsSync(socketPath)) fs.unlinkSync(socketPath);
server.listen(socketPath, async () => {
  const context = { alyx_url: `unix://${socketPath}`, internal_token: "tok" };
  const ctx = sdk.makeContext({ request_id: "r", context }, []);
  const out = {};
  out.ping = await ctx._ping();
  out.ping2 = await ctx._ping();
  out.connectionsAfterTwo = seen.connections;
  await new Promise((r) => setTimeout(r, 200)); // the server closes the idle connection
  out.afterIdle = await ctx._ping();
  out.chunked = await ctx.db.notes.get("n1");
  out.missing = await ctx.db.notes.get("missing");
  out.bigTitle = (await ctx.db.notes.get("big")).title.length;
  try {
    await ctx.db.notes.get("bad");
  } catch (e) {
    out.error = { name: e.name, code: e.code, status: e.status, message: e.message, details: e.details };
  }
  out.parallel = (await Promise.all([1, 2, 3].map((i) => ctx.db.notes.get(`p${i}`)))).map((d) => d.id);
  out.auth = seen.requests.every((r) => r.auth === "Bearer tok");
  server.close();
  try {
    const gone = { alyx_url: `unix://${socketPath}.gone`, internal_token: "" };
    await sdk.makeContext({ context: gone }, [])._ping();
  } catch (e) {
    out.unavailable = { code: e.code, status: e.status };
  }
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
});
"""


def test_the_sdk_client_reads_lengths_chunks_errors_and_survives_closed_connections(tmp_path: Path) -> None:
    script = tmp_path / "client.cjs"
    script.write_text(CLIENT_SCRIPT)
    sdk = data_dir("runtimes") / "node" / "packages" / "@alyx" / "functions" / "index.cjs"
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, str(script), str(sdk), str(tmp_path / "api.sock")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ping"] == out["ping2"] == out["afterIdle"] == {"ok": True}
    assert out["connectionsAfterTwo"] == 1  # the second call reused the first's connection
    assert out["chunked"] == {"id": "n1", "title": "café"}
    assert out["missing"] is None  # 404 DOCUMENT_NOT_FOUND: get() answers null
    assert out["bigTitle"] == 4_000_000
    assert out["error"] == {
        "name": "AlyxError",
        "code": "VALIDATION_ERROR",
        "status": 400,
        "message": "bad filter",
        "details": [1],
    }
    assert out["parallel"] == ["p1", "p2", "p3"]
    assert out["auth"] is True
    assert out["unavailable"] == {"code": "INTERNAL_API_UNAVAILABLE", "status": 503}
