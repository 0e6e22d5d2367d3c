// The logs page: requests from the admin events WebSocket, newest first. The page keeps
// the last `data-keep` requests and filters them in the browser; paused, new requests
// wait (counted) until resumed. Values are put in the page as text, never as markup.
import { events } from "./admin.js";

const table = document.getElementById("logs");
const body = table?.tBodies[0];
const KEEP = Number(table?.dataset.keep ?? 1000);
const text = document.getElementById("log-text");
const statusSelect = document.getElementById("log-status");
const methodSelect = document.getElementById("log-method");
const workerSelect = document.getElementById("log-worker");
const pauseButton = document.getElementById("log-pause");
const state = document.getElementById("log-state");

let kept = [];      // newest first: {event, row}
let held = [];      // arrived while paused, oldest first
let paused = false;
let connection = "Connecting…";
let dropped = 0;
const workers = new Set();

function cell(value, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = value == null || value === "" ? "—" : String(value);
  return td;
}

function clock(time) {
  const date = new Date(time);
  if (Number.isNaN(date.getTime())) return time ?? "";
  return date.toLocaleTimeString([], { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
}

function makeRow(r) {
  const tr = document.createElement("tr");
  const status = cell(r.status, `status-code s${String(r.status)[0]}`);
  const time = cell(clock(r.time));
  time.title = r.time ?? "";
  const path = cell(r.path, "mono path");
  path.title = r.path ?? "";
  tr.append(time, cell(r.method, "mono"), path, status, cell(r.duration_ms, "num"), cell(r.user), cell(r.worker), cell(r.id, "mono small"));
  if (r.ip) tr.title = `client ${r.ip}`;
  return tr;
}

function filters() {
  const terms = text.value.toLowerCase().split(/\s+/).filter(Boolean);
  return {
    include: terms.filter((t) => !t.startsWith("-")),
    exclude: terms.filter((t) => t.startsWith("-") && t.length > 1).map((t) => t.slice(1)),
    status: statusSelect.value,
    method: methodSelect.value,
    worker: workerSelect.value,
  };
}

function matches(r, f) {
  if (f.status && !f.status.includes(String(r.status)[0])) return false;
  if (f.method && r.method !== f.method) return false;
  if (f.worker && String(r.worker) !== f.worker) return false;
  if (f.include.length || f.exclude.length) {
    const hay = [r.method, r.path, r.status, r.user, r.id, r.ip, r.worker].join(" ").toLowerCase();
    if (!f.include.every((t) => hay.includes(t))) return false;
    if (f.exclude.some((t) => hay.includes(t))) return false;
  }
  return true;
}

function showState() {
  const shown = body.childElementCount;
  let line = `${connection} · ${shown} of ${kept.length} shown`;
  if (paused) line += ` · paused, ${held.length} new waiting`;
  if (dropped) line += ` · ${dropped} missed (the stream fell behind)`;
  state.textContent = line;
}

function render() {
  const f = filters();
  const rows = kept.filter((k) => matches(k.event, f)).map((k) => k.row);
  body.replaceChildren(...rows);
  showState();
}

function addWorker(name) {
  if (name == null || workers.has(String(name))) return;
  workers.add(String(name));
  const option = document.createElement("option");
  option.value = option.textContent = String(name);
  const after = [...workerSelect.options].slice(1).find((o) => o.value.localeCompare(option.value, undefined, { numeric: true }) > 0);
  workerSelect.insertBefore(option, after ?? null);
}

function add(list) {
  const f = filters();
  const fresh = [];
  for (const r of list) {
    const entry = { event: r, row: makeRow(r) };
    kept.unshift(entry);
    if (matches(r, f)) fresh.unshift(entry.row);
  }
  if (fresh.length) body.prepend(...fresh);
  if (kept.length > KEEP) {
    for (const gone of kept.splice(KEEP)) gone.row.remove();
  }
  showState();
}

function receive(event) {
  const { type, payload } = event;
  if (type === "hello") addWorker(payload.worker);
  else if (type === "worker") addWorker(payload.worker);
  else if (type === "dropped") { dropped += payload.count; showState(); }
  else if (type === "request") {
    addWorker(payload.worker);
    if (paused) {
      held.push(payload);
      if (held.length > KEEP) held.splice(0, held.length - KEEP);
      showState();
    } else {
      add([payload]);
    }
  }
}

let retry = 1000;
function connect() {
  const socket = events(receive);
  socket.addEventListener("open", () => { connection = "Live"; retry = 1000; showState(); });
  socket.addEventListener("close", () => {
    connection = `Disconnected; trying again in ${Math.round(retry / 1000)} s`;
    showState();
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
  });
}

if (table) {
  for (const control of [text, statusSelect, methodSelect, workerSelect]) control.addEventListener("input", render);
  document.getElementById("log-filters").addEventListener("submit", (e) => e.preventDefault());
  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused && held.length) {
      const waiting = held;
      held = [];
      add(waiting);
    }
    showState();
  });
  document.getElementById("log-clear").addEventListener("click", () => {
    kept = []; held = []; dropped = 0;
    render();
  });
  connect();
}
