// The admin API client: one fetch wrapper for every call the console makes.
//
// Two ways to be authenticated: a user's session (the HttpOnly cookie the hub sets at
// POST /api/v1/session; every state change then carries X-CSRF-Token), or the admin
// token (kept in sessionStorage for this tab only, sent as a bearer token).

const TOKEN_KEY = "headrace.adminToken";
// set while this browser holds a session cookie (which scripts cannot see: HttpOnly), so
// that a fresh visit does not probe GET /session only to be told 401
const SESSION_FLAG = "headrace.hasSession";

export const session = {
  user: null, // {username, roles: [{role, orgId}]}
  csrf: null,
  token: sessionStorage.getItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, code, message, field, extra) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field ?? null;
    this.extra = extra ?? {};
  }
}

const listeners = new Set();
// called with no argument when the hub answers 401: the session is over
export function onUnauthorized(fn) {
  listeners.add(fn);
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

export function authHeaders(method = "GET") {
  const h = {};
  if (session.token) h.authorization = "Bearer " + session.token;
  else if (method !== "GET" && method !== "HEAD" && session.csrf) h["x-csrf-token"] = session.csrf;
  return h;
}

async function errorOf(r) {
  let body = null;
  try {
    body = await r.json();
  } catch {
    /* not JSON */
  }
  const e = body && body.error;
  if (e) {
    const { status, code, message, field, ...extra } = e;
    return new ApiError(r.status, code, message, field, extra);
  }
  return new ApiError(r.status, "http_" + r.status, `${r.status} ${r.statusText || "error"}`);
}

// method, path under /api/v1, options: body (object: JSON; string/Blob: as is),
// query, headers, raw (the Response), signal
export async function api(method, path, opts = {}) {
  const headers = { ...authHeaders(method), ...(opts.headers || {}) };
  let body = opts.body;
  if (body !== undefined && typeof body !== "string" && !(body instanceof Blob)) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch("/api/v1" + path + query(opts.query), {
      method,
      headers,
      body,
      credentials: "same-origin",
      signal: opts.signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "cannot reach the hub: " + e.message);
  }
  if (!r.ok) {
    const err = await errorOf(r);
    if (r.status === 401 && !path.startsWith("/session")) listeners.forEach((fn) => fn(err));
    throw err;
  }
  if (opts.raw) return r;
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r.text();
}

export const get = (path, q, opts) => api("GET", path, { ...opts, query: q });
export const post = (path, body, opts) => api("POST", path, { ...opts, body });
export const put = (path, body, opts) => api("PUT", path, { ...opts, body });
export const patch = (path, body, opts) => api("PATCH", path, { ...opts, body });
export const del = (path, opts) => api("DELETE", path, opts);

// every item of a paged list (nextCursor), up to max
export async function all(path, q = {}, max = 5000) {
  const items = [];
  let cursor = "";
  for (;;) {
    const page = await get(path, { ...q, limit: 1000, cursor });
    items.push(...page.items);
    if (!page.nextCursor || items.length >= max) return items;
    cursor = page.nextCursor;
  }
}

// -- the session ---------------------------------------------------------------------

function adopt(body) {
  session.user = body.user;
  session.csrf = body.csrfToken ?? null;
}

export async function login(username, password) {
  const body = await api("POST", "/session", { body: { username, password } });
  session.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.setItem(SESSION_FLAG, "1");
  adopt(body);
  return body.user;
}

export async function loginWithToken(token) {
  session.token = token;
  try {
    await get("/orgs", { limit: 1 });
  } catch (e) {
    session.token = null;
    throw e;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  session.user = { username: "admin token", roles: [{ role: "platform-admin", orgId: null }] };
  session.csrf = null;
  return session.user;
}

// the session this tab already has (cookie or stored token), or null
export async function restore() {
  if (session.token) {
    try {
      return await loginWithToken(session.token);
    } catch {
      sessionStorage.removeItem(TOKEN_KEY);
      return null;
    }
  }
  if (!localStorage.getItem(SESSION_FLAG)) return null;
  try {
    adopt(await api("GET", "/session"));
    return session.user;
  } catch {
    localStorage.removeItem(SESSION_FLAG);
    return null;
  }
}

export async function logout() {
  if (!session.token) {
    try {
      await api("DELETE", "/session");
    } catch {
      /* gone already */
    }
  }
  session.token = null;
  session.user = null;
  session.csrf = null;
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(SESSION_FLAG);
}

// -- roles ---------------------------------------------------------------------------

export function isPlatformAdmin() {
  return !!session.user?.roles?.some((r) => r.role === "platform-admin");
}

export function roleIn(orgId) {
  if (isPlatformAdmin()) return "platform-admin";
  const r = session.user?.roles?.find((x) => x.orgId === orgId);
  return r ? r.role : null;
}

// may this user change things in the organization?
export function canWrite(orgId) {
  const role = roleIn(orgId);
  return role === "platform-admin" || role === "org-admin";
}

// -- server-sent events over fetch (works with the cookie and with a bearer token) ----

// calls onEvent({event, id, data}) per event until the signal aborts; resolves when the
// stream ends
export async function stream(path, q, onEvent, signal) {
  const r = await api("GET", path, { query: q, raw: true, signal, headers: { accept: "text/event-stream" } });
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let ev = { event: "message", id: null, data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    // lines are cut from a moving start (no copy of the rest per line)
    let start = 0;
    let nl;
    while ((nl = buf.indexOf("\n", start)) >= 0) {
      let line = buf.slice(start, nl);
      start = nl + 1;
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (ev.data.length || ev.event !== "message") onEvent({ event: ev.event, id: ev.id, data: ev.data.join("\n") });
        ev = { event: "message", id: null, data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // comment / keep-alive
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (name === "data") ev.data.push(val);
      else if (name === "event") ev.event = val;
      else if (name === "id") ev.id = val;
    }
    buf = buf.slice(start);
  }
}
