// The function page: invoke without leaving the page, and keep the recent invocations
// current (after each invocation from here, and when the admin events stream reports an
// invocation of this function on any worker). Everything a function returns or logs is
// put in the page as text (textContent), never as markup.
import { send, getJSON, events } from "./admin.js";

const root = document.getElementById("function");
const form = document.getElementById("invoke-form");
const input = document.getElementById("invoke-input");
const resultBox = document.getElementById("invoke-result");
const table = document.getElementById("recent");
const note = document.getElementById("recent-note");
const LEVELS = new Set(["debug", "info", "warn", "error"]);

function el(tag, { cls, text, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

function logText(line) {
  if (line && typeof line === "object" && "message" in line) return `${line.level || "log"} ${line.message}`;
  return typeof line === "string" ? line : JSON.stringify(line);
}

function logLines(lines) {
  if (!lines || lines.length === 0) return el("p", { cls: "muted small", text: "No log lines." });
  return el("ol", { cls: "log-lines" }, lines.map((line) =>
    el("li", { cls: `log-${LEVELS.has(line?.level) ? line.level : "info"}`, text: logText(line) })));
}

function outcome(r) {
  return r.success ? "success" : (r.error?.code ?? "failed");
}

function showResult(r) {
  const ok = r.success === true;
  const head = el("p", {}, [
    el("span", { cls: `status status-${ok ? "ok" : "error"}`, text: `${r.status ?? ""} ${outcome(r)}`, attrs: { id: "result-status" } }),
    r.duration_ms != null ? el("span", { cls: "muted", text: ` · ${r.duration_ms} ms` }) : null,
    el("span", { cls: "muted small", text: ` · worker ${r.worker ?? "?"} · request ${r.request_id ?? "?"}` }),
  ]);
  const parts = [head];
  if (ok) {
    parts.push(el("h3", { text: "Output" }));
    parts.push(el("pre", { cls: "json", text: JSON.stringify(r.output, null, 2) ?? "undefined", attrs: { id: "result-output" } }));
  } else {
    parts.push(el("p", { cls: "error", text: r.error?.message ?? "the function failed", attrs: { id: "result-error" } }));
    const details = r.error?.details ?? [];
    if (details.length) {
      parts.push(el("ul", { cls: "error small" }, details.map((d) =>
        el("li", { text: `${d.field ? `${d.field}: ` : ""}${d.message}` }))));
    }
    if (r.error?.stack) parts.push(el("pre", { cls: "small", text: r.error.stack }));
  }
  parts.push(el("h3", { text: "Logs" }));
  parts.push(el("div", { attrs: { id: "result-logs" } }, [logLines(r.logs)]));
  resultBox.replaceChildren(el("div", { cls: `result ${ok ? "ok" : "failed"}`, attrs: { id: "result" } }, parts));
}

function recentRow(r) {
  const ok = r.success === true;
  const detail = el("td", { cls: "wrap-cell" });
  if (r.error) detail.append(el("p", { cls: "error", text: r.error.message }));
  if (r.logs && r.logs.length) {
    const count = r.logs.length;
    detail.append(el("details", {}, [
      el("summary", { text: `${count} log line${count === 1 ? "" : "s"}` }),
      logLines(r.logs),
    ]));
  } else if (!r.error) {
    detail.append(el("span", { cls: "muted", text: "—" }));
  }
  return el("tr", { cls: ok ? "ok" : "failed" }, [
    el("td", {}, [el("time", { text: r.time, attrs: { datetime: r.time ?? "" } })]),
    el("td", {}, [el("span", { cls: `status status-${ok ? "ok" : "error"}`, text: `${r.status} ${ok ? "ok" : (r.error?.code ?? "failed")}` })]),
    el("td", { cls: "num", text: r.duration_ms }),
    el("td", { text: r.user || "—" }),
    el("td", { text: r.worker }),
    el("td", { cls: "mono small", text: r.id || "—" }),
    detail,
  ]);
}

async function refresh() {
  try {
    const data = await getJSON(root.dataset.recent);
    const body = table.tBodies[0];
    const open = new Set([...body.querySelectorAll("details[open]")].map((d) => d.closest("tr")?.dataset.key));
    const rows = data.invocations.map((r) => {
      const row = recentRow(r);
      row.dataset.key = `${r.worker}/${r.id}/${r.time}`;
      if (open.has(row.dataset.key)) row.querySelector("details")?.setAttribute("open", "");
      return row;
    });
    if (rows.length === 0) rows.push(el("tr", { cls: "empty" }, [el("td", { cls: "muted", text: "No invocations yet.", attrs: { colspan: "7" } })]));
    body.replaceChildren(...rows);
    const missing = data.unreachable.length ? ` Not answering: worker ${data.unreachable.join(", ")}.` : "";
    note.textContent = `${note.dataset.base}${missing} Updated ${new Date().toLocaleTimeString()}.`;
  } catch (error) {
    note.textContent = `Could not update the list: ${error.message}`;
  }
}

let pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, 250);
}

async function invoke(event) {
  event.preventDefault();
  let data;
  try {
    data = JSON.parse(input.value.trim() || "{}");
  } catch (error) {
    showResult({ success: false, status: 400, error: { code: "VALIDATION_ERROR", message: `the input is not JSON: ${error.message}` }, logs: [] });
    return;
  }
  const button = document.getElementById("invoke");
  button.disabled = true;
  try {
    showResult(await send(form.action, { json: { input: data } }));
  } catch (error) {
    const body = error.body;
    if (body && typeof body.error === "object") showResult(body);
    else showResult({ success: false, status: error.status, error: { code: body?.code ?? "ERROR", message: error.message }, logs: [] });
  } finally {
    button.disabled = false;
    refresh();
  }
}

if (root) {
  note.dataset.base = note.textContent.replace(/ Not answering:.*$/, "");
  form.addEventListener("submit", invoke);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  document.getElementById("recent-refresh").addEventListener("click", refresh);
  events((event) => {
    if (event.type === "invocation" && event.payload.function === root.dataset.name) refreshSoon();
  });
}
