// The long-lived Node.js executor: runs one function, one request at a time, over stdio.
//
//   node executor.mjs <function name> <path of its .js/.mjs file> [<internal API url>]
//
// It loads the function, warms up (below), writes one line {"type":"ready","warm":bool}
// (or {"type":"ready","error":{message,file,line}} and exits when the module cannot
// load), then answers every JSON
// line on stdin, {request_id, function, input, context{auth, env, alyx_url,
// internal_token}}, with one JSON line on stdout:
//   {request_id, success: true, output, logs} | {request_id, success: false, error, logs}
// console output and process.stdout writes of the function go into its logs.
//
// The warm-up: a fresh V8 isolate compiles code lazily, on its first run, so a worker's
// first calls cost several times the next ones (the HTTP client, the socket, the JSON
// and logging paths). Before it says it is ready, the executor runs its own invoke path
// WARM_UP_ROUNDS times with a built-in handler that calls the internal API's `ping`
// (no token, touches nothing) through the SDK's client; the function's own handler is
// never run. "warm" in the ready line says whether the ping was answered.
// Works on Node 18 and 20.
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

// The SDK instance the function itself resolves, so that its AlyxError class is ours.
function loadSdk(file) {
  try {
    return createRequire(file)("@alyx/functions");
  } catch (error) {
    return createRequire(import.meta.url)(path.join(here, "packages", "@alyx", "functions", "index.cjs"));
  }
}
const sdk = loadSdk(process.argv[3] || import.meta.url);

const protocolWrite = (message) => fs.writeSync(1, JSON.stringify(message) + "\n");

let currentLines = null;
function capture(level, fallback) {
  return (...parts) => {
    if (currentLines === null) return fallback(...parts);
    sdk.makeLogger(currentLines)[level](...parts);
  };
}
const stderrLog = (...parts) => process.stderr.write(parts.join(" ") + "\n");
console.log = capture("info", stderrLog);
console.info = capture("info", stderrLog);
console.debug = capture("debug", stderrLog);
console.warn = capture("warn", stderrLog);
console.error = capture("error", stderrLog);
process.stdout.write = (chunk, ...rest) => {
  const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
  if (currentLines !== null) {
    for (const line of text.split("\n")) if (line) sdk.makeLogger(currentLines).info(line);
  } else {
    process.stderr.write(text);
  }
  const callback = rest.find((r) => typeof r === "function");
  if (callback) callback();
  return true;
};

function loadError(error, file) {
  const message = error && error.stack ? String(error.stack).split("\n").slice(0, 5).join("\n") : String(error);
  let line = null;
  const url = pathToFileURL(file).href;
  const text = `${error && error.stack ? error.stack : ""}`;
  for (const candidate of [url, file]) {
    const at = text.indexOf(candidate + ":");
    if (at >= 0) {
      const match = /^:(\d+)/.exec(text.slice(at + candidate.length));
      if (match) {
        line = Number(match[1]);
        break;
      }
    }
  }
  if (line === null && error && error.name === "SyntaxError") line = syntaxErrorLine(file);
  return { message: `${error && error.name ? error.name + ": " : ""}${error && error.message ? error.message : message}`, file, line, stack: message };
}

// An ES module's syntax error carries no position; `node --check` prints it as `file:line`.
function syntaxErrorLine(file) {
  const result = spawnSync(process.execPath, ["--check", file], { encoding: "utf8", timeout: 5000 });
  const match = new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:(\\d+)`).exec(result.stderr || "");
  return match ? Number(match[1]) : null;
}

async function load(file) {
  const module = await import(pathToFileURL(file).href);
  const candidates = [module.default, module.default && module.default.default];
  const found = candidates.find((c) => sdk.isFunctionDefinition(c));
  if (!found) {
    throw new Error(
      `${file} must export default defineFunction({input, output, handler}) from "@alyx/functions"`,
    );
  }
  return found;
}

function errorOf(error) {
  const stack = error && error.stack ? String(error.stack) : "";
  if (error instanceof Error || (error && typeof error === "object")) {
    const code = typeof error.code === "string" && error.name === "AlyxError" ? error.code : "FUNCTION_ERROR";
    const details = Array.isArray(error.details) && error.name === "AlyxError" ? error.details : [];
    const message = code === "FUNCTION_ERROR" ? `${error.name || "Error"}: ${error.message}` : error.message;
    return { code, message, details, stack };
  }
  return { code: "FUNCTION_ERROR", message: String(error), details: [], stack };
}

async function invoke(definition, request) {
  const lines = [];
  currentLines = lines;
  const answer = { request_id: request.request_id };
  try {
    const ctx = sdk.makeContext(request, lines);
    const output = await definition.handler(request.input || {}, ctx);
    JSON.stringify(output === undefined ? null : output);
    answer.success = true;
    answer.output = output === undefined ? null : output;
  } catch (error) {
    answer.success = false;
    answer.error = errorOf(error);
  } finally {
    currentLines = null;
  }
  answer.logs = lines;
  return answer;
}

const WARM_UP_ROUNDS = 2;

async function warmUp(url) {
  let answered = false;
  const warmer = {
    async handler(input, ctx) {
      ctx.log.info("warm-up");
      answered = (await ctx._ping()).ok === true;
      return { ok: answered };
    },
  };
  for (let round = 0; round < WARM_UP_ROUNDS; round++) {
    const request = { request_id: `warm-up-${round}`, input: {}, context: { alyx_url: url, internal_token: "" } };
    const answer = await invoke(warmer, request);
    JSON.stringify(answer);
    if (!answer.success) return false; // no internal API here: warming further is useless
  }
  return answered;
}

// A server too busy to answer the ping in time does not hold the worker's start back.
const WARM_UP_MS = 2000;
function withinWarmUpTime(warming) {
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => resolve(false), WARM_UP_MS);
  });
  return Promise.race([warming, late]).finally(() => clearTimeout(timer));
}

async function main() {
  const [name, file, url] = process.argv.slice(2);
  if (!name || !file) {
    process.stderr.write("usage: executor.mjs <function name> <file> [<internal API url>]\n");
    process.exit(2);
  }
  let definition;
  try {
    definition = await load(file);
  } catch (error) {
    protocolWrite({ type: "ready", error: loadError(error, file) });
    process.exit(1);
  }
  const warming = url ? warmUp(url).catch(() => false) : Promise.resolve(false);
  const warm = await withinWarmUpTime(warming);
  protocolWrite({ type: "ready", warm });
  const input = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  // A warm-up still running (past WARM_UP_MS) finishes before the first call starts.
  let chain = warming.then(() => undefined);
  input.on("line", (line) => {
    if (!line.trim()) return;
    const request = JSON.parse(line);
    chain = chain.then(async () => {
      const answer = await invoke(definition, request);
      try {
        protocolWrite(answer);
      } catch (error) {
        protocolWrite({ request_id: request.request_id, success: false, error: errorOf(error), logs: answer.logs });
      }
    });
  });
  input.on("close", () => chain.then(() => process.exit(0)));
}

main();
