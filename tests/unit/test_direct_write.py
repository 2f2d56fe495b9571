"""``write_now``: the replica fan-out's direct socket write, on real sockets.

It may write only when nothing is waiting in the stream's own buffer (else bytes
would overtake earlier ones), must report how much the kernel took (the rest goes
through the stream, capped), and must leave TLS streams and closed sockets alone.
"""

from __future__ import annotations

import socket

import pytest
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, SSLIOStream

from service.web.outgoing import write_now


@pytest.fixture
def pair():
    loop = IOLoop(make_current=False)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    stream = IOStream(ours)
    yield stream, theirs
    stream.close()
    theirs.close()
    loop.close()


def _received(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(5)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the peer closed"
        data += chunk
    return data


def test_an_idle_stream_is_written_at_once_and_in_full(pair):
    stream, peer = pair
    assert write_now(stream, b"hello") == 5
    assert _received(peer, 5) == b"hello"


def test_a_stream_with_bytes_waiting_is_not_overtaken(pair):
    stream, peer = pair
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # Fill the socket until the stream has to keep bytes of its own ...
    stream.write(b"x" * (8 << 20))
    assert stream.writing(), "the kernel took 8 MiB at once: cannot test the waiting case"
    # ... then let the peer drain what the kernel holds (the IOLoop does not run, so the
    # stream still holds the rest): the socket has room, yet nothing may jump the queue.
    peer.setblocking(False)
    try:
        while peer.recv(1 << 20):
            pass
    except BlockingIOError:
        pass
    assert write_now(stream, b"later") == 0


def test_a_socket_that_takes_only_part_reports_what_it_took(pair):
    stream, peer = pair
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = b"y" * (4 << 20)
    taken = write_now(stream, data)
    assert 0 < taken < len(data)
    assert _received(peer, 16) == data[:16]


def test_tls_and_closed_streams_take_the_usual_path(pair):
    stream, _peer = pair
    ours, theirs = socket.socketpair()
    try:
        tls = SSLIOStream(ours, ssl_options={"cert_reqs": 0})
        assert write_now(tls, b"secret") == 0
        tls.close()
    finally:
        theirs.close()
    stream.close()
    assert write_now(stream, b"gone") == 0
