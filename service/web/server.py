"""The HTTP server: Tornado's, plus what keeps one client from exhausting the port.

Tornado's ``HTTPServer`` leaves three things to the application:

**Connection caps, at accept time.** Every accepted socket costs a file
descriptor until it closes. Past ``server.max_connections`` in total, or
``server.max_connections_per_address`` from one peer address (peers in
``server.trusted_proxies`` carry many clients and are exempt), a new connection
is closed at once, before a byte is read, and counted in
``livetables_connections_rejected_total{reason}``. Unfinished requests and idle
keep-alive connections are closed after ``server.header_timeout_seconds``
(Tornado's header timeout runs from the end of the previous request to the
end of this one's headers, so trickling a header byte by byte does not extend it).

**The accept loop at the open-file limit.** Tornado's accept handler lets
``EMFILE`` escape; the listening socket stays readable, so the event loop calls
it again at once, forever, logging a traceback each time. Here a failed accept
pauses accepting for :data:`ACCEPT_PAUSE_S` (the kernel keeps queueing
connections meanwhile; timeouts free descriptors), is counted
(``reason="open_files"``) and logged at most once per :data:`LOG_INTERVAL_S`.

**A screen in front of every request**, run when its headers are complete and
before any handler, authentication included:

- the client address and scheme from ``X-Forwarded-For``/``X-Real-Ip``/
  ``X-Forwarded-Proto``, only when the peer is a trusted proxy
  (:mod:`service.security.network`);
- ``Host`` against ``server.allowed_hosts`` (DNS rebinding): 400;
- request bodies: no endpoint takes one, so a request announcing a body
  (``Content-Length`` other than 0, or any ``Transfer-Encoding``) is answered
  413 before a byte of the body is read, instead of being buffered whole
  before the handler (and its authentication) runs.

Refusals are counted in ``livetables_http_requests_rejected_total{reason}``.
"""

from __future__ import annotations

import errno
import functools
import logging
import resource
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tornado import gen, httputil
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError

from service.config import ServerConfig
from service.metrics import Metrics
from service.security.headers import raw_response
from service.security.network import HostPolicy, TrustedProxies
from service.security.slots import AddressSlots
from service.throttled_log import ThrottledLog

log = logging.getLogger(__name__)

ACCEPT_BATCH = 128  # connections accepted per wake-up before others get the loop
ACCEPT_PAUSE_S = 0.5
LOG_INTERVAL_S = 10.0
# After a refusal, read (and drop) what the client still sends, this long and this much at most.
LINGER_S = 2.0
LINGER_BYTES = 1024 * 1024
# Descriptors the process needs besides client connections: Kafka, logs, files.
RESERVED_FDS = 256
OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
CONNECTION_REASONS = ("total", "per_address", "open_files")
REQUEST_REASONS = ("host", "body")
PROXY_HINT = "; if that address is a proxy or load balancer, list it in server.trusted_proxies"


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int
    max_connections_per_address: int
    header_timeout_s: float
    max_header_bytes: int
    max_message_bytes: int  # the largest websocket message; bounds each connection's read buffer


class ConnectionSlots(AddressSlots):
    """Open connections; peers in ``server.trusted_proxies`` carry many clients and are exempt
    from the per-address cap."""


class _CountedStream(IOStream):
    """An IOStream that gives its connection slot back when it closes, whoever closes it."""

    def __init__(self, sock: socket.socket, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        self._on_close: Callable[[], None] | None = on_close

    def close(self, exc_info: Any = False) -> None:
        super().close(exc_info)
        if self._on_close is not None:
            release, self._on_close = self._on_close, None
            release()


class RequestScreen:
    """What a request must pass when its headers are in; see the module docstring."""

    def __init__(self, trusted: TrustedProxies, hosts: HostPolicy) -> None:
        self.trusted = trusted
        self.hosts = hosts

    def refusal(self, headers: httputil.HTTPHeaders) -> tuple[int, str, str, str] | None:
        """(status, reason phrase, text, metric reason) for a refused request, else None."""
        host = headers.get("Host")
        if not self.hosts.allows(host):
            shown = (host or "")[:100]
            return 400, "Bad Request", f"this service does not answer to host {shown!r}\n", "host"
        length = headers.get("Content-Length")
        if "Transfer-Encoding" in headers or (length is not None and length.strip() != "0"):
            text = "this endpoint takes no request body\n"
            return 413, "Content Too Large", text, "body"
        return None


class _ScreenedRequest(httputil.HTTPMessageDelegate):
    """Runs the :class:`RequestScreen` on one request, then hands it to the application."""

    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        connection: Any,
        screen: RequestScreen,
        metrics: Metrics,
        linger: float,
        throttled: ThrottledLog,
    ) -> None:
        self.inner = inner
        self.connection = connection
        self.screen = screen
        self.metrics = metrics
        self.linger = linger
        self.throttled = throttled
        self._saved: tuple[str, str] | None = None

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        context = self.connection.context
        if self.screen.trusted:
            peer, protocol = context.remote_ip, context.protocol
            self._saved = (peer, protocol)
            context.remote_ip = self.screen.trusted.client_address(peer, headers)
            context.protocol = self.screen.trusted.client_protocol(peer, headers, protocol)
        refused = self.screen.refusal(headers)
        if refused is None:
            return self.inner.headers_received(start_line, headers)
        status, phrase, text, reason = refused
        self.metrics.http_rejected.labels(reason).inc()
        self.throttled.info(
            f"request-{reason}",
            "refused a request from %s: %s",
            context.remote_ip,
            text.strip(),
        )
        self._restore()
        # Detached, Tornado reads nothing more of this request (not its body either).
        stream = self.connection.detach()
        IOLoop.current().add_callback(
            _answer_and_close, stream, raw_response(status, phrase, text), self.linger
        )
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self._restore()
        self.inner.finish()

    def on_connection_close(self) -> None:
        self._restore()
        self.inner.on_connection_close()

    def _restore(self) -> None:
        # The context belongs to the connection; the next request on it starts from the peer.
        if self._saved is not None:
            self.connection.context.remote_ip, self.connection.context.protocol = self._saved
            self._saved = None


async def _answer_and_close(stream: IOStream, response: bytes, linger: float) -> None:
    """Write a refusal, then close gently: closing with unread input would reset the
    connection and the client might never see the answer."""
    try:
        await stream.write(response)
        if stream.socket is not None:
            stream.socket.shutdown(socket.SHUT_WR)
        deadline = stream.io_loop.time() + linger
        drained = 0
        while drained < LINGER_BYTES:
            chunk = await gen.with_timeout(
                deadline,
                stream.read_bytes(64 * 1024, partial=True),
                quiet_exceptions=(StreamClosedError,),
            )
            drained += len(chunk)
    except (StreamClosedError, TimeoutError, OSError):
        pass
    finally:
        stream.close()


class GuardedHTTPServer(HTTPServer):
    """Tornado's HTTPServer with connection caps, a resilient accept loop and a request screen."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Any,
        limits: ServerLimits,
        screen: RequestScreen,
        metrics: Metrics,
    ) -> None:
        super().initialize(
            request_callback,
            xheaders=False,  # forwarding headers are the screen's job, for trusted peers only
            idle_connection_timeout=limits.header_timeout_s,
            body_timeout=limits.header_timeout_s,
            max_header_size=limits.max_header_bytes,
            max_body_size=0,
            max_buffer_size=max(limits.max_message_bytes, limits.max_header_bytes) + 64 * 1024,
        )
        self.limits = limits
        self.screen = screen
        self.metrics = metrics
        self.counter = ConnectionSlots(
            limits.max_connections, limits.max_connections_per_address, screen.trusted.trusts
        )
        self._throttled = ThrottledLog(log, LOG_INTERVAL_S)
        self._paused: dict[int, object] = {}
        for reason in CONNECTION_REASONS:
            metrics.connections_rejected.labels(reason)
        for reason in REQUEST_REASONS:
            metrics.http_rejected.labels(reason)
        metrics.http_connections.set(0)

    # -- accepting ------------------------------------------------------------------

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            fd = sock.fileno()
            self._sockets[fd] = sock
            self._handlers[fd] = functools.partial(self._stop_accepting, sock)
            self._start_accepting(sock)

    def _start_accepting(self, sock: socket.socket) -> None:
        self._paused.pop(sock.fileno(), None)
        IOLoop.current().add_handler(sock, lambda _fd, _events: self._accept(sock), IOLoop.READ)

    def _stop_accepting(self, sock: socket.socket) -> None:
        loop = IOLoop.current()
        loop.remove_handler(sock)
        timer = self._paused.pop(sock.fileno(), None)
        if timer is not None:
            loop.remove_timeout(timer)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._pause(sock, exc)
                return
            self._admit(connection, address)

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        """No descriptor (or memory) for a new connection: stop accepting for a moment."""
        loop = IOLoop.current()
        loop.remove_handler(sock)
        self._paused[sock.fileno()] = loop.call_later(ACCEPT_PAUSE_S, self._start_accepting, sock)
        if exc.errno in OUT_OF_DESCRIPTORS:
            self.metrics.connections_rejected.labels("open_files").inc()
            self._throttled.warning(
                "accept",
                "cannot accept connections: %s (%d open); pausing accepts for %.1fs each time",
                exc.strerror,
                self.counter.total,
                ACCEPT_PAUSE_S,
            )
        else:
            self._throttled.warning("accept-error", "accept failed: %s", exc)

    def _admit(self, connection: socket.socket, address: Any) -> None:
        peer = address[0] if isinstance(address, tuple) else "local"
        reason = self.counter.refusal(peer)
        if reason is not None:
            connection.close()
            self.metrics.connections_rejected.labels(reason).inc()
            self._throttled.warning(
                f"cap-{reason}",
                "refusing connections (%s cap reached; latest from %s)%s",
                reason.replace("_", " "),
                peer,
                PROXY_HINT if reason == "per_address" else "",
            )
            return
        self.counter.take(peer)
        self.metrics.http_connections.set(self.counter.total)

        def release() -> None:
            self.counter.give_back(peer)
            self.metrics.http_connections.set(self.counter.total)

        stream = _CountedStream(
            connection,
            release,
            max_buffer_size=self.max_buffer_size,
            read_chunk_size=self.read_chunk_size,
        )
        try:
            self.handle_stream(stream, address)
        except Exception:
            log.exception("cannot serve a new connection from %s", peer)
            stream.close()

    # -- requests -------------------------------------------------------------------

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        inner = super().start_request(server_conn, request_conn)
        linger = min(LINGER_S, self.limits.header_timeout_s)
        return _ScreenedRequest(
            inner, request_conn, self.screen, self.metrics, linger, self._throttled
        )


def http_server(app: Any, server: ServerConfig, metrics: Metrics) -> GuardedHTTPServer:
    """The HTTP server for an application, with the ``server:`` section's limits."""
    limits = ServerLimits(
        max_connections=server.max_connections,
        max_connections_per_address=server.max_connections_per_address,
        header_timeout_s=server.header_timeout_seconds,
        max_header_bytes=server.max_header_bytes,
        max_message_bytes=server.max_request_bytes,
    )
    check_descriptor_budget(limits, raise_open_file_limit())
    screen = RequestScreen(TrustedProxies(server.trusted_proxies), HostPolicy(server.allowed_hosts))
    return GuardedHTTPServer(app, limits=limits, screen=screen, metrics=metrics)


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one, as Go's runtime does; return it.

    Each connection holds a descriptor: a soft limit of 1024 (a common default) would
    make the connection caps unreachable and turn an attack into EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the open-file limit to %d: %s", target, exc)
    return soft


def check_descriptor_budget(limits: ServerLimits, open_files: int) -> None:
    """Warn when the connection cap cannot be reached before the open-file limit."""
    budget = open_files - RESERVED_FDS
    if limits.max_connections > budget:
        log.warning(
            "server.max_connections is %d but the open-file limit is %d: at about %d "
            "connections accepting will pause instead; raise the limit (ulimit -n) "
            "or lower max_connections",
            limits.max_connections,
            open_files,
            max(budget, 0),
        )
