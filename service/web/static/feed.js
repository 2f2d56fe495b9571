// What every source of a live table has in common, on livetables' own pages and in
// embed.js: a state, the current Perspective table, and events when either changes.
//
// States: "connecting" (never live yet), "live", "reconnecting" (was live, the connection
// dropped: the table keeps what it had), "error" (given up for good: `feed.error` says
// why), "closed" (closed by its owner).
//
// Events: "statechange" ({detail: {state, error}}) and "table" ({detail: {table,
// previous}}) when a new Perspective table takes the place of the previous one (server
// mode after a reconnect; a replica whose server table changed shape across a restart).

/** Milliseconds to wait before reconnect attempt `attempt` (0, 1, ...): 250 ms doubling to 5 s. */
export const backoff = (attempt) => Math.min(5000, 250 * 2 ** attempt);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The base URL of a livetables service, ending in "/" so that paths resolve below it. */
export function serviceRoot(url) {
  const root = new URL(url, location.href);
  if (!root.pathname.endsWith("/")) root.pathname += "/";
  root.search = "";
  root.hash = "";
  return root;
}

/**
 * A websocket URL below `root`. A browser cannot set headers on a websocket, so a token
 * travels as the `token` query parameter (livetables masks it in its logs).
 */
export function socketUrl(root, path, token) {
  const url = new URL(path, root);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);
  return url.href;
}

export class Feed extends EventTarget {
  constructor(name) {
    super();
    this.name = name;
    this.state = "connecting";
    this.table = null;
    this.error = null;
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state, error: this.error } }));
  }

  setTable(table) {
    const previous = this.table;
    this.table = table;
    this.dispatchEvent(new CustomEvent("table", { detail: { table, previous } }));
  }

  /** Give up for good: `message` says why, in words the app's user can act on. */
  fail(message) {
    this.error = new Error(`livetables: ${message}`);
    this.setState("error");
  }
}

/**
 * Why connections to table `name` keep failing, when the service says so for sure: the
 * token is refused, or no table of that name is listed for it. Null when the reason may
 * pass (the service is down or restarting) or cannot be known (a page of an origin the
 * service does not list cannot read its answers).
 */
const unreachable = new Set(); // services already warned about, by URL

export async function diagnose(root, name, token) {
  let response;
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    response = await fetch(new URL("api/tables", root), { headers, cache: "no-store" });
  } catch {
    if (!unreachable.has(root.href)) {
      unreachable.add(root.href);
      console.warn(
        `livetables: cannot reach ${root.href}: it is down or restarting (retrying), or does ` +
          `not list this page's origin (${location.origin}) in server.allowed_origins`,
      );
    }
    return null;
  }
  unreachable.delete(root.href);
  if (response.status === 401) return `${root.href} refused the token`;
  if (!response.ok) return null;
  try {
    const tables = await response.json();
    if (!tables.some((table) => table.name === name)) {
      return `${root.href} has no table named '${name}' that this token may read`;
    }
  } catch {
    /* not the API's answer: treat as transient */
  }
  return null;
}
