"""The per-request fast path of FrontendProtocol (issue 4): one write per backend read,
one lazy deadline timer, the download producer registered once per connection.

Driven like test_frontend.py (StringTransport both sides, MemoryReactorClock).
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from test_frontend import OK, Harness


class CountingTransport(StringTransport):
    """Counts write calls (a TLS transport makes one record, one send, of each)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.writes = 0
        self.registrations = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def writeSequence(self, seq) -> None:
        self.writes += 1
        super().write(b"".join(seq))

    def registerProducer(self, producer, streaming) -> None:
        self.registrations += 1
        super().registerProducer(producer, streaming)


def _request(proto) -> None:
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def test_head_and_body_of_one_backend_read_leave_in_one_write(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client(CountingTransport)
    _request(proto)
    bp, _ = h.connect_backend()
    bp.dataReceived(OK)
    assert t.value() == OK and t.writes == 1


def test_a_head_alone_is_not_held_back(tmp_path):
    """A read that ends after the head (a slow or streaming backend) sends the head now."""
    h = Harness(tmp_path)
    proto, t = h.client(CountingTransport)
    _request(proto)
    bp, _ = h.connect_backend()
    bp.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert t.value().endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    bp.dataReceived(b"3\r\nabc\r\n")
    assert t.value().endswith(b"3\r\nabc\r\n")
    bp.dataReceived(b"0\r\n\r\n")
    assert t.value().endswith(b"0\r\n\r\n") and t.writes == 3


def test_one_timer_call_for_many_keepalive_requests(tmp_path):
    h = Harness(tmp_path, client_keepalive_seconds=5)
    proto, t = h.client()
    _request(proto)
    bp, _ = h.connect_backend()
    bp.dataReceived(OK)
    made = []
    call_later = h.clock.callLater
    h.clock.callLater = lambda *a, **kw: made.append(a) or call_later(*a, **kw)
    before = len(h.clock.getDelayedCalls())
    for _ in range(20):
        h.clock.advance(0.01)
        _request(proto)
        bp.dataReceived(OK)
    assert made == []  # no callLater per request (was: two, plus two cancellations)
    assert len(h.clock.getDelayedCalls()) == before
    assert t.value() == OK * 21 and not t.disconnecting
    # The deadline still counts from the last response: 5 s of idleness, not 5 s from the first.
    last = h.clock.seconds()
    h.clock.advance(4.9)
    assert not t.disconnecting
    h.clock.advance(last + 5.0 - h.clock.seconds() + 0.001)
    assert t.disconnecting


def test_a_sooner_deadline_moves_the_call(tmp_path):
    """keep-alive 5 s, then a request without its end: the header deadline (3 s) fires on time."""
    h = Harness(tmp_path, client_keepalive_seconds=5, client_header_seconds=3)
    proto, t = h.client()
    _request(proto)
    bp, _ = h.connect_backend()
    bp.dataReceived(OK)
    proto.dataReceived(b"GET / HTTP/1.1\r\n")  # keep-alive -> header deadline, half a head
    h.clock.advance(2.9)
    assert not t.disconnecting
    h.clock.advance(0.2)
    assert t.value().endswith(b"Request Timeout: the request was not received in time.\n")
    assert t.disconnecting


def test_download_producer_registered_once_and_pause_carries_over(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client(CountingTransport)
    _request(proto)
    bp, bt = h.connect_backend()
    bp.dataReceived(OK)
    _request(proto)  # the pooled connection again
    assert len(h.clock.tcpClients) == 1
    t.producer.pauseProducing()  # the client stopped reading between the exchanges
    bp.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    assert bt.producerState == "paused"  # the new exchange's backend waits for the client
    t.producer.resumeProducing()
    assert bt.producerState == "producing"
    bp.dataReceived(b"cd")
    assert t.registrations == 1
    proto.transport.loseConnection()
