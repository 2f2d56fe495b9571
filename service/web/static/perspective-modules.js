// Perspective's browser modules, loaded from the livetables service that serves them:
// exactly the version of its engine (the wire protocol has no version handshake), so a
// page never has to match versions itself. They are ES modules served in npm's layout:
// each finds its WebAssembly relative to its own URL.

const clients = new Map(); // module URL -> Promise of the client module's default export
const workers = new Map(); // module URL and WebAssembly source -> Promise of a worker client
let viewers = null; // {root, loaded}: the viewer elements can be defined once per page

const asset = (root, path) => new URL(`static/perspective/${path}`, root).href;

/**
 * The Perspective client module (`perspective.worker()`, `perspective.websocket()`).
 *
 * The client needs WebAssembly of its own: it borrows the module of the
 * <perspective-viewer> defined on the page, and without one (an app that only
 * replicates) it must be handed its file, or every call fails with "Missing
 * perspective-client.wasm".
 */
export function loadClient(root) {
  const url = asset(root, "client/dist/cdn/perspective.js");
  if (!clients.has(url)) {
    const loaded = import(url).then((module) => {
      const perspective = module.default;
      if (!customElements.get("perspective-viewer") && viewers === null) {
        perspective.init_client(fetch(asset(root, "client/dist/wasm/perspective-js.wasm")));
      }
      return perspective;
    });
    clients.set(url, loaded);
  }
  return clients.get(url);
}

/**
 * One Web Worker engine per page and service, shared by all its replicas. A table shown
 * in a <perspective-viewer> must come from the viewer's own WebAssembly: once the viewer
 * is defined, tables are made by a worker of its module, not one made before it.
 */
export function workerClient(root) {
  const source = customElements.get("perspective-viewer") ? "viewer" : "own";
  const key = `${asset(root, "client/dist/cdn/perspective.js")} ${source}`;
  if (!workers.has(key)) workers.set(key, loadClient(root).then((perspective) => perspective.worker()));
  return workers.get(key);
}

/** <perspective-viewer> and its plugins (grid, charts), defined once for the page. */
export function loadViewer(root) {
  if (viewers === null) {
    if (customElements.get("perspective-viewer")) {
      throw new Error(
        "livetables: this page already defines <perspective-viewer> (another Perspective " +
          "build); livetables viewers need the version their service runs",
      );
    }
    const loaded = (async () => {
      await loadClient(root);
      await import(asset(root, "viewer/dist/cdn/perspective-viewer.js"));
      await import(asset(root, "viewer-datagrid/dist/cdn/perspective-viewer-datagrid.js"));
      await import(asset(root, "viewer-d3fc/dist/cdn/perspective-viewer-d3fc.js"));
      await customElements.whenDefined("perspective-viewer");
    })();
    viewers = { root: root.href, loaded };
  } else if (viewers.root !== root.href) {
    console.warn(`livetables: viewers come from ${viewers.root}; ${root.href} must run the same version`);
  }
  return viewers.loaded;
}

/**
 * The viewers' theme stylesheet, linked into the document once, and loaded before any
 * viewer draws. Fetched with CORS: the viewer reads the stylesheet's rules to find its
 * themes and the charts read their colours from it, and a page may read the rules of
 * another origin's stylesheet only if it was loaded that way.
 */
export function linkTheme(root) {
  const href = asset(root, "viewer/dist/css/themes.css");
  const existing = [...document.querySelectorAll("link[rel=stylesheet]")].find((link) => link.href === href);
  if (existing) return existing.sheet ? Promise.resolve() : loaded(existing);
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.crossOrigin = "anonymous";
  link.href = href;
  const done = loaded(link);
  document.head.append(link);
  return done;
}

function loaded(link) {
  return new Promise((resolve, reject) => {
    link.addEventListener("load", () => resolve(), { once: true });
    link.addEventListener("error", () => reject(new Error(`livetables: cannot load ${link.href}`)), { once: true });
  });
}
