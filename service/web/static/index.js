// The index page: keep rows, lag and status current without a reload.
// A file of its own, not an inline script: the Content-Security-Policy allows scripts from
// this service only.

const ROOT = new URL(document.documentElement.dataset.root || "/", location.href);

const refresh = async () => {
  try {
    const tables = await (await fetch(new URL("api/tables", ROOT), { cache: "no-store" })).json();
    for (const t of tables) {
      const row = document.querySelector(`tr[data-table="${CSS.escape(t.name)}"]`);
      if (!row) continue;
      row.children[3].textContent = t.rows.toLocaleString("en-US");
      row.children[4].textContent = t.lag.toLocaleString("en-US");
      const pill = row.querySelector(".pill");
      const [cls, text] = !t.kafka_connected
        ? ["down", "kafka unreachable"]
        : t.ready
          ? ["live", "live"]
          : ["wait", "catching up"];
      pill.className = `pill ${cls}`;
      pill.textContent = text;
    }
  } catch (e) {
    /* the next tick retries */
  }
};
setInterval(refresh, 2000);
