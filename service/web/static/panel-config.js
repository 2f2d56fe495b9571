// "Copy config" on the pages: a viewer's current state as a dashboard panel entry, in the
// config file's YAML, ready to paste under a dashboard's `panels:`.

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
export async function panelYaml(viewer, title) {
  const saved = await viewer.save();
  const lines = [`- table: ${yamlScalar(viewer.dataset.table)}`];
  if (title) lines.push(`  title: ${yamlScalar(title)}`);
  lines.push("  viewer:");
  for (const key of VIEW_KEYS) {
    const value = saved[key];
    const empty =
      value === null ||
      value === undefined ||
      (Array.isArray(value) && value.length === 0) ||
      (typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0);
    if (!empty || key === "plugin") lines.push(`    ${key}: ${yamlFlow(value)}`);
  }
  return lines.join("\n") + "\n";
}

/** Show `viewer`'s panel YAML in the page's dialog, and copy it when the clipboard allows. */
export async function showConfig(dialog, viewer, title) {
  const text = await panelYaml(viewer, title);
  dialog.querySelector("textarea").value = text;
  dialog.showModal();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    /* clipboard needs a secure context; the dialog shows the text either way */
  }
}
