"""Replicated clients in a process of their own, measuring Kafka-to-client latency.

Run by the benchmark (``bench/latency.py``), never in its own interpreter: the load
generator, the service and these clients are three processes, so no client shares a
GIL with what it measures, and every time comes from the same machine clock
(``time.time()``: the producer stamps each record with it, the clients read it on
arrival).

Each client is a minimal websocket client on asyncio: it opens ``/replicate/{table}``
and walks the frames' headers as bytes arrive (no per-byte work, no decoding), so a
few hundred of them cost the machine little. The first ``--measure`` clients also
decode every update frame (Arrow IPC) and record, per row, arrival time minus the
row's ``t`` column (epoch ms, stamped at produce time).

With ``--own-view``, clients are stock Perspective clients over ``/websocket`` instead,
each with a server View of its own and ``on_update(mode="row")`` (the pattern
Perspective's docs show), every one of them measuring.

Protocol, one line each way: the process prints ``connected`` once every client has
its snapshot; then it reads commands on stdin: ``record`` (start keeping samples),
``join N`` (connect N more clients now, timing each to its snapshot), ``stop`` (print
one JSON line of results and exit).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import sys
import time
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa


class Replica(asyncio.Protocol):
    """One ``/replicate`` client: handshake, then frame boundaries (and payloads if measuring)."""

    def __init__(self, path: str, host: str, measure: bool, owner: Audience) -> None:
        self.path, self.host, self.measure, self.owner = path, host, measure, owner
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshaken = False
        self.snapshot = asyncio.get_running_loop().create_future()
        self.frames = 0
        self.payload: bytearray | None = None  # the frame being collected (measuring only)
        self.remaining = 0  # payload bytes of the current frame still to come
        self.opcode = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.snapshot.done():
            self.snapshot.set_exception(ConnectionError(f"closed before its snapshot: {exc}"))

    def data_received(self, data: bytes) -> None:
        received = time.time() * 1000.0
        if not self.handshaken:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            if b" 101 " not in status:
                self.snapshot.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.handshaken = True
            data = bytes(self.buffer[end + 4 :])
            self.buffer = bytearray()
        if not self.measure and not self.buffer and self.snapshot.done():
            data = self._skip(data)
            if not data:
                return
        self._frames(data, received)

    def _skip(self, data: bytes) -> bytes:
        """A listening client's usual case: walk whole binary frames, nothing copied.

        Returns what the general walker must still see (a partial header, a control
        frame), usually nothing.
        """
        pos, size = 0, len(data)
        if self.remaining:
            pos = min(self.remaining, size)
            self.remaining -= pos
        while pos < size:
            if size - pos < 10 or data[pos] & 0x0F != 0x2:
                return data[pos:]
            length = data[pos + 1] & 0x7F
            if length == 126:
                header, length = 4, (data[pos + 2] << 8) | data[pos + 3]
            elif length == 127:
                header, length = 10, int.from_bytes(data[pos + 2 : pos + 10], "big")
            else:
                header = 2
            self.frames += 1
            end = pos + header + length
            if end > size:
                self.remaining = end - size
                return b""
            pos = end
        return b""

    def _frames(self, data: bytes, received: float) -> None:
        view = memoryview(data)
        while view:
            if self.remaining:  # inside a payload: skip it, or keep it when measuring
                take = min(self.remaining, len(view))
                if self.payload is not None:
                    self.payload += view[:take]
                self.remaining -= take
                view = view[take:]
                if not self.remaining:
                    self._frame_done(received)
                continue
            self.buffer += view
            view = memoryview(b"")
            header = self._header()
            if header is None:
                return
            size, length = header
            rest = bytes(self.buffer[size:])
            self.buffer = bytearray()
            self.remaining = length
            self.payload = bytearray() if self._keep() else None
            if not length:
                self._frame_done(received)
            view = memoryview(rest)

    def _header(self) -> tuple[int, int] | None:
        """(header size, payload length) of the frame at the buffer's start, once complete."""
        buffer = self.buffer
        if len(buffer) < 2:
            return None
        self.opcode = buffer[0] & 0x0F
        length = buffer[1] & 0x7F
        if length == 126:
            if len(buffer) < 4:
                return None
            return 4, struct.unpack_from("!H", buffer, 2)[0]
        if length == 127:
            if len(buffer) < 10:
                return None
            return 10, struct.unpack_from("!Q", buffer, 2)[0]
        return 2, length

    def _keep(self) -> bool:
        # The snapshot's first byte, every frame of a measuring client, pings (to answer).
        return self.measure or self.opcode == 0x9 or not self.snapshot.done()

    def _frame_done(self, received: float) -> None:
        payload, self.payload = self.payload, None
        opcode = self.opcode
        if opcode == 0x9 and self.transport is not None:  # ping: a masked pong with its data
            self._send(0xA, bytes(payload or b""))
            return
        if opcode == 0x8:
            self.closed = True
            return
        if opcode != 0x2:
            return
        self.frames += 1
        if payload is None:
            return
        kind = bytes(payload[:1])
        if kind == b"S" and not self.snapshot.done():
            self.snapshot.set_result(received)
        elif kind == b"U" and self.measure:
            self.owner.sample(bytes(payload[1:]), received)

    def _send(self, opcode: int, data: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        assert self.transport is not None and len(data) < 126
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(data)]) + mask + masked)


class Audience:
    """Every client of one run, and the latency samples of the measuring ones."""

    def __init__(self, url: str, table: str) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.host = parts.netloc
        self.path = f"/replicate/{table}"
        self.clients: list[Replica] = []
        self.recording = False
        self.samples: list[np.ndarray] = []
        self.join_seconds: list[float] = []
        self.remotes: list = []  # own-view clients (service.remote.RemoteClient)

    def sample(self, arrow: bytes, received_ms: float) -> None:
        if not self.recording:
            return
        table = pa.ipc.open_stream(arrow).read_all()
        if "t" in table.column_names and table.num_rows:
            stamps = table.column("t").cast(pa.int64()).to_numpy(zero_copy_only=False)
            self.samples.append(received_ms - stamps.astype(np.float64))

    async def connect(self, count: int, measure: int) -> list[float]:
        """Connect ``count`` clients (the first ``measure`` measuring); seconds to each snapshot."""
        loop = asyncio.get_running_loop()

        async def one(index: int) -> float:
            started = time.perf_counter()
            client = Replica(self.path, self.host, index < measure, self)
            await loop.create_connection(lambda: client, *self.address)
            self.clients.append(client)
            await client.snapshot
            return time.perf_counter() - started

        # A few at a time: a connect storm is its own scenario (``join``).
        seconds: list[float] = []
        for start in range(0, count, 20):
            seconds += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 20))))
        return seconds

    async def connect_own_views(self, count: int, url: str) -> None:
        """``count`` Perspective clients, each with a View of its own, all measuring."""
        from service.remote import connect

        table_name = self.path.rsplit("/", 1)[1]
        for _ in range(count):
            remote = await connect(f"{url}/websocket")
            self.remotes.append(remote)
            table = await remote.client.open_table(table_name)
            view = await table.view()

            def on_update(_port: int, delta: bytes | None = None) -> None:
                if delta:
                    self.sample(delta, time.time() * 1000.0)

            await view.on_update(on_update, mode="row")

    async def join(self, count: int) -> None:
        """``count`` more clients at once, none measuring: the connect storm."""
        loop = asyncio.get_running_loop()

        async def one() -> float:
            started = time.perf_counter()
            client = Replica(self.path, self.host, False, self)
            await loop.create_connection(lambda: client, *self.address)
            self.clients.append(client)
            await client.snapshot
            return time.perf_counter() - started

        self.join_seconds = list(await asyncio.gather(*(one() for _ in range(count))))

    def results(self) -> dict:
        values = np.concatenate(self.samples) if self.samples else np.empty(0)
        alive = sum(1 for c in self.clients if not c.closed) + len(self.remotes)

        def pct(q: float) -> float:
            return float(np.percentile(values, q)) if len(values) else float("nan")

        return {
            "records": len(values),
            "p50_ms": pct(50),
            "p99_ms": pct(99),
            "max_ms": float(values.max()) if len(values) else float("nan"),
            "clients_alive": alive,
            "frames": sum(c.frames for c in self.clients),
            "join_p99_s": float(np.percentile(self.join_seconds, 99))
            if self.join_seconds
            else float("nan"),
        }


async def _main(args: argparse.Namespace) -> None:
    audience = Audience(args.url, args.table)
    if args.own_view:
        await audience.connect_own_views(args.count, args.url)
    else:
        await audience.connect(args.count, args.measure)
    print("connected", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    joining: list[asyncio.Future] = []
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "stop":
            break
        if line == "record":
            audience.recording = True
        elif line.startswith("join "):
            joining.append(asyncio.ensure_future(audience.join(int(line.split()[1]))))
    audience.recording = False
    print(json.dumps(audience.results()), flush=True)
    for client in audience.clients:
        if client.transport is not None:
            client.transport.close()
    for remote in audience.remotes:
        remote.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="ws://host:port of the service")
    parser.add_argument("--table", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--measure", type=int, default=20)
    parser.add_argument("--own-view", action="store_true", help="Perspective clients, a View each")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
