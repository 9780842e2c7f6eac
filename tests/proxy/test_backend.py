"""backend.Pool / Upstream / BackendConnection with MemoryReactorClock and StringTransport."""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from tlsfront import http1
from tlsfront.backend import Pool, Upstream
from tlsfront.model import Backend, Timeouts

A = Backend("http://127.0.0.1:1", "127.0.0.1", 1)
B = Backend("http://127.0.0.1:2", "127.0.0.1", 2)
C = Backend("http://127.0.0.1:3", "127.0.0.1", 3)


class Sink:
    """Records the callbacks a frontend would get."""

    def __init__(self):
        self.events = []
        self.conn = None

    def backend_connected(self, conn, backend, reused):
        self.conn = conn
        self.events.append(("connected", backend.port, reused))

    def backend_failed(self, backend, kind, detail):
        self.events.append(("failed", backend.port, kind))

    def backend_head(self, resp):
        self.events.append(("head", resp.status))

    def backend_body(self, data):
        self.events.append(("body", data))

    def backend_end(self):
        self.events.append(("end",))

    def backend_flush(self):
        pass  # the frontend sends what one read produced at once; nothing to record here

    def backend_lost(self, reason, started):
        self.events.append(("lost", started))


def connect(clock, i=-1):
    host, port, factory, timeout, _ = clock.tcpClients[i]
    proto = factory.buildProtocol(IPv4Address("TCP", host, port))
    t = StringTransport()
    proto.makeConnection(t)
    return proto, t


def test_round_robin_skips_down_backends_and_alternates():
    clock = MemoryReactorClock()
    pool = Pool(clock, Timeouts())
    up = Upstream(pool, (A, B, C))
    assert [up.order()[0].port for _ in range(6)] == [1, 2, 3, 1, 2, 3]
    pool.mark_down(B)
    firsts = [up.order()[0].port for _ in range(4)]
    assert 2 not in firsts and firsts[0] != firsts[1]
    assert up.order()[-1] == B  # still tried last, when the others refuse
    pool.mark_down(A)
    pool.mark_down(C)
    assert len(up.order()) == 3  # all down: try them all anyway (nginx does the same)


def test_mark_down_expires_and_reports_once():
    clock = MemoryReactorClock()
    downs, ups = [], []
    pool = Pool(clock, Timeouts(), down_seconds=10,
                on_down=lambda b, s: downs.append(b.port), on_up=lambda b: ups.append(b.port))
    pool.mark_down(A)
    pool.mark_down(A)
    assert downs == [1]
    clock.advance(9)
    assert pool.is_down(A, clock.seconds())
    clock.advance(1.5)
    assert not pool.is_down(A, clock.seconds()) and ups == [1]


def test_refused_connect_marks_down_and_reports_refused():
    clock = MemoryReactorClock()
    pool = Pool(clock, Timeouts(backend_connect_seconds=3))
    sink = Sink()
    pool.get(A, sink)
    host, port, factory, timeout, _ = clock.tcpClients[0]
    assert (host, port, timeout) == ("127.0.0.1", 1, 3)
    factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
    assert sink.events == [("failed", 1, "refused")]
    assert pool.is_down(A, clock.seconds())


def test_exchange_then_idle_reuse_then_idle_expiry():
    clock = MemoryReactorClock()
    pool = Pool(clock, Timeouts(backend_idle_seconds=30))
    sink = Sink()
    pool.get(A, sink)
    proto, t = connect(clock)
    assert sink.events == [("connected", 1, False)]
    sink.conn.send_head(sink, b"GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert sink.events[1:] == [("head", 200), ("body", b"hi"), ("end",)]
    sink.conn.release(True)
    assert pool.idle_count(A) == 1
    sink2 = Sink()
    pool.get(A, sink2)
    assert sink2.events == [("connected", 1, True)] and len(clock.tcpClients) == 1
    sink2.conn.send_head(sink2, b"GET", b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
    sink2.conn.release(True)
    clock.advance(29)
    assert not t.disconnecting
    clock.advance(2)
    assert t.disconnecting  # idle too long: closed


def test_not_reusable_after_connection_close_or_head():
    clock = MemoryReactorClock()
    pool = Pool(clock, Timeouts())
    for method, response in ((b"GET", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
                             (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
                             (b"GET", b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")):
        sink = Sink()
        pool.get(A, sink)
        proto, t = connect(clock)
        sink.conn.send_head(sink, method, method + b" / HTTP/1.1\r\nHost: a\r\n\r\n")
        proto.dataReceived(response)
        assert sink.events[-1] == ("end",)
        sink.conn.release(True)
        assert pool.idle_count(A) == 0 and t.disconnecting


def test_idle_connection_that_speaks_is_dropped():
    clock = MemoryReactorClock()
    pool = Pool(clock, Timeouts())
    sink = Sink()
    pool.get(A, sink)
    proto, t = connect(clock)
    sink.conn.send_head(sink, b"GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    sink.conn.release(True)
    proto.dataReceived(b"HTTP/1.1 408 Request Timeout\r\n\r\n")  # unsolicited
    assert t.disconnected
    proto.connectionLost(Failure(error.ConnectionDone()))
    assert pool.idle_count(A) == 0


def test_malformed_response_reported_as_bad_response():
    clock = MemoryReactorClock()
    pool = Pool(clock, Timeouts())
    sink = Sink()
    pool.get(A, sink)
    proto, t = connect(clock)
    sink.conn.send_head(sink, b"GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert sink.events[-1] == ("failed", 1, "bad_response") and t.disconnected


def test_lost_before_answer_reports_started_flag():
    clock = MemoryReactorClock()
    pool = Pool(clock, Timeouts())
    sink = Sink()
    pool.get(A, sink)
    proto, _ = connect(clock)
    sink.conn.send_head(sink, b"GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    proto.dataReceived(b"HTTP/1.1 2")
    proto.connectionLost(Failure(error.ConnectionLost()))
    assert sink.events[-1] == ("lost", True)


def test_simple_response_helper_is_valid_http():
    r = http1.ResponseReader()
    r.expect(b"GET")
    ev = r.feed(http1.simple_response(504, b"x\n"))
    assert ev[0].status == 504 and ev[1:] == [b"x\n", http1.END]
