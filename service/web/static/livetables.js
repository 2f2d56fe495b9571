// livetables pages: one table, or a dashboard of panels, in replicated or server mode.
//
// Replicated mode: each table on the page is mirrored by a worker table in the browser,
// fed by /replicate/{table} (replica.js); panels of the same table share it. Server mode:
// the viewers query the server's tables over one Perspective websocket (server-feed.js).
// Either way a dropped connection is retried with backoff, and every viewer keeps the
// configuration it had (viewer-binding.js), without a page reload. embed.js gives other
// web apps the same parts.

import { loadClient, loadViewer, workerClient } from "./perspective-modules.js";
import { showConfig } from "./panel-config.js";
import { Replica } from "./replica.js";
import { ServerConnection } from "./server-feed.js";
import { bindViewer } from "./viewer-binding.js";

const ROOT = new URL(document.documentElement.dataset.root || "/", location.href);
const PAGE = JSON.parse(document.getElementById("page-config").textContent);
// A page opened with ?token= passes it on to its websockets (the server also keeps it in a
// cookie, but a page embedded in another site's frame may not get its cookies back).
const TOKEN = new URLSearchParams(location.search).get("token");

await loadViewer(ROOT);

// ---------------------------------------------------------------- status ----

const statusEl = document.getElementById("status");
const ORDER = ["error", "reconnecting", "connecting", "live"];
function showState(feeds) {
  const states = feeds.map((feed) => feed.state);
  const overall = ORDER.find((state) => states.includes(state)) || "live";
  statusEl.dataset.state = overall;
  statusEl.textContent = overall;
  statusEl.title = feeds.find((feed) => feed.error)?.error.message || "";
  if (document.documentElement.dataset.state !== overall) {
    document.documentElement.dataset.state = overall;
    document.dispatchEvent(new CustomEvent("livetables-state", { detail: { state: overall } }));
  }
}

// ------------------------------------------------------------- viewers ----

// Viewers are created only now, with every plugin registered: a <perspective-viewer>
// upgraded before its plugins exist fails on its first restore().
const viewers = [...document.querySelectorAll(".viewer-slot")].map((slot) => {
  const viewer = document.createElement("perspective-viewer");
  for (const [key, value] of Object.entries(slot.dataset)) viewer.dataset[key] = value;
  if (slot.hasAttribute("data-readonly")) viewer.setAttribute("data-readonly", "");
  slot.replaceWith(viewer);
  return viewer;
});
const configOf = (viewer) => {
  const panel = viewer.dataset.panel;
  return panel !== undefined ? PAGE.panels[Number(panel)].viewer : PAGE.viewer || {};
};

const names = [...new Set(viewers.map((viewer) => viewer.dataset.table))];
const feeds = new Map();
if (PAGE.mode === "server") {
  const perspective = await loadClient(ROOT);
  const connection = new ServerConnection(ROOT, { token: TOKEN, websocket: (url) => perspective.websocket(url) });
  for (const name of names) feeds.set(name, connection.feed(name));
} else {
  for (const name of names) feeds.set(name, new Replica(ROOT, name, { token: TOKEN, worker: () => workerClient(ROOT) }));
}
for (const feed of feeds.values()) feed.addEventListener("statechange", () => showState([...feeds.values()]));
showState([...feeds.values()]);
for (const viewer of viewers) {
  bindViewer(viewer, feeds.get(viewer.dataset.table), {
    config: configOf(viewer),
    readonly: viewer.hasAttribute("data-readonly"),
  });
}

// ------------------------------------------------------- copy config ----

const dialog = document.getElementById("config-dialog");
document.getElementById("copy-config")?.addEventListener("click", () => showConfig(dialog, viewers[0], null));
for (const button of document.querySelectorAll("button.copy")) {
  const index = Number(button.dataset.panel);
  button.addEventListener("click", () =>
    showConfig(dialog, viewers.find((v) => v.dataset.panel === String(index)), PAGE.panels[index].title),
  );
}

window.livetables = { viewers, names, mode: PAGE.mode, feeds };
