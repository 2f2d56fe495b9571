// A <perspective-viewer> showing a feed's table (see feed.js), on the pages and in
// embed.js. The first table is shown with the configuration given; each later one (a
// reconnect in server mode) with the configuration the viewer has by then, so a user's
// sorting, pivots and filters survive a restart of the service.

export const VIEWER_KEYS = [
  "plugin",
  "columns",
  "group_by",
  "split_by",
  "sort",
  "filter",
  "expressions",
  "aggregates",
  "plugin_config",
];

function readOnly(config) {
  return { ...config, plugin_config: { ...(config.plugin_config || {}), edit_mode: "READ_ONLY" } };
}

/**
 * Show `feed`'s table in `viewer`, now and after every table change. Returns an async
 * function that stops following the feed, once the viewer has finished loading (a viewer
 * taken away in the middle of a load would fail it).
 */
export function bindViewer(viewer, feed, { config = {}, readonly = true } = {}) {
  let loaded = false;
  let chain = Promise.resolve();
  const show = (table) => {
    chain = chain
      .then(async () => {
        const current = loaded ? await viewer.save() : { ...config };
        // A saved config names the table it was showing; restoring that name would
        // switch the viewer straight back to the old, disconnected table.
        delete current.table;
        await viewer.load(table);
        await viewer.restore(readonly ? readOnly(current) : current);
        loaded = true;
      })
      .catch((error) => console.error(`livetables: viewer of '${feed.name}' failed:`, error));
  };
  const onTable = (event) => show(event.detail.table);
  feed.addEventListener("table", onTable);
  if (feed.table) show(feed.table);
  return async () => {
    feed.removeEventListener("table", onTable);
    await chain;
  };
}
