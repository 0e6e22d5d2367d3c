"use strict";
// @alyx/functions: defineFunction, and the ctx handed to handlers (auth, env, log, db).
// ctx.db calls go to the server's internal API over a Unix socket, with the invocation's
// token, and run as the caller under the rules.
const http = require("node:http");

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
    const options = {
      socketPath: this.socketPath,
      path: `/internal/v1/${route}`,
      method: "POST",
      headers: {
        authorization: `Bearer ${this.token}`,
        "content-type": "application/json",
        "content-length": payload.length,
      },
    };
    return new Promise((resolve, reject) => {
      const req = http.request(options, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let data = null;
          try {
            data = text ? JSON.parse(text) : null;
          } catch (e) {
            reject(new AlyxError(`the internal API answered non-JSON: ${text.slice(0, 200)}`));
            return;
          }
          if (res.statusCode >= 400) {
            const d = data || {};
            reject(new AlyxError(d.error || `HTTP ${res.statusCode}`, {
              code: d.code || "INTERNAL_ERROR", status: res.statusCode, details: d.details || [],
            }));
          } else {
            resolve(data);
          }
        });
      });
      req.on("error", (e) => reject(new AlyxError(`cannot reach the Alyx internal API: ${e.message}`, {
        code: "INTERNAL_API_UNAVAILABLE", status: 503,
      })));
      req.end(payload);
    });
  }
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
