"""Request smuggling and desync payloads sent raw over TLS to `tlsfront serve`.

For each payload: what the client got (statuses in order, whether the connection was
closed) and exactly which complete requests the recording backend received (never more
than the client could have meant). Issue 11 extends this table; the classes are CL.TE,
TE.CL, TE.TE variants, chunk tricks, trailers, pipelining, request-line and header junk.
"""

from __future__ import annotations

import socket
import time

import pytest

from helpers import client_context, free_ports, read_response, start_backend, start_proxy

H = b"Host: app.test\r\n"


def req(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    return line + b"\r\n" + H + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked"
E = []  # backend receives nothing

# (id, payload, statuses the client gets in order, connection closed after, backend requests)
CASES = [
    # -- CL.TE / TE.CL: both framings: refused, never guessed
    ("CL.TE", req(b"POST /a HTTP/1.1", b"Content-Length: 6", CHUNKED, body=b"0\r\n\r\nG"), [400], True, E),
    ("TE.CL", req(b"POST /a HTTP/1.1", CHUNKED, b"Content-Length: 3", body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"), [400], True, E),
    ("CL.CL same", req(b"POST /a HTTP/1.1", b"Content-Length: 5", b"Content-Length: 5", body=b"hello"), [400], True, E),
    ("CL.CL differ", req(b"POST /a HTTP/1.1", b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"), [400], True, E),
    ("CL list", req(b"POST /a HTTP/1.1", b"Content-Length: 5, 5", body=b"hello"), [400], True, E),
    ("CL sign", req(b"POST /a HTTP/1.1", b"Content-Length: +5", body=b"hello"), [400], True, E),
    ("CL overflow", req(b"POST /a HTTP/1.1", b"Content-Length: 99999999999999999999999"), [400], True, E),
    ("CL empty", req(b"POST /a HTTP/1.1", b"Content-Length: "), [400], True, E),
    ("CL leading zeros", req(b"POST /a HTTP/1.1", b"Content-Length: 0005", body=b"hello"), [200], False,
     [b"POST /a body=5"]),
    # -- TE.TE: obfuscated Transfer-Encoding
    ("TE gzip, chunked", req(b"POST /a HTTP/1.1", b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), [400], True, E),
    ("TE chunked, gzip", req(b"POST /a HTTP/1.1", b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n"), [400], True, E),
    ("TE xchunked", req(b"POST /a HTTP/1.1", b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), [400], True, E),
    ("TE twice", req(b"POST /a HTTP/1.1", CHUNKED, b"Transfer-Encoding: identity", body=b"0\r\n\r\n"), [400], True, E),
    ("TE chunked twice", req(b"POST /a HTTP/1.1", b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), [400], True, E),
    ("TE quoted", req(b"POST /a HTTP/1.1", b'Transfer-Encoding: "chunked"', body=b"0\r\n\r\n"), [400], True, E),
    ("TE NUL", req(b"POST /a HTTP/1.1", b"Transfer-Encoding: chunked\x00", body=b"0\r\n\r\n"), [400], True, E),
    ("TE vertical tab", req(b"POST /a HTTP/1.1", b"Transfer-Encoding:\x0bchunked", body=b"0\r\n\r\n"), [400], True, E),
    ("TE obs-fold", req(b"POST /a HTTP/1.1", b"Transfer-Encoding:\r\n chunked", body=b"0\r\n\r\n"), [400], True, E),
    ("TE space before colon", req(b"POST /a HTTP/1.1", b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"), [400], True, E),
    ("TE on HTTP/1.0", b"POST /a HTTP/1.0\r\n" + CHUNKED + b"\r\n\r\n0\r\n\r\n", [400], True, E),
    ("TE tab OWS (valid)", req(b"POST /a HTTP/1.1", b"Transfer-Encoding:\tchunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
     [200], False, [b"POST /a body=5"]),
    ("TE upper case (valid)", req(b"POST /a HTTP/1.1", b"transfer-encoding: CHUNKED", body=b"5\r\nhello\r\n0\r\n\r\n"),
     [200], False, [b"POST /a body=5"]),
    # -- chunk framing tricks
    ("chunk bare LF", req(b"POST /a HTTP/1.1", CHUNKED, body=b"5\nhello\n0\n\n"), [400], True, E),
    ("chunk negative", req(b"POST /a HTTP/1.1", CHUNKED, body=b"-5\r\nhello\r\n0\r\n\r\n"), [400], True, E),
    ("chunk 0x prefix", req(b"POST /a HTTP/1.1", CHUNKED, body=b"0x5\r\nhello\r\n0\r\n\r\n"), [400], True, E),
    ("chunk overflow", req(b"POST /a HTTP/1.1", CHUNKED, body=b"1" * 20 + b"\r\nhello\r\n0\r\n\r\n"), [400], True, E),
    ("chunk size junk", req(b"POST /a HTTP/1.1", CHUNKED, body=b"5 x\r\nhello\r\n0\r\n\r\n"), [400], True, E),
    ("chunk data too long", req(b"POST /a HTTP/1.1", CHUNKED, body=b"5\r\nhelloXX\r\n0\r\n\r\n"), [400], True, E),
    ("chunk ext bare LF", req(b"POST /a HTTP/1.1", CHUNKED, body=b"5;a=\nb\r\nhello\r\n0\r\n\r\n"), [400], True, E),
    ("chunk ext (valid, dropped)", req(b"POST /a HTTP/1.1", CHUNKED, body=b"5;a=\"x;y\"\r\nhello\r\n0\r\n\r\n"),
     [200], False, [b"POST /a body=5"]),
    # -- trailers
    ("trailer Content-Length", req(b"POST /a HTTP/1.1", CHUNKED,
                                   body=b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n" + req(b"GET /b HTTP/1.1")),
     [400], True, E),
    ("trailer (valid, dropped)", req(b"POST /a HTTP/1.1", CHUNKED, body=b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
     [200], False, [b"POST /a body=5"]),
    # -- pipelining and desync
    ("pipelined GETs", req(b"GET /1 HTTP/1.1") + req(b"GET /2 HTTP/1.1"), [200, 200], False,
     [b"GET /1 body=0", b"GET /2 body=0"]),
    ("pipelined POST then GET", req(b"POST /p HTTP/1.1", b"Content-Length: 5", body=b"hello") + req(b"GET /g HTTP/1.1"),
     [200, 200], False, [b"POST /p body=5", b"GET /g body=0"]),
    ("CL swallows next request", req(b"POST /a HTTP/1.1", b"Content-Length: 10", body=b"hello")
     + req(b"GET /b HTTP/1.1"), [200, 400], True, [b"POST /a body=10"]),
    ("GET with body", req(b"GET /g HTTP/1.1", b"Content-Length: 5", body=b"hello"), [200], False, [b"GET /g body=5"]),
    ("garbage after request", req(b"GET / HTTP/1.1") + b"XYZ\r\n\r\n", [200, 400], True, [b"GET / body=0"]),
    ("HTTP/1.0 POST without length", b"POST /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + req(b"GET /b HTTP/1.1"),
     [200, 200], False, [b"POST /a body=0", b"GET /b body=0"]),
    # -- request line and header junk
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: a\n\n", [400], True, E),
    ("NUL in header value", req(b"GET / HTTP/1.1", b"X: a\x00b"), [400], True, E),
    ("CR in header value", req(b"GET / HTTP/1.1", b"X: a\rb"), [400], True, E),
    ("space in header name", req(b"GET / HTTP/1.1", b"X Foo: b"), [400], True, E),
    ("first header folded", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", [400], True, E),
    ("lower-case method", req(b"get / HTTP/1.1"), [400], True, E),
    ("lower-case version", req(b"GET / http/1.1"), [400], True, E),
    ("HTTP/0.9", b"GET /\r\n\r\n", [400], True, E),
    ("CR in target", req(b"GET /a\rb HTTP/1.1"), [400], True, E),
    ("two Host headers", req(b"GET / HTTP/1.1", b"Host: evil"), [400], True, E),
    ("no Host on 1.1", b"GET / HTTP/1.1\r\n\r\n", [400], True, E),
    ("absolute-form", req(b"GET http://other.test/p?q=1 HTTP/1.1"), [200], False, [b"GET /p?q=1 body=0"]),
    ("CONNECT", req(b"CONNECT app.test:443 HTTP/1.1"), [405], True, E),
    ("Upgrade with body", req(b"POST /u HTTP/1.1", b"Connection: Upgrade", b"Upgrade: websocket",
                              b"Content-Length: 36", body=req(b"GET /smuggled HTTP/1.1")), [400], True, E),
    ("Upgrade without body", req(b"GET /u HTTP/1.1", b"Connection: Upgrade", b"Upgrade: h2c") + req(b"GET /v HTTP/1.1"),
     [200, 200], False, [b"GET /u body=0", b"GET /v body=0"]),
    ("too many headers", req(b"GET / HTTP/1.1", *[b"X-%d: 1" % i for i in range(150)]), [431], True, E),
    ("header too large", req(b"GET / HTTP/1.1", b"X: " + b"a" * 40000), [431], True, E),
    ("Expect unknown", req(b"GET / HTTP/1.1", b"Expect: 200-ok"), [417], True, E),
]


@pytest.fixture(scope="module")
def proxy(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("smuggle")
    b_port, p_port = free_ports(2)
    record = d / "received.txt"
    record.touch()
    backend = start_backend(d, b_port, record=record)
    cfg = d / "t.toml"
    cfg.write_text(f"""
[server]
allow_root = true  # CI runs as root; serving as root is refused otherwise
workers = 1
error_log = "{d}/error.log"
[[vhost]]
listen = "127.0.0.1:{p_port}"
server_name = "app.test"
tls = {{ certificate = "{pki.server_cert}", key = "{pki.server_key}", chain = "{pki.intermediate_cert}" }}
backends = ["http://127.0.0.1:{b_port}"]
""")
    px = start_proxy(d, cfg, [("127.0.0.1", p_port)], name="smuggle-proxy")
    yield p_port, record, pki
    px.stop()
    backend.stop()


@pytest.mark.parametrize("name,payload,statuses,closed,received", CASES, ids=[c[0] for c in CASES])
def test_payload(proxy, name, payload, statuses, closed, received):
    port, record, pki = proxy
    before = record.stat().st_size
    ctx = client_context(pki.ca_cert)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(payload)
            got = [read_response(s)[0] for _ in statuses]
            assert got == statuses
            if closed:
                try:
                    assert s.recv(100) == b""
                except (ConnectionResetError, ssl_eof_errors()):
                    pass
    time.sleep(0.05)  # a request the proxy forwarded after answering would show up here
    with open(record, "rb") as f:
        f.seek(before)
        lines = [line.rsplit(b" sha256=", 1)[0] for line in f.read().splitlines()]
    assert lines == received


def ssl_eof_errors():
    import ssl
    return ssl.SSLEOFError


def test_table_is_large_enough():
    assert len(CASES) >= 40
