"""tcpio.tune: TCP_NODELAY and write-through on a real TCP socket pair.

The transport is Twisted's own tcp.Connection over a connected 127.0.0.1 socket,
with a MemoryReactor standing in for the event loop: `reactor.writers` shows
whether a write waited for EPOLLOUT (the epoll_ctl pair write-through saves).
These tests pin the private parts of Twisted that tcpio.write_through reads.
"""

from __future__ import annotations

import socket

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport

from helpers import tcp_pair
from tlsfront import tcpio


@pytest.fixture
def pair():
    ours, peer, _ = tcp_pair()  # ours: the accepted side here (the test only needs a connected pair)
    reactor = MemoryReactor()
    conn = tcp.Connection(ours, Protocol(), reactor)
    conn.connected = 1
    yield conn, peer, reactor
    ours.close()
    peer.close()


def _read_all(peer: socket.socket, n: int) -> bytes:
    peer.settimeout(5)
    got = bytearray()
    while len(got) < n:
        chunk = peer.recv(1 << 20)
        assert chunk, "peer closed early"
        got += chunk
    return bytes(got)


def test_nodelay_and_write_at_once(pair):
    conn, peer, reactor = pair
    assert conn.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    tcpio.tune(conn)
    assert conn.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    conn.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert conn not in reactor.writers  # sent at once: no EPOLLOUT registration
    assert _read_all(peer, 19) == b"HTTP/1.1 200 OK\r\n\r\n"


def test_untuned_twisted_queues(pair):
    """What write-through changes: Twisted's own write waits for the loop (control)."""
    conn, peer, reactor = pair
    conn.write(b"x")
    assert conn in reactor.writers


def test_partial_send_queues_the_rest_in_order(pair):
    conn, peer, reactor = pair
    tcpio.tune(conn)
    big = bytes(range(256)) * (64 * 1024)  # 16 MiB: more than the socket buffers take
    conn.write(big)
    assert conn in reactor.writers  # the kernel took part; the rest waits for EPOLLOUT
    conn.write(b"TAIL")  # must queue behind the remainder, never jump ahead of it
    peer.settimeout(5)
    got = bytearray()
    while len(got) < len(big) + 4:
        got += peer.recv(1 << 20)
        if conn in reactor.writers:
            conn.doWrite()
    assert bytes(got) == big + b"TAIL"
    assert conn not in reactor.writers


def test_broken_connection_is_reported_by_the_loop_not_by_write(pair):
    conn, peer, reactor = pair
    tcpio.tune(conn)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # RST
    for _ in range(50):  # the RST arrives; a send then fails with EPIPE/ECONNRESET
        conn.write(b"y" * 1000)
        if conn in reactor.writers:
            break
    assert conn in reactor.writers  # queued: doWrite (the loop) reports the loss
    assert conn.doWrite() is not None


def test_other_transports_untouched():
    t = StringTransport()
    tcpio.tune(t)
    t.write(b"abc")
    assert t.value() == b"abc"
    assert "write" not in vars(t)
