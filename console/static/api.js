// The console's only way to the platform: the public API, with the signed-in user's JWT and brand,
// so roles and brand scope are enforced by the services exactly as for any other client.

const SESSION_KEY = "taskhub.console.session";
const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };

// ---- the session (sessionStorage: gone when the tab closes, never sent anywhere but the API)

export function currentSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

export function signIn(token, brand) {
  const claims = tokenClaims(token);
  if (!claims) throw new Error("This is not a JWT (three base64url parts).");
  const brandId = Number(brand);
  if (!Number.isInteger(brandId)) throw new Error("The brand must be a number.");
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token, brand: brandId }));
}

export function signOut() {
  sessionStorage.removeItem(SESSION_KEY);
}

export function tokenClaims(token) {
  const parts = String(token || "").trim().split(".");
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(decodeURIComponent(escape(json)));
  } catch {
    return null;
  }
}

// What the token says about the signed-in brand. Only for showing or hiding buttons: the API
// decides (a hidden button is a courtesy, a 403 is the rule).
export function identity() {
  const session = currentSession();
  const claims = session && tokenClaims(session.token);
  const brand = claims && (claims.brands || []).find((b) => Number(b.id) === session.brand);
  return {
    username: claims ? claims.username || claims.sub : "",
    brand: brand || { id: session && session.brand, name: "", role: "viewer" },
    expiresAt: claims && claims.exp ? new Date(claims.exp * 1000) : null,
  };
}

export function can(role) {
  return (ROLE_RANK[identity().brand.role] || 0) >= ROLE_RANK[role];
}

// ---- calls

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.detail = detail;
    this.errorCode = (body && body.error_code) || "";
    this.fieldErrors = (body && body.field_errors) || {};
  }
}

function url(path, params) {
  const target = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, value);
  }
  return target;
}

function headers(extra) {
  const session = currentSession() || {};
  return {
    Authorization: `Bearer ${session.token || ""}`,
    "X-Brand-ID": String(session.brand || ""),
    Accept: "application/json",
    ...extra,
  };
}

export async function api(method, path, { params, body } = {}) {
  let response;
  try {
    response = await fetch(url(path, params), {
      method,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { detail: "The platform could not be reached." });
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("taskhub:unauthorized"));
    throw new ApiError(response.status, data);
  }
  return data;
}

export const get = (path, params) => api("GET", path, { params });
export const post = (path, body = {}) => api("POST", path, { body });
export const patch = (path, body) => api("PATCH", path, { body });
export const del = (path) => api("DELETE", path);

// ---- server-sent events over fetch (EventSource cannot send an Authorization header)

const RECONNECT_MS = [500, 1000, 2000, 5000];

// Follows `path` (GET /tasks/stream/ or /tasks/{id}/stream/): onEvent(task) for every `task` event,
// reconnecting with Last-Event-ID after a break. onUnavailable() when the platform has no stream
// there (the caller then polls). A stream the server ends on purpose (a final task) ends.
export function follow(path, params, { onEvent, onUnavailable, onOpen }) {
  const controller = new AbortController();
  let lastId = null;
  let failures = 0;

  async function once() {
    const response = await fetch(url(path, params), {
      headers: headers({ Accept: "text/event-stream", ...(lastId ? { "Last-Event-ID": lastId } : {}) }),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new ApiError(response.status, body);
    }
    failures = 0;
    if (onOpen) onOpen();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  function dispatch(block) {
    let event = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    if (id) lastId = id;
    if (event === "task" && data.length) {
      try {
        onEvent(JSON.parse(data.join("\n")));
      } catch {
        /* a malformed event is skipped, the stream goes on */
      }
    }
  }

  (async () => {
    while (!controller.signal.aborted) {
      try {
        await once();
        return; // ended by the server
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
          // no stream here (an older platform), not allowed, or too many streams open (429): poll
          if (onUnavailable) onUnavailable(error);
          return;
        }
        await new Promise((r) => setTimeout(r, RECONNECT_MS[Math.min(failures++, RECONNECT_MS.length - 1)]));
      }
    }
  })();

  return { close: () => controller.abort() };
}

// ---- one stream of the brand's task changes per tab, shared by every page that shows tasks

const subscribers = new Set();
let shared = null; // { stream, mode, closeTimer }
const LINGER_MS = 30000; // kept open a while after the last page left: navigation reuses it

function broadcastMode(mode) {
  shared.mode = mode;
  for (const s of subscribers) if (s.onMode) s.onMode(mode);
}

// subscribe({ onTask, onMode }) -> unsubscribe. onMode("connecting" | "live" | "polling"): in
// "polling" the platform gave no stream (or none is free) and the page should poll instead.
export function subscribeTasks(subscriber) {
  subscribers.add(subscriber);
  if (shared && shared.closeTimer) {
    clearTimeout(shared.closeTimer);
    shared.closeTimer = null;
  }
  if (!shared) {
    shared = { mode: "connecting", closeTimer: null, stream: null };
    shared.stream = follow("/tasks/stream/", {}, {
      onOpen: () => broadcastMode("live"),
      onEvent: (task) => {
        for (const s of subscribers) s.onTask(task);
      },
      onUnavailable: () => broadcastMode("polling"),
    });
  }
  if (subscriber.onMode) subscriber.onMode(shared.mode);
  return () => {
    subscribers.delete(subscriber);
    if (subscribers.size === 0 && shared && !shared.closeTimer) {
      shared.closeTimer = setTimeout(() => {
        if (subscribers.size === 0 && shared) {
          shared.stream.close();
          shared = null;
        }
      }, LINGER_MS);
    }
  };
}

export function closeTaskStream() {
  if (shared) {
    shared.stream.close();
    clearTimeout(shared.closeTimer);
    shared = null;
  }
}
