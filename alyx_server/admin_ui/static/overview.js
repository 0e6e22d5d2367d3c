// The overview keeps itself current: every 5 s it reads overview.json, fills the
// [data-field] elements and computes requests/s and the error rate between two reads.
import { getJSON } from "./admin.js";

const root = document.getElementById("overview");
const updated = document.getElementById("overview-updated");
const PERIOD = 5000;
let previous = null;

const pick = (data, path) => path.split(".").reduce((v, k) => (v == null ? v : v[k]), data);

function format(value, kind) {
  if (value == null) return "—";
  if (kind === "bytes") {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let n = Number(value), i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  if (kind === "percent") return `${(Number(value) * 100).toFixed(2)} %`;
  if (kind === "duration") {
    let s = Math.round(Number(value));
    const d = Math.floor(s / 86400); s %= 86400;
    const h = Math.floor(s / 3600); s %= 3600;
    const m = Math.floor(s / 60); s %= 60;
    return [d && `${d} d`, h && `${h} h`, m && `${m} min`, `${s} s`].filter(Boolean).join(" ");
  }
  return String(value);
}

function fill(data) {
  const now = performance.now();
  if (previous) {
    const seconds = (now - previous.at) / 1000;
    const total = data.requests.total - previous.total;
    const errors = data.requests.errors - previous.errors;
    data.rate = seconds > 0 ? (total / seconds).toFixed(2) : "0";
    data.error_rate = total > 0 ? errors / total : 0;
  } else {
    data.rate = data.requests_per_second_since_start;
  }
  previous = { at: now, total: data.requests.total, errors: data.requests.errors };
  for (const element of root.querySelectorAll("[data-field]")) {
    const value = pick(data, element.dataset.field);
    element.textContent = format(value, element.dataset.format);
    if (element.classList.contains("status")) element.className = `status status-${value}`;
  }
  updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

async function refresh() {
  try {
    fill(await getJSON(root.dataset.source));
  } catch (error) {
    updated.textContent = `Could not update: ${error.message}`;
  }
}

if (root) {
  refresh();
  setInterval(refresh, PERIOD);
}
