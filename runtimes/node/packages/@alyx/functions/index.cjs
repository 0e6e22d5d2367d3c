"use strict";
// @alyx/functions: defineFunction, and the ctx handed to handlers (auth, env, log, db).
// ctx.db calls go to the server's internal API over a Unix socket, with the invocation's
// token, and run as the caller under the rules.
const net = require("node:net");

const BRAND = Symbol.for("alyx.function");

class AlyxError extends Error {
  constructor(message, { code = "INTERNAL_ERROR", status = 500, details = [] } = {}) {
    super(message);
    this.name = "AlyxError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

function defineFunction(definition) {
  if (!definition || typeof definition.handler !== "function") {
    throw new TypeError("defineFunction({ handler }) needs a handler (input, ctx) => output");
  }
  return Object.freeze({
    [BRAND]: true,
    input: definition.input || {},
    output: definition.output || {},
    handler: definition.handler,
  });
}

function isFunctionDefinition(value) {
  return Boolean(value && value[BRAND] === true);
}

class InternalApi {
  constructor(url, token) {
    if (!String(url).startsWith("unix://")) {
      throw new Error(`the internal API address must be unix://..., not ${url}`);
    }
    this.socketPath = String(url).slice("unix://".length);
    this.token = token;
  }

  post(route, body) {
    const payload = Buffer.from(JSON.stringify(body));
    const head = `POST /internal/v1/${route} HTTP/1.1\r\nhost: alyx\r\n`
      + `authorization: Bearer ${this.token}\r\ncontent-type: application/json\r\n`
      + `content-length: ${payload.length}\r\n\r\n`;
    return exchange(this.socketPath, Buffer.concat([Buffer.from(head, "latin1"), payload])).then(
      ({ status, text }) => {
        let data = null;
        try {
          data = text ? JSON.parse(text) : null;
        } catch (e) {
          throw new AlyxError(`the internal API answered non-JSON: ${text.slice(0, 200)}`);
        }
        if (status >= 400) {
          const d = data || {};
          throw new AlyxError(d.error || `HTTP ${status}`, {
            code: d.code || "INTERNAL_ERROR", status, details: d.details || [],
          });
        }
        return data;
      },
      (e) => {
        throw new AlyxError(`cannot reach the Alyx internal API: ${e.message}`, {
          code: "INTERNAL_API_UNAVAILABLE", status: 503,
        });
      },
    );
  }
}

// The internal API's HTTP/1.1 over its Unix socket, by hand: one request at a time per
// connection, connections kept open between requests (at most KEPT_CONNECTIONS idle).
// node:http does the same, but loading it and running its client the first time cost
// every new worker about 10 ms of CPU, which a deploy spends while the server is loaded.
const KEPT_CONNECTIONS = 4;
const idleConnections = new Map(); // socket path -> [net.Socket]

function exchange(socketPath, request) {
  const kept = takeIdle(socketPath);
  if (kept === undefined) return send(net.connect(socketPath), socketPath, request);
  // A kept connection the server closed meanwhile fails before any answer: retry once.
  return send(kept, socketPath, request).catch((e) =>
    e.beforeAnswer ? send(net.connect(socketPath), socketPath, request) : Promise.reject(e),
  );
}

function takeIdle(socketPath) {
  const idle = idleConnections.get(socketPath) || [];
  for (let socket = idle.pop(); socket !== undefined; socket = idle.pop()) {
    socket.removeListener("error", whileIdle);
    socket.removeListener("close", socket.dropIdle);
    if (!socket.destroyed) return socket;
  }
  return undefined;
}

function keepIdle(socket, socketPath) {
  const idle = idleConnections.get(socketPath) || [];
  idleConnections.set(socketPath, idle);
  if (idle.length >= KEPT_CONNECTIONS) {
    socket.destroy();
    return;
  }
  // Closed by the server while idle: forgotten. An error then is no one's to report.
  socket.dropIdle = () => {
    const at = idle.indexOf(socket);
    if (at >= 0) idle.splice(at, 1);
  };
  socket.on("error", whileIdle);
  socket.once("close", socket.dropIdle);
  socket.unref(); // a kept connection does not keep the process alive
  idle.push(socket);
}

function whileIdle() {}

function send(socket, socketPath, request) {
  return new Promise((resolve, reject) => {
    // The answer's bytes are kept as received and joined only to read the head and once
    // the body looks complete: a large answer arrives in many chunks.
    const chunks = [];
    let received = 0;
    let head = null; // {status, length, chunked, close, start}
    const joined = () => {
      if (chunks.length > 1) chunks.splice(0, chunks.length, Buffer.concat(chunks, received));
      return chunks[0] || Buffer.alloc(0);
    };
    const finish = (error, answer) => {
      socket.removeListener("data", onData);
      socket.removeListener("error", onError);
      socket.removeListener("close", onClose);
      if (error) {
        socket.destroy();
        reject(error);
        return;
      }
      if (head.close) socket.destroy();
      else keepIdle(socket, socketPath);
      resolve(answer);
    };
    const onData = (chunk) => {
      chunks.push(chunk);
      received += chunk.length;
      let answer = null;
      try {
        if (head === null) head = parseHead(joined());
        if (head !== null && mayBeComplete(head, chunks, received)) answer = parseBody(head, joined(), false);
      } catch (e) {
        finish(e);
        return;
      }
      if (answer) finish(null, answer);
    };
    const onError = (e) => {
      e.beforeAnswer = received === 0;
      finish(e);
    };
    const onClose = () => {
      let answer;
      try {
        answer = head && parseBody(head, joined(), true);
      } catch (e) {
        finish(e);
        return;
      }
      if (answer) {
        head.close = true;
        finish(null, answer);
        return;
      }
      const e = new Error("the connection closed before the answer was complete");
      e.beforeAnswer = received === 0;
      finish(e);
    };
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.ref();
    socket.write(request);
  });
}

// Whether the bytes so far can hold the whole answer: its length is reached, or a chunked
// body ends with a blank line, as its last chunk does (JSON holds no raw line break).
function mayBeComplete(head, chunks, received) {
  if (head.chunked) {
    const last = chunks[chunks.length - 1];
    const tail = last.length >= 4 ? last.subarray(last.length - 4) : Buffer.concat(chunks.slice(-4)).subarray(-4);
    return tail.toString("latin1") === "\r\n\r\n";
  }
  if (head.length !== null) return received - head.start >= head.length;
  return head.status === 204 || head.status === 304;
}

function parseHead(buffer) {
  const end = buffer.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const lines = buffer.subarray(0, end).toString("latin1").split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!match) throw new Error(`the internal API answered ${JSON.stringify(lines[0].slice(0, 100))}`);
  const head = { status: Number(match[1]), length: null, chunked: false, close: false, start: end + 4 };
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === "content-length") head.length = Number(value);
    else if (name === "transfer-encoding") head.chunked = value.includes("chunked");
    else if (name === "connection") head.close = value.includes("close");
  }
  return head;
}

// The answer once its body is complete (or, without a length, when the connection closed).
function parseBody(head, buffer, closed) {
  const body = buffer.subarray(head.start);
  if (head.chunked) {
    const parts = [];
    let at = 0;
    for (;;) {
      const eol = body.indexOf("\r\n", at);
      if (eol < 0) return null;
      const size = parseInt(body.subarray(at, eol).toString("latin1"), 16);
      if (Number.isNaN(size)) throw new Error("the internal API sent a malformed chunk");
      if (size === 0) {
        if (body.indexOf("\r\n\r\n", eol) < 0 && !closed) return null;
        return { status: head.status, text: Buffer.concat(parts).toString("utf8") };
      }
      if (body.length < eol + 2 + size + 2) return null;
      parts.push(body.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
  }
  if (head.length !== null) {
    if (body.length < head.length) return null;
    return { status: head.status, text: body.subarray(0, head.length).toString("utf8") };
  }
  if (head.status === 204 || head.status === 304) return { status: head.status, text: "" };
  return closed ? { status: head.status, text: body.toString("utf8") } : null;
}

class CollectionClient {
  constructor(api, name) {
    this.api = api;
    this.name = name;
  }

  async find(filter, options = {}) {
    const body = { collection: this.name };
    if (filter !== undefined && filter !== null) body.filter = filter;
    for (const key of ["sort", "limit", "offset"]) {
      if (options[key] !== undefined) body[key] = options[key];
    }
    return (await this.api.post("db/query", body)).docs;
  }

  async get(id) {
    try {
      return (await this.api.post("db/query", { collection: this.name, id })).doc;
    } catch (e) {
      if (e instanceof AlyxError && e.code === "DOCUMENT_NOT_FOUND") return null;
      throw e;
    }
  }

  async create(data) {
    return (await this.api.post("db/exec", { collection: this.name, method: "POST", body: data })).body;
  }

  async update(id, changes) {
    return (await this.api.post("db/exec", { collection: this.name, method: "PATCH", id, body: changes })).body;
  }

  async delete(id) {
    await this.api.post("db/exec", { collection: this.name, method: "DELETE", id });
    return null;
  }
}

function makeDb(api) {
  const cache = new Map();
  const base = {
    collection(name) {
      if (!cache.has(name)) cache.set(name, new CollectionClient(api, name));
      return cache.get(name);
    },
    async transaction(operations) {
      if (!operations.length) return [];
      const answer = await api.post("db/tx", { operations });
      return answer.results.map((r) => r.body);
    },
  };
  return new Proxy(base, {
    get(target, prop) {
      if (typeof prop !== "string" || prop in target || prop === "then") return target[prop];
      return target.collection(prop);
    },
  });
}

function makeJobs(api) {
  return {
    // Queue a job (a function whose manifest has a job: section); resolves to {id, created}.
    async enqueue(name, payload = {}, options = {}) {
      const body = { name, payload };
      if (options.delay !== undefined) body.delay = options.delay;
      const dedupe = options.dedupeKey !== undefined ? options.dedupeKey : options.dedupe_key;
      if (dedupe !== undefined) body.dedupe_key = dedupe;
      return api.post("jobs/enqueue", body);
    },
  };
}

function makeLogger(lines) {
  const add = (level) => (...parts) => {
    const message = parts.map((p) => (typeof p === "string" ? p : safeInspect(p))).join(" ");
    lines.push({ level, message, time: new Date().toISOString() });
  };
  return { debug: add("debug"), info: add("info"), warn: add("warn"), error: add("error") };
}

function safeInspect(value) {
  try {
    return require("node:util").inspect(value, { depth: 4 });
  } catch (e) {
    return String(value);
  }
}

function makeContext(request, lines) {
  const context = request.context || {};
  const token = String(context.internal_token || "");
  const api = new InternalApi(context.alyx_url || "unix:///alyx/api.sock", token);
  const ctx = {
    auth: context.auth || null,
    env: Object.freeze({ ...(context.env || {}) }),
    log: makeLogger(lines),
    db: makeDb(api),
    jobs: makeJobs(api),
    job: context.job || null,
    requestId: String(request.request_id || ""),
  };
  Object.defineProperty(ctx, "_internalToken", { value: token, enumerable: false });
  // The executor's warm-up call (POST /internal/v1/ping, no token needed).
  Object.defineProperty(ctx, "_ping", { value: () => api.post("ping", {}), enumerable: false });
  return ctx;
}

module.exports = { AlyxError, defineFunction, isFunctionDefinition, makeContext, makeLogger };
