// A worker table in the browser that mirrors one server table through livetables'
// replicated feed, /replicate/{table}: a text hello (schema, index, limit), then binary
// frames of one kind byte and a body: "S" snapshot and "U" update (Arrow IPC), "R" keys
// removed (JSON). The server keeps no view per browser; removes arrive as removes
// (a worker table built from a server view would keep rows the server deleted).
//
// Reconnects by itself. The snapshot after a reconnect replaces the rows of the same
// worker table, so views on it (a viewer's, an app's) carry on with their configuration;
// only a server table whose schema, index or limit changed across a restart gets a new
// worker table (a "table" event), the old one deleted once its last view is.

import { Feed, backoff, diagnose, socketUrl } from "./feed.js";

const KIND_SNAPSHOT = 83; // "S"
const KIND_UPDATE = 85; // "U"
const KIND_REMOVE = 82; // "R"
const CLOSE_NO_TABLE = 4404;
const CLOSE_TOO_BIG = 1009;

export class Replica extends Feed {
  /**
   * @param {URL} root the livetables service (see serviceRoot)
   * @param {string} name the table
   * @param {{token?: string|null, worker: () => Promise<object>}} options `worker` gives
   *   the Perspective worker client that holds the table
   */
  constructor(root, name, { token = null, worker }) {
    super(name);
    this.root = root;
    this.token = token;
    this.worker = worker;
    this.attempt = 0;
    this.generation = 0;
    this.chain = Promise.resolve(); // frames apply one at a time, in order, across sockets
    this.socket = null;
    this.timer = null;
    this.shape = null;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // a caller that never awaits it is not an unhandled rejection
    this.connect();
  }

  connect() {
    if (this.state === "closed" || this.state === "error") return;
    const generation = ++this.generation;
    const socket = new WebSocket(socketUrl(this.root, `replicate/${encodeURIComponent(this.name)}`, this.token));
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    let hello = null;
    let heard = false;
    socket.onmessage = (event) => {
      heard = true;
      this.chain = this.chain
        .then(async () => {
          if (generation !== this.generation) return; // from a connection given up since
          if (typeof event.data === "string") {
            hello = JSON.parse(event.data);
          } else {
            await this.apply(hello, event.data);
          }
        })
        .catch((error) => {
          // A frame this copy could not apply: it may now differ from the server's table.
          // A fresh connection brings a fresh snapshot.
          console.warn(`livetables: replica of '${this.name}' resynchronises after`, error);
          socket.close();
        });
    };
    socket.onclose = (event) => this.lost(event, generation, heard);
  }

  async apply(hello, data) {
    const kind = new Uint8Array(data, 0, 1)[0];
    const body = data.slice(1);
    if (kind === KIND_SNAPSHOT) {
      await this.snapshot(hello, body);
    } else if (kind === KIND_UPDATE) {
      await this.table.update(body);
    } else if (kind === KIND_REMOVE) {
      await this.table.remove(JSON.parse(new TextDecoder().decode(body)));
    }
  }

  async snapshot(hello, body) {
    const shape = JSON.stringify([hello.schema, hello.index, hello.limit]);
    if (this.table && shape === this.shape) {
      // The same table: its views stay, and see every row change at once.
      await (body.byteLength ? this.table.replace(body) : this.table.clear());
    } else {
      const options = {};
      if (hello.index) options.index = hello.index;
      if (hello.limit) options.limit = hello.limit;
      const table = await (await this.worker()).table(hello.schema, options);
      if (body.byteLength) await table.update(body);
      const previous = this.table;
      this.shape = shape;
      this.setTable(table);
      if (previous) previous.delete({ lazy: true }).catch(() => {});
    }
    this.attempt = 0;
    this.setState("live");
    this.resolveReady(this.table);
  }

  async lost(event, generation, heard) {
    if (this.state === "closed" || this.state === "error" || generation !== this.generation) return;
    if (event.code === CLOSE_NO_TABLE) return this.giveUp(`${this.root.href} has no table named '${this.name}'`);
    if (event.code === CLOSE_TOO_BIG) {
      return this.giveUp(`'${this.name}' is larger than server.max_snapshot_bytes: show it in server mode`);
    }
    this.setState(this.table ? "reconnecting" : "connecting");
    if (!heard) {
      // Refused before the upgrade (a browser is not told why): ask the API.
      const problem = await diagnose(this.root, this.name, this.token);
      if (problem) return this.giveUp(problem);
    }
    if (this.state === "closed") return;
    this.timer = setTimeout(() => this.connect(), backoff(this.attempt++));
  }

  giveUp(message) {
    this.fail(message);
    this.rejectReady(this.error);
  }

  /** Stop mirroring. The worker table is deleted once its last view is. */
  close() {
    if (this.state === "closed") return;
    this.setState("closed");
    this.rejectReady(new Error(`livetables: the replica of '${this.name}' was closed`));
    clearTimeout(this.timer);
    this.generation++;
    this.socket?.close();
    this.table?.delete({ lazy: true }).catch(() => {});
  }
}
