// livetables pages: one table, or a dashboard of panels, in replicated or server mode.
//
// Replicated mode: each table on the page is mirrored by a worker table in the
// browser, fed by /replicate/{table} (a snapshot, then every applied batch).
// Panels of the same table share one worker table. Server mode: each viewer
// queries the server's table over the Perspective websocket.
// Either way a dropped connection is retried with backoff, and on reconnect
// every viewer is reloaded with the configuration it had, without a page reload.

const ROOT = new URL(document.documentElement.dataset.root || "/", location.href);
const PAGE = JSON.parse(document.getElementById("page-config").textContent);
const asset = (path) => new URL(`static/perspective/${path}`, ROOT).href;
// A page opened with ?token= passes it on to its websockets (the server also keeps it in a
// cookie, but a page embedded in another site's frame may not get its cookies back).
const TOKEN = new URLSearchParams(location.search).get("token");
const wsUrl = (path) => {
  const url = new URL(path, ROOT);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (TOKEN) url.searchParams.set("token", TOKEN);
  return url.href;
};

const { default: perspective } = await import(asset("client/dist/cdn/perspective.js"));
await import(asset("viewer/dist/cdn/perspective-viewer.js"));
await import(asset("viewer-datagrid/dist/cdn/perspective-viewer-datagrid.js"));
await import(asset("viewer-d3fc/dist/cdn/perspective-viewer-d3fc.js"));
await customElements.whenDefined("perspective-viewer");

// ---------------------------------------------------------------- status ----

const statusEl = document.getElementById("status");
const sourceStates = new Map();
function setState(source, state) {
  sourceStates.set(source, state);
  const states = [...sourceStates.values()];
  const overall = states.includes("reconnecting")
    ? "reconnecting"
    : states.includes("connecting")
      ? "connecting"
      : "live";
  statusEl.dataset.state = overall;
  statusEl.textContent = overall;
  document.documentElement.dataset.state = overall;
}

const backoff = (attempt) => Math.min(5000, 250 * 2 ** attempt);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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
const initialConfig = new Map(
  viewers.map((viewer) => {
    const panel = viewer.dataset.panel;
    const config = panel !== undefined ? PAGE.panels[Number(panel)].viewer : PAGE.viewer || {};
    return [viewer, { ...config }];
  }),
);

/** Load `table` into every viewer of `name`, keeping each viewer's current configuration. */
async function loadInto(name, table, first) {
  const targets = viewers.filter((v) => v.dataset.table === name);
  await Promise.all(
    targets.map(async (viewer) => {
      const config = first ? { ...initialConfig.get(viewer) } : await viewer.save();
      // A saved config names the table it was showing; restoring that name would
      // switch the viewer straight back to the old, disconnected table.
      delete config.table;
      await viewer.load(table);
      const readonly = viewer.hasAttribute("data-readonly");
      await viewer.restore({ ...config, ...(readonly ? { plugin_config: { ...(config.plugin_config || {}), edit_mode: "READ_ONLY" } } : {}) });
    }),
  );
}

// ---------------------------------------------------------- replicated ----

const replicas = {};
let workerPromise = null;
const worker = () => (workerPromise ??= perspective.worker());

const KIND_SNAPSHOT = 83; // "S"
const KIND_UPDATE = 85; // "U"
const KIND_REMOVE = 82; // "R"

/** Mirror one server table into a worker table, forever, reconnecting as needed. */
function replicate(name) {
  let attempt = 0;
  let first = true;
  let current = null;
  setState(name, "connecting");

  const connect = () => {
    const socket = new WebSocket(wsUrl(`replicate/${encodeURIComponent(name)}`));
    socket.binaryType = "arraybuffer";
    let hello = null;
    let table = null;
    let chain = Promise.resolve();

    const handle = async (data) => {
      if (typeof data === "string") {
        hello = JSON.parse(data);
        return;
      }
      const kind = new Uint8Array(data, 0, 1)[0];
      const body = data.slice(1);
      if (kind === KIND_SNAPSHOT) {
        const options = {};
        if (hello.index) options.index = hello.index;
        if (hello.limit) options.limit = hello.limit;
        table = await (await worker()).table(hello.schema, options);
        if (body.byteLength) await table.update(body);
        await loadInto(name, table, first);
        const previous = current;
        current = table;
        replicas[name] = table;
        first = false;
        attempt = 0;
        setState(name, "live");
        if (previous) previous.delete().catch(() => {});
      } else if (kind === KIND_UPDATE) {
        await table.update(body);
      } else if (kind === KIND_REMOVE) {
        await table.remove(JSON.parse(new TextDecoder().decode(body)));
      }
    };

    socket.onmessage = (event) => {
      chain = chain.then(() => handle(event.data)).catch((error) => console.warn("replica", name, error));
    };
    socket.onclose = () => {
      setState(name, first ? "connecting" : "reconnecting");
      setTimeout(connect, backoff(attempt++));
    };
  };
  connect();
}

// -------------------------------------------------------------- server ----

/** Serve every table of the page through one Perspective websocket client, reconnecting. */
async function serverMode(names) {
  let first = true;
  for (let attempt = 0; ; attempt++) {
    for (const name of names) setState(name, first ? "connecting" : "reconnecting");
    let client;
    try {
      client = await perspective.websocket(wsUrl("websocket"));
      const lost = new Promise((resolve) => client.on_error(resolve));
      for (const name of names) {
        await loadInto(name, await client.open_table(name), first);
        setState(name, "live");
      }
      first = false;
      attempt = 0;
      await lost;
    } catch (error) {
      console.warn("server mode connection", error);
    }
    await sleep(backoff(attempt));
  }
}

// ------------------------------------------------------- copy config ----

const VIEW_KEYS = ["plugin", "columns", "group_by", "split_by", "sort", "filter", "expressions", "aggregates"];

function yamlScalar(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  const text = String(value);
  return /^[A-Za-z_][A-Za-z0-9_ ./-]*$/.test(text) && !/^(true|false|null|yes|no|on|off)$/i.test(text) && !/ $/.test(text)
    ? text
    : JSON.stringify(text);
}

function yamlFlow(value) {
  if (Array.isArray(value)) return `[${value.map(yamlFlow).join(", ")}]`;
  if (value && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${yamlScalar(k)}: ${yamlFlow(v)}`).join(", ")}}`;
  }
  return yamlScalar(value);
}

/** A dashboard panel entry, in the config file's YAML, for a viewer's current state. */
async function panelYaml(viewer, title) {
  const saved = await viewer.save();
  const lines = [`- table: ${yamlScalar(viewer.dataset.table)}`];
  if (title) lines.push(`  title: ${yamlScalar(title)}`);
  lines.push("  viewer:");
  for (const key of VIEW_KEYS) {
    const value = saved[key];
    const empty = value === null || value === undefined || (Array.isArray(value) && value.length === 0) || (typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0);
    if (!empty || key === "plugin") lines.push(`    ${key}: ${yamlFlow(value)}`);
  }
  return lines.join("\n") + "\n";
}

const dialog = document.getElementById("config-dialog");
async function showConfig(viewer, title) {
  const text = await panelYaml(viewer, title);
  dialog.querySelector("textarea").value = text;
  dialog.showModal();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    /* clipboard needs a secure context; the dialog shows the text either way */
  }
}
document.getElementById("copy-config")?.addEventListener("click", () => showConfig(viewers[0], null));
for (const button of document.querySelectorAll("button.copy")) {
  const index = Number(button.dataset.panel);
  button.addEventListener("click", () =>
    showConfig(viewers.find((v) => v.dataset.panel === String(index)), PAGE.panels[index].title),
  );
}

// ---------------------------------------------------------------- start ----

const names = [...new Set(viewers.map((v) => v.dataset.table))];
if (PAGE.mode === "server") {
  serverMode(names);
} else {
  names.forEach(replicate);
}
window.livetables = { viewers, names, mode: PAGE.mode, replicas };
