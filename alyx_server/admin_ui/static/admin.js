// Shared helpers of the admin UI, imported by the pages' modules:
//   import { send, csrfToken, base } from "./admin.js";
// send() is how JavaScript changes anything: it adds the session's CSRF token
// (X-CSRF-Token) and asks for JSON; it throws an Error with the server's message on failure.

export const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";
export const base = () => document.querySelector('meta[name="admin-base"]')?.content ?? "/_admin/";

export async function send(url, { method = "POST", json, form } = {}) {
  const headers = { "Accept": "application/json", "X-CSRF-Token": csrfToken() };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form);
  }
  const response = await fetch(url, { method, headers, body, credentials: "same-origin" });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error(data?.error ?? `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.body = data;
    throw error;
  }
  return data;
}

export async function getJSON(url) {
  const response = await fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" });
  if (response.status === 401) {
    window.location.assign(`${base()}login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new Error("signed out");
  }
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.json();
}

// The admin events WebSocket (/api/admin/events), signed in by the session cookie.
export function events(onEvent) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/api/admin/events`);
  socket.addEventListener("message", (message) => onEvent(JSON.parse(message.data)));
  return socket;
}

// Forms marked data-confirm="question" ask before they are sent.
document.addEventListener("submit", (event) => {
  const question = event.target?.dataset?.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
