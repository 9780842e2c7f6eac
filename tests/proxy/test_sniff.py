"""sniff: first-byte classification and ClientHello parsing, on real ClientHellos.

ClientHellos are captured at test time from `openssl s_client` and Python's
`ssl` (fresh and resuming: TLS 1.3 PSK, TLS 1.2 ticket, TLS 1.2 session ID)
by a socket that records what the client sends. Every split of each capture
must give NEED_MORE until complete and then the same facts; re-fragmenting a
hello into several records (legal, RFC 8446 5.1) must give the same facts and
still be accepted by OpenSSL.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from tlsfront import sniff
from tlsfront.sniff import HelloStatus, Kind

OPENSSL = shutil.which("openssl")


# -- classification ------------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (b"", Kind.NEED_MORE),
    (b"\x16", Kind.NEED_MORE),
    (b"\x16\x03", Kind.TLS),
    (b"\x16\x03\x01\x02\x00\x01", Kind.TLS),
    (b"\x16\x02", Kind.JUNK),
    (b"G", Kind.NEED_MORE),
    (b"GET", Kind.NEED_MORE),
    (b"GET ", Kind.HTTP),
    (b"GET / HTTP/1.1\r\n", Kind.HTTP),
    (b"POST /x HTTP/1.0\r\n", Kind.HTTP),
    (b"OPTIONS * HTTP/1.1\r\n", Kind.HTTP),
    (b"PROPFIND / HTTP/1.1\r\n", Kind.HTTP),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Kind.HTTP),
    (b"get / HTTP/1.1\r\n", Kind.JUNK),  # methods are case-sensitive (RFC 9110 9.1)
    (b"GETX / HTTP/1.1", Kind.JUNK),
    (b"FOO / HTTP/1.1", Kind.JUNK),
    (b"\x00\x00\x00\x00\x00", Kind.JUNK),
    (b"SSH-2.0-OpenSSH_9.6\r\n", Kind.JUNK),
    (b"\x80\x2e\x01\x00\x02", Kind.SSLV2),  # SSLv2 CLIENT-HELLO
    (b"\x80\x2e\x01\x03\x01", Kind.SSLV2),  # SSLv2-compatible hello offering TLS 1.0
    (b"\x80\x2e\x01", Kind.NEED_MORE),
    (b"\x80\x2e\x02\x03\x01", Kind.JUNK),
], ids=lambda v: repr(v)[:30] if isinstance(v, bytes) else str(v))
def test_classify(data: bytes, expected: Kind) -> None:
    assert sniff.classify(data) is expected


@pytest.mark.parametrize("method", [m.decode() for m in sniff.HTTP_METHODS])
def test_every_method_byte_by_byte(method: str) -> None:
    line = f"{method} / HTTP/1.1\r\n".encode()
    for i in range(len(method) + 1):
        assert sniff.classify(line[:i]) is Kind.NEED_MORE, line[:i]
    assert sniff.classify(line[:len(method) + 1]) is Kind.HTTP


def test_sniff_bytes_bound() -> None:
    # The caller may stop buffering at MAX_SNIFF_BYTES: the answer is decided by then.
    for data in (b"MKACTIVITY / HTTP/1.1", b"\x80\x2e\x01\x03\x01", b"\x16\x03\x01", b"XXXXXXXXXXXXXXXX"):
        assert sniff.classify(data[:sniff.MAX_SNIFF_BYTES]) is not Kind.NEED_MORE


def test_request_line() -> None:
    assert sniff.request_line(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n") == "GET /a HTTP/1.1"
    assert sniff.request_line(b"GET /a") == "GET /a"
    assert sniff.request_line(b"GET /" + b"a" * 1000, limit=10) == "GET /aaaaa"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_never_raises_on_random_bytes(data: bytes) -> None:
    assert isinstance(sniff.classify(data), Kind)
    result = sniff.parse_client_hello(data)
    assert result.status in HelloStatus
    if result.status is HelloStatus.OK:
        assert result.hello is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=400))
def test_never_raises_on_handshake_framed_junk(body: bytes) -> None:
    # Random bodies inside a valid record + handshake header reach the deep parser.
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    data = b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs
    result = sniff.parse_client_hello(data)
    assert result.status in (HelloStatus.OK, HelloStatus.INVALID)


def test_invalid_shapes() -> None:
    assert sniff.parse_client_hello(b"\x17\x03\x03\x00\x05hello").status is HelloStatus.INVALID
    assert sniff.parse_client_hello(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00").status is HelloStatus.INVALID
    huge = b"\x16\x03\x01\x00\x04\x01\xff\xff\xff"
    r = sniff.parse_client_hello(huge)
    assert r.status is HelloStatus.TOO_LARGE and "exceeds" in r.problem
    assert sniff.parse_client_hello(b"\x16\x03\x01\x00\x00").status is HelloStatus.INVALID


# -- real ClientHellos -----------------------------------------------------------------------------

def _capture(run_client: Callable[[int], object]) -> bytes:
    """Listen on 127.0.0.1:0, run the client against it, return the bytes of its first flight."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    t = threading.Thread(target=run_client, args=(port,), daemon=True)
    t.start()
    conn, _ = srv.accept()
    conn.settimeout(5)
    data = b""
    try:
        while sniff.parse_client_hello(data).status is HelloStatus.NEED_MORE:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        conn.close()
        srv.close()
        t.join(10)
    return data


@contextlib.contextmanager
def _tls_server(pki, max_version: ssl.TLSVersion | None = None, tickets: bool = True) -> Iterator[int]:
    """A stdlib TLS server on 127.0.0.1 that answers each connection with one byte."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    chain = pki.dir / "server-chain-sniff.pem"
    if not chain.exists():
        chain.write_bytes(pki.server_cert.read_bytes() + pki.intermediate_cert.read_bytes())
    ctx.load_cert_chain(chain, pki.server_key)
    if max_version:
        ctx.maximum_version = max_version
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.05)  # accept() in a thread is not woken by close(): poll the stop flag
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    tls.recv(1)
                    tls.sendall(b"y")
            except (OSError, ssl.SSLError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        srv.close()


def _py_context(pki, max_version=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.set_alpn_protocols(["http/1.1", "h2"])
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def _py_client(pki, resume=None, sni="www.example.test"):
    """A client run function; `resume` = (context, session) from `_py_session`."""
    ctx, session = resume if resume else (_py_context(pki), None)

    def run(port: int) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                ctx.wrap_socket(raw, server_hostname=sni, session=session)
    return ctx, run


def _py_session(pki, max_version=None, tickets=True):
    """(context, session): a real session from a real server, to offer for resumption."""
    ctx = _py_context(pki, max_version)
    with _tls_server(pki, max_version, tickets) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"x")
                tls.recv(1)  # TLS 1.3 tickets arrive after the handshake
                return ctx, tls.session


def _s_client(*args: str) -> Callable[[int], object]:
    def run(port: int) -> None:
        subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    return run


@pytest.fixture(scope="module")
def hellos(pki, tmp_path_factory) -> dict[str, bytes]:
    """name -> captured first flight."""
    out: dict[str, bytes] = {}
    out["python-fresh"] = _capture(_py_client(pki)[1])
    out["python-tls13-psk"] = _capture(_py_client(pki, resume=_py_session(pki))[1])
    tls12 = ssl.TLSVersion.TLSv1_2
    out["python-tls12-ticket"] = _capture(
        _py_client(pki, resume=_py_session(pki, tls12))[1])
    out["python-tls12-session-id"] = _capture(
        _py_client(pki, resume=_py_session(pki, tls12, tickets=False))[1])
    if OPENSSL:
        d = tmp_path_factory.mktemp("sess")
        out["s_client-fresh"] = _capture(_s_client("-servername", "a.example.test"))
        out["s_client-tls1.2"] = _capture(_s_client("-tls1_2", "-noservername"))
        # A session saved from a real TLS 1.3 server, then offered (PSK).
        with _tls_server(pki) as port:
            subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-sess_out",
                            str(d / "s13"), "-ign_eof"], input=b"x", capture_output=True, timeout=15)
        out["s_client-tls13-psk"] = _capture(_s_client("-sess_in", str(d / "s13")))
    return out


def _facts(name: str, data: bytes) -> sniff.ClientHello:
    r = sniff.parse_client_hello(data)
    assert r.status is HelloStatus.OK, (name, r.problem)
    assert r.consumed == len(data), name  # a client sends nothing else before the server answers
    assert r.hello is not None
    return r.hello


def test_fresh_hellos(hellos) -> None:
    h = _facts("python-fresh", hellos["python-fresh"])
    assert h.sni == "www.example.test"
    assert h.alpn == ("http/1.1", "h2")
    assert 0x0304 in h.versions and h.offers_tls13
    assert h.max_version_name == "TLSv1.3"
    assert h.session_id_length == 32  # TLS 1.3 middlebox compatibility: random, not an offer
    assert not h.psk_offered and not h.offers_ticket
    assert not h.offers_resumption
    assert h.cipher_count > 3
    if "s_client-fresh" in hellos:
        s = _facts("s_client-fresh", hellos["s_client-fresh"])
        assert s.sni == "a.example.test" and not s.offers_resumption
        s12 = _facts("s_client-tls1.2", hellos["s_client-tls1.2"])
        assert s12.sni is None and s12.versions == (0x0303,) and s12.max_version_name == "TLSv1.2"
        assert s12.session_ticket_length == 0  # asks for a ticket, offers none
        assert not s12.offers_resumption


def test_resuming_hellos(hellos) -> None:
    psk = _facts("python-tls13-psk", hellos["python-tls13-psk"])
    assert psk.psk_offered and psk.offers_resumption
    ticket = _facts("python-tls12-ticket", hellos["python-tls12-ticket"])
    assert ticket.offers_ticket and ticket.session_ticket_length > 0 and ticket.offers_resumption
    assert not ticket.offers_tls13
    sid = _facts("python-tls12-session-id", hellos["python-tls12-session-id"])
    assert sid.session_id_length > 0 and not sid.offers_ticket and not sid.psk_offered
    assert sid.offers_resumption
    if "s_client-tls13-psk" in hellos:
        assert _facts("s_client-tls13-psk", hellos["s_client-tls13-psk"]).psk_offered


def test_every_split_of_real_hellos(hellos) -> None:
    for name, data in hellos.items():
        whole = sniff.parse_client_hello(data)
        assert whole.status is HelloStatus.OK, name
        assert sniff.classify(data) is Kind.TLS
        for i in range(len(data)):
            part = sniff.parse_client_hello(data[:i])
            assert part.status is HelloStatus.NEED_MORE, (name, i, part.problem)
            assert sniff.classify(data[:i]) in (Kind.NEED_MORE, Kind.TLS)


def _refragment(data: bytes, size: int) -> bytes:
    """The same handshake bytes in records of at most `size` bytes (RFC 8446 5.1)."""
    header, length = data[:3], int.from_bytes(data[3:5], "big")
    handshake = data[5:5 + length]
    out = b""
    for i in range(0, len(handshake), size):
        chunk = handshake[i:i + size]
        out += header + len(chunk).to_bytes(2, "big") + chunk
    return out


@pytest.mark.parametrize("size", [1, 7, 100, 511])
def test_hello_spanning_records(hellos, pki, size: int) -> None:
    for name, data in hellos.items():
        expected = _facts(name, data)
        split = _refragment(data, size)
        r = sniff.parse_client_hello(split)
        assert r.status is HelloStatus.OK and r.hello == expected, (name, size)
        assert r.consumed == len(split)
        # Every prefix of the fragmented form needs more (checked at a stride to keep it fast).
        for i in range(0, len(split), max(1, len(split) // 97)):
            assert sniff.parse_client_hello(split[:i]).status is HelloStatus.NEED_MORE
    # And OpenSSL accepts such a hello: the server answers with a ServerHello.
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate_file(str(pki.server_cert))
    ctx.use_privatekey_file(str(pki.server_key))
    conn = SSL.Connection(ctx, None)
    conn.set_accept_state()
    conn.bio_write(_refragment(hellos["python-fresh"], size))
    with pytest.raises(SSL.WantReadError):
        conn.do_handshake()
    reply = conn.bio_read(65536)
    assert reply[:1] == b"\x16" and reply[5] == 2  # handshake record, ServerHello


def test_trailing_bytes_after_hello_are_not_consumed(hellos) -> None:
    data = hellos["python-fresh"]
    r = sniff.parse_client_hello(data + b"\x14\x03\x03\x00\x01\x01")
    assert r.status is HelloStatus.OK and r.consumed == len(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_hello_never_raises(hellos, data) -> None:
    name = data.draw(st.sampled_from(sorted(hellos)))
    raw = bytearray(hellos[name])
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    result = sniff.parse_client_hello(bytes(raw))
    assert result.status in HelloStatus


def test_hello_watcher_byte_by_byte(hellos) -> None:
    for name, data in hellos.items():
        w = sniff.HelloWatcher()
        results = [w.feed(data[i:i + 1]) for i in range(len(data))]
        assert all(r is None for r in results[:-1]), name
        assert results[-1] is not None and results[-1].status is HelloStatus.OK
        assert w.done and w.result is results[-1]
        assert w.result.hello == _facts(name, data)
        assert w.feed(b"more") is None  # finished: nothing is kept


def test_hello_watcher_is_bounded() -> None:
    w = sniff.HelloWatcher(max_bytes=1000)
    # A hello that claims 900 bytes, sent in 1-byte records: 6 bytes on the wire per byte.
    hello = b"\x01\x00\x03\x84" + b"\x03\x03" + b"\x00" * 894
    wire = b"".join(b"\x16\x03\x01\x00\x01" + hello[i:i + 1] for i in range(len(hello)))
    results = [w.feed(wire[i:i + 50]) for i in range(0, len(wire), 50)]
    done = [r for r in results if r is not None]
    assert len(done) == 1 and done[0].status is HelloStatus.TOO_LARGE
    assert sniff.HelloWatcher().feed(b"GET / HTTP/1.1\r\n").status is HelloStatus.INVALID
    too_big = sniff.HelloWatcher(max_bytes=1000).feed(b"\x16\x03\x01\x00\x04\x01\x00\x10\x00")
    assert too_big is not None and too_big.status is HelloStatus.TOO_LARGE


def test_hello_watcher_parses_once(hellos, monkeypatch) -> None:
    """Byte-by-byte feeding of a hello in 1-byte records parses it a bounded number of times
    (not once per byte: that would be quadratic)."""
    calls = []
    real = sniff.parse_client_hello
    monkeypatch.setattr(sniff, "parse_client_hello", lambda *a: calls.append(1) or real(*a))
    data = _refragment(hellos["python-fresh"], 1)
    w = sniff.HelloWatcher()
    for i in range(len(data)):
        w.feed(data[i:i + 1])
    assert w.result is not None and w.result.hello == _facts("python-fresh", hellos["python-fresh"])
    assert len(calls) <= 5, len(calls)
