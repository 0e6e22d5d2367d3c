// The data browser's table (data_table.html): live updates, row selection, remembered columns.
//
// Live: the admin events stream (/api/admin/events, signed in by the session cookie) sends
// a `change` event for every committed write to any collection, from any worker. When one
// names this table's collection, the table is fetched again from the server (the same URL
// with fragment=1: the same query, page and columns, rendered and escaped by the server)
// and swapped in, keeping the rows that were checked.
import { events } from "./admin.js";

const live = document.getElementById("live");
const status = document.getElementById("live-status");
const bulk = document.getElementById("bulk");
const deleteButton = document.getElementById("delete-selected");
const columnsForm = document.getElementById("columns-form");
const storageKey = (collection) => `alyx.admin.columns.${collection}`;

function checkedIds() {
  return new Set([...live.querySelectorAll('input[name="id"]:checked')].map((box) => box.value));
}

function updateSelection() {
  const boxes = [...live.querySelectorAll('input[name="id"]')];
  const count = boxes.filter((box) => box.checked).length;
  deleteButton.disabled = count === 0;
  deleteButton.textContent = count ? `Delete selected (${count})` : "Delete selected";
  const all = live.querySelector("#select-all");
  if (all) all.checked = boxes.length > 0 && count === boxes.length;
}

let pending = null;
let refreshing = false;
let again = false;

async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    const url = new URL(live.dataset.source, location.origin);
    url.searchParams.set("fragment", "1");
    const response = await fetch(url, { headers: { "Accept": "text/html" }, credentials: "same-origin" });
    if (response.status === 401 || response.redirected) { status.textContent = "Signed out: reload the page."; return; }
    const html = await response.text();
    const keep = checkedIds();
    live.innerHTML = html;
    for (const box of live.querySelectorAll('input[name="id"]')) box.checked = keep.has(box.value);
    updateSelection();
    status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    status.textContent = `Could not refresh: ${error.message}`;
  } finally {
    refreshing = false;
    if (again) { again = false; schedule(); }
  }
}

function schedule() {
  clearTimeout(pending);
  pending = setTimeout(refresh, 150);
}

let retry = 1000;
function follow() {
  const socket = events((event) => {
    if (event.type === "change" && event.payload?.collection === live.dataset.collection) schedule();
    if (event.type === "dropped") schedule();
  });
  socket.addEventListener("open", () => {
    retry = 1000;
    live.dataset.live = "on";
    status.textContent = "Live";
  });
  socket.addEventListener("close", () => {
    live.dataset.live = "off";
    status.textContent = "Not live: reconnecting…";
    setTimeout(follow, retry);
    retry = Math.min(retry * 2, 30000);
  });
}

if (live) {
  live.addEventListener("change", (event) => {
    if (event.target.id === "select-all") {
      for (const box of live.querySelectorAll('input[name="id"]')) box.checked = event.target.checked;
    }
    updateSelection();
  });
  bulk.addEventListener("submit", (event) => {
    if (checkedIds().size === 0) event.preventDefault();
  }, { capture: true });
  updateSelection();
  follow();
}

// Columns: the choice lives in the URL (col=...), and is remembered per collection in
// localStorage so that the next visit without col= shows the same columns.
if (columnsForm) {
  const collection = columnsForm.dataset.collection;
  columnsForm.addEventListener("submit", () => {
    const chosen = [...columnsForm.querySelectorAll('input[name="col"]:checked')].map((box) => box.value);
    const every = columnsForm.querySelectorAll('input[name="col"]').length;
    if (chosen.length === 0 || chosen.length === every) localStorage.removeItem(storageKey(collection));
    else localStorage.setItem(storageKey(collection), JSON.stringify(chosen));
  });
  const params = new URLSearchParams(location.search);
  const saved = localStorage.getItem(storageKey(collection));
  if (!params.has("col") && saved) {
    try {
      const names = JSON.parse(saved);
      const known = new Set([...columnsForm.querySelectorAll('input[name="col"]')].map((box) => box.value));
      const usable = Array.isArray(names) ? names.filter((name) => known.has(name)) : [];
      if (usable.length) {
        for (const name of usable) params.append("col", name);
        location.replace(`${location.pathname}?${params}`);
      }
    } catch {
      localStorage.removeItem(storageKey(collection));
    }
  }
}
