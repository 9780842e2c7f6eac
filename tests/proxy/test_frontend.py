"""FrontendProtocol driven deterministically: StringTransport both sides, MemoryReactorClock, real Pool and Logs."""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from tlsfront.backend import Pool, Upstream
from tlsfront.frontend import Env, FrontendProtocol, Hooks, Site
from tlsfront.logfiles import Logs
from tlsfront.model import Address, Backend, Limits, Quirk, Timeouts, VHost
from tlsfront.quirks import QuirkRules

B1 = Backend("http://127.0.0.1:9001", "127.0.0.1", 9001)
B2 = Backend("http://127.0.0.1:9002", "127.0.0.1", 9002)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Harness:
    def __init__(self, tmp_path, backends=(B1,), quirks=(), limits=None, vhost_kw=None, **timeouts):
        self.clock = MemoryReactorClock()
        self.timeouts = Timeouts(**timeouts)
        self.pool = Pool(self.clock, self.timeouts)
        self.error_log = tmp_path / "error.log"
        self.access_log = tmp_path / "access.log"
        logs = Logs(self.error_log, self.access_log, log_level="debug")
        self.env = Env(self.clock, self.pool, Hooks(logs), self.timeouts, limits or Limits(),
                       QuirkRules(quirks))
        kw = {"tls": None, **(vhost_kw or {})}
        vhost = VHost(index=0, server_name="app.test", listen=Address("127.0.0.1", 8080),
                      backends=tuple(backends), **kw)
        self.site = Site(vhost, Upstream(self.pool, vhost.backends, vhost.label))
        self.backends: list[tuple[object, StringTransport]] = []

    def client(self, transport_class=None) -> tuple[FrontendProtocol, StringTransport]:
        proto = FrontendProtocol(self.env, lambda ip, port, host: self.site, tls=False)
        t = (transport_class or StringTransport)(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                                                 peerAddress=IPv4Address("TCP", "10.1.2.3", 5555))
        proto.makeConnection(t)
        return proto, t

    def connect_backend(self, i: int = -1):
        """Complete the i-th connectTCP the pool made; returns (protocol, transport)."""
        host, port, factory, timeout, _ = self.clock.tcpClients[i]
        assert timeout == self.timeouts.backend_connect_seconds
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        t = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        proto.makeConnection(t)
        self.backends.append((proto, t))
        return proto, t

    def fail_connect(self, i: int, exc: Exception) -> None:
        _, _, factory, _, _ = self.clock.tcpClients[i]
        factory.clientConnectionFailed(None, Failure(exc))

    def errors(self) -> list[str]:
        return self.error_log.read_text().splitlines() if self.error_log.exists() else []


def test_request_forwarded_and_backend_connection_reused(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET /a HTTP/1.1\r\nHost: app.test\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n")
    bp, bt = h.connect_backend()
    head = bt.value().decode()
    assert head.startswith("GET /a HTTP/1.1\r\nHost: app.test\r\n")
    assert "X-Forwarded-For: 10.1.2.3\r\n" in head and "X-Forwarded-Proto: http\r\n" in head
    assert "X-Hop" not in head and "Connection" not in head
    bp.dataReceived(OK)
    assert t.value() == OK
    assert not t.disconnecting
    bt.clear()
    t.clear()
    proto.dataReceived(b"GET /b HTTP/1.1\r\nHost: app.test\r\n\r\n")
    assert len(h.clock.tcpClients) == 1  # the pooled connection was reused
    assert bt.value().startswith(b"GET /b HTTP/1.1\r\n")
    bp.dataReceived(OK)
    assert t.value() == OK
    assert "GET /b HTTP/1.1" in h.access_log.read_text()


def test_keepalive_idle_deadline_closes(tmp_path):
    h = Harness(tmp_path, client_keepalive_seconds=5)
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    bp, _ = h.connect_backend()
    bp.dataReceived(OK)
    h.clock.advance(4.9)
    assert not t.disconnecting
    h.clock.advance(0.2)
    assert t.disconnecting


def test_slow_request_head_gets_408_at_its_deadline_not_reset_by_bytes(tmp_path):
    h = Harness(tmp_path, client_header_seconds=10)
    proto, t = h.client()
    head = b"GET / HTTP/1.1\r\nX: "
    for i in range(len(head)):  # one byte every 0.5 s: slowloris
        proto.dataReceived(head[i:i + 1])
        h.clock.advance(0.5)
    assert t.value() == b""  # 9.5 s, every byte late but the deadline is for the whole head
    h.clock.advance(10.01 - h.clock.seconds())
    assert t.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert t.disconnecting
    assert any("TLSF0401" in line for line in h.errors())


def test_silent_connection_closed_without_answer(tmp_path):
    h = Harness(tmp_path, client_header_seconds=3)
    proto, t = h.client()
    h.clock.advance(3.1)
    assert t.value() == b"" and t.disconnecting


def test_response_header_timeout_is_504_and_logged_once(tmp_path):
    h = Harness(tmp_path, backend_response_header_seconds=2)
    proto, t = h.client()
    proto.dataReceived(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
    bp, bt = h.connect_backend()
    h.clock.advance(2.1)
    assert t.value().startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert bt.disconnecting  # the backend connection is not reused
    lines = [x for x in h.errors() if "TLSF0303" in x]
    assert len(lines) == 1 and "127.0.0.1:9001" in lines[0] and "app.test:8080" in lines[0]


def test_refused_backend_marked_down_and_next_one_tried(tmp_path):
    h = Harness(tmp_path, backends=(B1, B2))
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert h.clock.tcpClients[0][1] == 9001
    h.fail_connect(0, error.ConnectionRefusedError())
    assert h.clock.tcpClients[1][1] == 9002  # the same request, on the next backend
    bp, _ = h.connect_backend(1)
    bp.dataReceived(OK)
    assert t.value() == OK
    assert h.pool.is_down(B1, h.clock.seconds())
    # The next request skips the down backend without trying it.
    proto.dataReceived(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(h.clock.tcpClients) == 2
    h.clock.advance(11)
    assert not h.pool.is_down(B1, h.clock.seconds())


def test_all_backends_refuse_502(tmp_path):
    h = Harness(tmp_path, backends=(B1, B2))
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    h.fail_connect(0, error.ConnectionRefusedError())
    h.fail_connect(1, error.ConnectionRefusedError())
    assert t.value().startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and t.disconnecting
    assert len([x for x in h.errors() if "TLSF0301" in x]) == 1


def test_connect_timeout_504(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    h.fail_connect(0, error.TimeoutError())
    assert t.value().startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert any("TLSF0303" in x and "waiting for connect" in x for x in h.errors())


def test_pipelined_requests_wait_for_the_previous_answer(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    bp, bt = h.connect_backend()
    assert bt.value().count(b"GET ") == 1  # the second waits for the first answer
    bp.dataReceived(OK)
    assert bt.value().count(b"GET ") == 2 and b"GET /2 " in bt.value()
    bp.dataReceived(OK)
    assert t.value() == OK + OK and t.producerState == "producing"


def test_pipelined_backlog_is_bounded(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
    bp, bt = h.connect_backend()
    for _ in range(10):  # a client pipelining far ahead
        proto.dataReceived(b"GET /n HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 8000 + b"\r\n\r\n")
    assert t.producerState == "paused"  # it stopped reading at the bound
    for n in range(1, 11):
        bp.dataReceived(OK)
        assert bt.value().count(b"GET /n ") == n  # one at a time, in order
    bp.dataReceived(OK)
    assert t.value() == OK * 11 and t.producerState == "producing"


def test_upload_and_download_flow_control(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
    bp, bt = h.connect_backend()
    assert bt.value().endswith(b"\r\n\r\n12345")
    assert t.producerState == "producing"
    bt.producer.pauseProducing()  # the backend's socket buffer is full
    assert t.producerState == "paused"
    bt.producer.resumeProducing()
    assert t.producerState == "producing"
    proto.dataReceived(b"67890")
    assert bt.value().endswith(b"1234567890") and bt.producer is None
    bp.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    t.producer.pauseProducing()  # the client reads slowly
    assert bt.producerState == "paused"
    t.producer.resumeProducing()
    assert bt.producerState == "producing"
    bp.dataReceived(b"0\r\n\r\n")
    assert t.value().endswith(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    # The download producer stays registered for the connection (not per exchange), but
    # the pooled backend connection is no longer paused by this client.
    t.producer.pauseProducing()
    assert bt.producerState == "producing"
    t.producer.resumeProducing()


def test_body_before_backend_connection_is_bounded(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n")
    proto.dataReceived(b"a" * 40000)
    assert t.producerState == "producing"
    proto.dataReceived(b"b" * 40000)
    assert t.producerState == "paused"  # 80 kB waiting for the connect: stop reading
    _, bt = h.connect_backend()
    assert t.producerState == "producing" and bt.value().endswith(b"a" * 40000 + b"b" * 40000)


def test_expect_continue_answered_by_the_proxy(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert t.value() == b""
    _, bt = h.connect_backend()
    assert t.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"Expect" not in bt.value()


def test_bad_request_answered_400_and_logged(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert t.value().startswith(b"HTTP/1.1 400 Bad Request\r\n") and t.disconnecting
    assert h.clock.tcpClients == []  # nothing reached a backend
    assert any("TLSF0402" in x and "answered 400" in x for x in h.errors())


def test_too_many_headers_431(tmp_path):
    h = Harness(tmp_path, limits=Limits(max_header_count=3))
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
    assert t.value().startswith(b"HTTP/1.1 431 ")


MSIE = Quirk(attribute="User-Agent", pattern=r"MSIE [2-5]",
             set=("nokeepalive", "ssl-unclean-shutdown", "downgrade-1.0", "force-response-1.0"))


@pytest.mark.parametrize("ua,quirky", [(b"Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)", True),
                                       (b"Mozilla/5.0 (X11; Linux) Firefox/120.0", False)])
def test_msie_quirks(tmp_path, ua, quirky):
    h = Harness(tmp_path, quirks=(MSIE,))
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: " + ua + b"\r\n\r\n")
    bp, _ = h.connect_backend()
    bp.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    out = t.value()
    if quirky:
        assert out.startswith(b"HTTP/1.0 200 OK\r\n")  # force-response-1.0
        assert b"Transfer-Encoding" not in out and out.endswith(b"\r\n\r\nhi")  # downgrade-1.0
        assert b"Connection: close\r\n" in out and t.disconnecting  # nokeepalive
        assert "nokeepalive,downgrade-1.0,force-response-1.0,ssl-unclean-shutdown" in h.access_log.read_text()
    else:
        assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in out
        assert not t.disconnecting


class TLSStringTransport(StringTransport):
    """A StringTransport with a real pyOpenSSL Connection behind getHandle(), as
    TLSMemoryBIOProtocol has: the shutdown flags set before closing can be read back."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)

    def getHandle(self):
        return self.conn


@pytest.mark.parametrize("ua,request_close,flags", [
    (b"Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)", False, SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN),
    (b"Firefox/120.0", True, SSL.RECEIVED_SHUTDOWN),
], ids=["msie-unclean", "standard"])
def test_shutdown_mode_flags_follow_the_request_quirks(tmp_path, ua, request_close, flags):
    """mod_ssl: standard = RECEIVED_SHUTDOWN (close_notify sent, the peer's not awaited);
    ssl-unclean-shutdown = SENT|RECEIVED (no close_notify at all)."""
    h = Harness(tmp_path, quirks=(MSIE,))
    proto, t = h.client(TLSStringTransport)
    extra = b"Connection: close\r\n" if request_close else b""
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: " + ua + b"\r\n" + extra + b"\r\n")
    bp, _ = h.connect_backend()
    bp.dataReceived(OK)
    assert t.disconnecting
    assert t.conn.get_shutdown() == flags


def test_reused_connection_closed_by_backend_is_retried(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
    bp, bt = h.connect_backend()
    bp.dataReceived(OK)
    proto.dataReceived(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    # The backend had closed its side as we reused it (keep-alive race): no byte of answer.
    bp.connectionLost(Failure(error.ConnectionDone()))
    assert len(h.clock.tcpClients) == 2
    bp2, bt2 = h.connect_backend(1)
    assert bt2.value().startswith(b"GET /2 ")
    bp2.dataReceived(OK)
    assert t.value() == OK + OK


def test_backend_reset_mid_body_closes_client(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    bp, _ = h.connect_backend()
    bp.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    bp.connectionLost(Failure(error.ConnectionLost()))
    assert t.disconnected  # aborted: the client must not take a short body for a whole one
    assert any("TLSF0302" in x for x in h.errors())


def test_http10_client_and_until_close_response(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    bp, bt = h.connect_backend()
    assert b"Host: app.test:8080\r\n" in bt.value()  # HTTP/1.1 to the backend needs a Host
    bp.dataReceived(b"HTTP/1.0 200 OK\r\n\r\nuntil")
    bp.dataReceived(b" close")
    bp.connectionLost(Failure(error.ConnectionDone()))
    assert t.value().endswith(b"Connection: close\r\n\r\nuntil close") and t.disconnecting


def test_trusted_proxy_networks(tmp_path):
    from tlsfront.model import Forwarding
    for nets, expected in ((("10.0.0.0/8",), b"X-Forwarded-For: 1.1.1.1, 10.1.2.3\r\n"),
                           (("10.1.2.3",), b"X-Forwarded-For: 1.1.1.1, 10.1.2.3\r\n"),
                           (("192.168.0.0/16",), b"X-Forwarded-For: 10.1.2.3\r\n")):
        h = Harness(tmp_path, vhost_kw={"forwarding": Forwarding(trusted_proxies=nets)})
        proto, t = h.client()  # the peer is 10.1.2.3
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n")
        _, bt = h.connect_backend()
        assert expected in bt.value(), (nets, bt.value())


def test_hsts_only_on_tls_vhosts(tmp_path):
    from tlsfront.model import TLSSettings
    h = Harness(tmp_path, vhost_kw={"tls": TLSSettings(), "hsts_max_age_seconds": 600})
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    bp, _ = h.connect_backend()
    bp.dataReceived(OK)
    assert b"Strict-Transport-Security: max-age=600\r\n" in t.value()
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    bp, _ = h.connect_backend()
    bp.dataReceived(OK)
    assert b"Strict-Transport-Security" not in t.value()


def test_preserve_host_off_names_the_backend(tmp_path):
    from tlsfront.model import Forwarding
    h = Harness(tmp_path, vhost_kw={"forwarding": Forwarding(preserve_host=False)})
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
    _, bt = h.connect_backend()
    head = bt.value()
    assert head.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n")
    assert b"X-Forwarded-Host: www.example.test\r\n" in head


def test_valid_request_then_garbage_in_one_read(tmp_path):
    h = Harness(tmp_path)
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nXYZ\r\n\r\n")
    assert t.value() == b""
    bp, bt = h.connect_backend()
    assert bt.value().count(b"HTTP/1.1\r\n") == 1
    bp.dataReceived(OK)
    assert t.value().startswith(OK + b"HTTP/1.1 400 Bad Request\r\n") and t.disconnecting


def test_plain_vhost_redirects_to_https(tmp_path):
    h = Harness(tmp_path, vhost_kw={"redirect_to_https": "www.example.test:8443"})
    proto, t = h.client()
    proto.dataReceived(b"GET /a/b?c=1 HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
    out = t.value()
    assert out.startswith(b"HTTP/1.1 301 Moved Permanently\r\n")
    assert b"Location: https://www.example.test:8443/a/b?c=1\r\n" in out
    assert not t.disconnecting and h.clock.tcpClients == []  # answered here, kept alive
    t.clear()
    proto.dataReceived(b"POST /form HTTP/1.1\r\nHost: www.example.test\r\nContent-Length: 3\r\n\r\nabc")
    assert b"Location: https://www.example.test:8443/form\r\n" in t.value()


def test_ssl_nossl_suffix_redirects(tmp_path):
    from tlsfront.listeners import build_sites
    from tlsfront.model import TLSSettings
    h = Harness(tmp_path)
    plain = VHost(index=0, server_name="www.example.test", listen=Address("127.0.0.1", 8080), tls=None,
                  backends=(B1,), ssl_nossl_suffix_redirects=True)
    tls = VHost(index=1, server_name="www.example.test", listen=Address("127.0.0.1", 8443), tls=TLSSettings(),
                backends=(B1,), ssl_nossl_suffix_redirects=True)
    sites = build_sites(h.env, (plain, tls))
    h.site = sites[0]
    proto, t = h.client()
    proto.dataReceived(b"GET /shop/cart:SSL?item=3 HTTP/1.1\r\nHost: www.example.test:8080\r\n\r\n")
    assert b"Location: https://www.example.test:8443/shop/cart?item=3\r\n" in t.value()
    t.clear()
    proto.dataReceived(b"GET /plain/page HTTP/1.1\r\nHost: www.example.test:8080\r\n\r\n")
    assert len(h.clock.tcpClients) == 1  # no suffix: forwarded as usual
    h.site = sites[1]
    proto, t = h.client()
    proto.dataReceived(b"GET /docs:NOSSL HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
    assert b"Location: http://www.example.test:8080/docs\r\n" in t.value()


# -- any split of a pipelined client stream gives the same exchanges -------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tlsfront.http1 import END, Request, RequestReader  # noqa: E402

STREAM = (b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
          b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
          b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
          b"GET /d HTTP/1.1\r\nHost: a\r\n\r\n")
EXPECTED = [(b"POST", b"/a", b"hello"), (b"GET", b"/b", b""), (b"PUT", b"/c", b"abcde"), (b"GET", b"/d", b"")]


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=10))
@settings(max_examples=60, deadline=None)
def test_any_split_of_a_pipelined_stream(tmp_path_factory, cuts):
    h = Harness(tmp_path_factory.mktemp("split"))
    proto, t = h.client()
    bounds = [0, *sorted(set(cuts)), len(STREAM)]
    seen: list = []
    backend = {"reader": RequestReader(), "conn": None, "offset": 0, "current": None}

    def serve_backend():
        if backend["conn"] is None and h.clock.tcpClients:
            backend["conn"] = h.connect_backend(0)
        if backend["conn"] is None:
            return
        bp, bt = backend["conn"]
        data = bt.value()[backend["offset"]:]
        backend["offset"] += len(data)
        for ev in backend["reader"].feed(data) if data else []:
            if isinstance(ev, Request):
                backend["current"] = [ev.method, ev.target, b""]
            elif ev is END:
                seen.append(tuple(backend["current"]))
                bp.dataReceived(OK)  # answers at once: the next pipelined request may follow
                serve_backend()
                return
            else:
                backend["current"][2] += ev

    for a, b in zip(bounds, bounds[1:]):
        proto.dataReceived(STREAM[a:b])
        serve_backend()
    assert seen == EXPECTED
    assert t.value() == OK * len(EXPECTED)
    assert len(h.clock.tcpClients) == 1  # one backend connection, kept alive throughout


# -- metrics of requests the proxy answers itself, and of the backend pool (issue 8/11) ------------

def _with_metrics(h: Harness):
    """Count the harness's events in a real Metrics store (and report the pool's in-use counts)."""
    from prometheus_client import CollectorRegistry

    from tlsfront.metrics import Metrics

    m = Metrics([h.site.vhost], build={"version": "t"})
    reg = CollectorRegistry()
    reg.register(m.collector())
    h.env.hooks = Hooks(h.env.hooks.logs, m)
    h.pool.on_in_use = lambda vhost, backend, n: h.env.hooks.event("backend_connections", vhost, str(backend), n)
    return reg


@pytest.mark.parametrize("request_bytes,limits,status,reason", [
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", None, 400, "bad_request"),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", None, 405, "method_not_allowed"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99\r\n\r\n", Limits(max_body_bytes=10), 413, "body_too_large"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: bogus\r\n\r\n", None, 417, "expectation_failed"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Limits(max_header_count=3), 431, "header_too_large"),
], ids=["400", "405", "413", "417", "431"])
def test_rejected_requests_are_counted_by_class_and_reason(tmp_path, request_bytes, limits, status, reason):
    h = Harness(tmp_path, limits=limits)
    reg = _with_metrics(h)
    proto, t = h.client()
    proto.dataReceived(request_bytes)
    assert t.value().startswith(b"HTTP/1.1 %d " % status)
    label = h.site.label
    assert reg.get_sample_value("tlsfront_http_requests_total", {"vhost": label, "code": "4xx"}) == 1
    assert reg.get_sample_value("tlsfront_http_rejected_requests_total", {"vhost": label, "reason": reason}) == 1
    total = sum(s.value for fam in reg.collect() if fam.name == "tlsfront_http_rejected_requests"
                for s in fam.samples if s.name.endswith("_total"))
    assert total == 1


def test_request_head_timeout_is_a_rejected_request(tmp_path):
    h = Harness(tmp_path, client_header_seconds=5)
    reg = _with_metrics(h)
    proto, t = h.client()
    proto.dataReceived(b"GET / HTTP/1.1\r\n")
    h.clock.advance(5.1)
    assert t.value().startswith(b"HTTP/1.1 408 ")
    label = h.site.label
    assert reg.get_sample_value("tlsfront_http_rejected_requests_total", {"vhost": label, "reason": "timeout"}) == 1
    assert reg.get_sample_value("tlsfront_http_requests_total", {"vhost": label, "code": "4xx"}) == 1


def test_backend_connections_in_use_follow_checkout_and_return(tmp_path):
    h = Harness(tmp_path)
    reg = _with_metrics(h)
    key = {"vhost": h.site.label, "backend": "127.0.0.1:9001"}
    assert reg.get_sample_value("tlsfront_backend_connections_in_use", key) == 0
    proto, t = h.client()
    proto.dataReceived(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
    bp, bt = h.connect_backend()
    assert reg.get_sample_value("tlsfront_backend_connections_in_use", key) == 1
    proto2, t2 = h.client()  # a second client while the first exchange runs: a second connection
    proto2.dataReceived(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
    bp2, bt2 = h.connect_backend()
    assert reg.get_sample_value("tlsfront_backend_connections_in_use", key) == 2
    bp.dataReceived(OK)  # released to the idle pool
    assert reg.get_sample_value("tlsfront_backend_connections_in_use", key) == 1
    proto.dataReceived(b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n")  # the idle one, checked out again
    assert len(h.clock.tcpClients) == 2
    assert reg.get_sample_value("tlsfront_backend_connections_in_use", key) == 2
    proto2.connectionLost(Failure(error.ConnectionDone()))  # client gone mid-exchange: detached
    assert reg.get_sample_value("tlsfront_backend_connections_in_use", key) == 1
    bp2.connectionLost(Failure(error.ConnectionDone()))  # and its loss does not count twice
    bp.connectionLost(Failure(error.ConnectionLost()))  # the backend drops the other one mid-exchange
    assert reg.get_sample_value("tlsfront_backend_connections_in_use", key) == 0
