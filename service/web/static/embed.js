// Live tables of a livetables service inside another web app (another origin).
//
//   import { mount, replicate } from "https://livetables.example.com/static/livetables/embed.js";
//   await mount(element, { url: "https://livetables.example.com/", table: "quotes" });
//
// The Perspective modules come from the same service (its exact version), resolved
// relative to `url`. The service must list the app's origin in server.allowed_origins:
// other origins get neither these files nor the feed. Both functions reconnect by
// themselves, exactly like livetables' own pages (they share their code).

import { serviceRoot } from "./feed.js";
import { linkTheme, loadClient, loadViewer, workerClient } from "./perspective-modules.js";
import { Replica } from "./replica.js";
import { ServerConnection } from "./server-feed.js";
import { VIEWER_KEYS, bindViewer } from "./viewer-binding.js";

const MODES = ["replicated", "server"];

// Shared on the page: mounts of one table share its replica, mounts of one service share
// one server-mode websocket; each closes with its last user.
const replicas = new Map(); // key -> {replica, users}
const connections = new Map(); // key -> ServerConnection

function sharedReplica(root, table, token) {
  const key = JSON.stringify([root.href, table, token]);
  let entry = replicas.get(key);
  if (!entry || entry.replica.state === "error") {
    entry = { replica: new Replica(root, table, { token, worker: () => workerClient(root) }), users: 0 };
    replicas.set(key, entry);
  }
  entry.users += 1;
  const release = () => {
    entry.users -= 1;
    if (entry.users === 0) {
      if (replicas.get(key) === entry) replicas.delete(key);
      entry.replica.close();
    }
  };
  return { feed: entry.replica, release };
}

async function serverFeed(root, table, token) {
  const perspective = await loadClient(root);
  // No await from here on: mounts made at once find the connection the first one made.
  const key = JSON.stringify([root.href, token]);
  let connection = connections.get(key);
  if (!connection || connection.closed) {
    connection = new ServerConnection(root, { token, websocket: (url) => perspective.websocket(url) });
    connections.set(key, connection);
  }
  const feed = connection.feed(table);
  return { feed, release: () => connection.release(feed) };
}

function check(condition, message) {
  if (!condition) throw new TypeError(`livetables: ${message}`);
}

function checkOptions({ url, table, mode, viewer, token }) {
  check(typeof url === "string" || url instanceof URL, "url must be the livetables service's URL");
  check(typeof table === "string" && table !== "", "table must name a table of the service");
  check(MODES.includes(mode), `mode must be ${MODES.join(" or ")}, not ${JSON.stringify(mode)}`);
  check(viewer && typeof viewer === "object" && !Array.isArray(viewer), "viewer must be an object");
  const unknown = Object.keys(viewer).filter((key) => !VIEWER_KEYS.includes(key));
  check(!unknown.length, `unknown viewer setting '${unknown[0]}' (known: ${VIEWER_KEYS.join(", ")})`);
  check(token == null || typeof token === "string", "token must be a string");
}

/**
 * Put a live <perspective-viewer> of `table` into `element`.
 *
 * - `url`: the livetables service; `table`: one of its tables;
 * - `mode`: "replicated" (default: the browser holds a copy of the table) or "server"
 *   (every query runs on the server's table);
 * - `viewer`: its configuration, the keys of a dashboard panel's `viewer:` (plugin,
 *   columns, group_by, split_by, sort, filter, expressions, aggregates, plugin_config).
 *   The grid is read-only unless plugin_config.edit_mode says otherwise;
 * - `token`: when the service requires one.
 *
 * The element's `data-livetables-state` attribute is "connecting", "live",
 * "reconnecting" or "error", and a `livetables-state` event (bubbling; detail: state,
 * table, error) tells each change. Resolves, once the viewer is in the page, to
 * {viewer, state, error, close()}.
 */
export async function mount(element, { url, table, mode = "replicated", viewer = {}, token = null } = {}) {
  check(element instanceof Element, "mount() needs an element to put the viewer in");
  checkOptions({ url, table, mode, viewer, token });
  const root = serviceRoot(url);
  await Promise.all([linkTheme(root), loadViewer(root)]);
  const { feed, release } = mode === "server" ? await serverFeed(root, table, token) : sharedReplica(root, table, token);

  const viewerEl = document.createElement("perspective-viewer");
  viewerEl.style.cssText = "display: block; width: 100%; height: 100%;";
  element.replaceChildren(viewerEl);
  const readonly = !(viewer.plugin_config && "edit_mode" in viewer.plugin_config);
  // As on the pages: no edit-mode button on a grid that cannot be edited.
  if (readonly) viewerEl.style.setProperty("--toolbar-edit-mode--display", "none");
  const unbind = bindViewer(viewerEl, feed, { config: viewer, readonly });

  const show = () => {
    element.dataset.livetablesState = feed.state;
    element.dispatchEvent(
      new CustomEvent("livetables-state", { bubbles: true, detail: { state: feed.state, table, error: feed.error } }),
    );
    if (feed.error) console.warn(feed.error.message);
  };
  feed.addEventListener("statechange", show);
  show();

  let closed = false;
  return {
    viewer: viewerEl,
    get state() {
      return feed.state;
    },
    get error() {
      return feed.error;
    },
    /** Take the viewer out and stop its feed (when no other mount shares it). */
    async close() {
      if (closed) return;
      closed = true;
      await unbind();
      feed.removeEventListener("statechange", show);
      // Ejected first: the view's callbacks are let go while the connection still serves.
      await viewerEl.eject().catch(() => {});
      await viewerEl.delete().catch(() => {});
      viewerEl.remove();
      delete element.dataset.livetablesState;
      release();
    },
  };
}

/**
 * A worker table mirroring `table` of the livetables service at `url`, for apps that bring
 * their own views: the snapshot, then every update and remove, reconnecting by itself.
 *
 * Resolves, once the snapshot is in, to a Replica: `replica.table` (a Perspective table:
 * `table.view()`, `view.to_json()`, `view.on_update()`), `replica.state`, events
 * "statechange" and "table" (a new table replaces the old one only if the server's
 * table changed shape across a restart), and `close()`. Rejects with an Error saying
 * why when the service refuses for good (no such table, a refused token).
 */
export async function replicate(url, table, { token = null } = {}) {
  checkOptions({ url, table, mode: "replicated", viewer: {}, token });
  const root = serviceRoot(url);
  await loadClient(root);
  const replica = new Replica(root, table, { token, worker: () => workerClient(root) });
  await replica.ready;
  return replica;
}

export { Replica };
