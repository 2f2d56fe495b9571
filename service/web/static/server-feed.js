// Server mode: viewers query the server's tables over one Perspective websocket
// (/websocket), shared by every table of a page. When the connection drops, it is
// retried with backoff, and each table is opened again: a new Perspective table, handed
// to its feed's listeners (a "table" event), which reload their viewers with the
// configuration they had.

import { Feed, backoff, diagnose, sleep, socketUrl } from "./feed.js";

export class ServerConnection {
  /**
   * @param {URL} root the livetables service (see serviceRoot)
   * @param {{token?: string|null, websocket: (url: string) => Promise<object>}} options
   *   `websocket` opens a Perspective websocket client (perspective.websocket)
   */
  constructor(root, { token = null, websocket }) {
    this.root = root;
    this.token = token;
    this.websocket = websocket;
    this.feeds = new Set();
    this.client = null;
    this.closed = false;
    this.running = null;
  }

  /** A feed of table `name` through this connection (connecting it if need be). */
  feed(name) {
    const feed = new Feed(name);
    this.feeds.add(feed);
    if (this.client) this.open(this.client, feed).catch(() => {});
    this.running ??= this.run().finally(() => {
      this.running = null;
    });
    return feed;
  }

  /** Stop serving `feed`; the connection closes with its last feed. */
  release(feed) {
    this.feeds.delete(feed);
    feed.setState("closed");
    if (this.feeds.size === 0) this.close();
  }

  close() {
    this.closed = true;
    for (const feed of this.feeds) feed.setState("closed");
    this.feeds.clear();
    this.terminate();
  }

  terminate() {
    const client = this.client;
    this.client = null;
    try {
      client?.terminate();
    } catch {
      /* already gone */
    }
  }

  live() {
    return [...this.feeds].filter((feed) => feed.state !== "error" && feed.state !== "closed");
  }

  async run() {
    for (let attempt = 0; !this.closed && this.live().length; attempt++) {
      let opened = false;
      try {
        const client = await this.websocket(socketUrl(this.root, "websocket", this.token));
        if (this.closed) {
          client.terminate();
          return;
        }
        const lost = new Promise((resolve) => client.on_error(resolve));
        this.client = client;
        opened = true;
        await Promise.all(this.live().map((feed) => this.open(client, feed)));
        attempt = 0;
        await lost;
      } catch (error) {
        if (!this.closed) console.warn(`livetables: server mode connection to ${this.root.href}`, error);
      }
      this.terminate();
      if (this.closed) return;
      for (const feed of this.live()) feed.setState(feed.table ? "reconnecting" : "connecting");
      if (!opened) await this.diagnoseAll();
      await sleep(backoff(attempt));
    }
  }

  /** Open `feed`'s table on `client`; a table the service does not serve fails its feed. */
  async open(client, feed) {
    let table;
    try {
      table = await client.open_table(feed.name);
      await table.size(); // a round trip: open_table alone does not ask whether it exists
    } catch (error) {
      const problem = await diagnose(this.root, feed.name, this.token);
      if (problem) {
        feed.fail(problem);
        return;
      }
      throw error;
    }
    if (this.client !== client || feed.state === "closed") return;
    feed.setTable(table);
    feed.setState("live");
  }

  /** The websocket was refused before it opened: fail the feeds the service says are hopeless. */
  async diagnoseAll() {
    for (const feed of this.live()) {
      const problem = await diagnose(this.root, feed.name, this.token);
      if (problem) feed.fail(problem);
    }
  }
}
