"""Decoders: one real-looking line per server, version and OpenSSL generation -> (role, category); detection;
the candidate regex finds every line the decoder classifies; decoders never raise on any bytes."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlslog import decoders
from tlslog.classify import CONT, EVENT, HEAD
from tlslog.decoders import Ctx
from tlslog.timeparse import Clock

AP24 = "[Fri Nov 27 10:50:52.123456 2026] [ssl:info] [pid 1234:tid 140234] "
AP22 = "[Wed Oct 11 14:32:52 2000] [error] "
NG = "2026/11/27 10:50:52 [info] 1234#1234: *5 "
NG_TAIL = ", client: 127.0.0.1, server: 0.0.0.0:8443"

# (format, line, role, category); role None = the decoder ignores the line
CASES = [
    # Apache 2.4 mod_ssl, OpenSSL 3 (lines as ssl_engine_io.c / ssl_engine_log.c write them, see STYLE.md §1)
    ("apache_error", AP24 + "[client 127.0.0.1:50000] AH02008: SSL library error 1 in handshake (server a:443)",
     HEAD, "other_tls_error"),
    ("apache_error", AP24 + "SSL Library Error: error:0A000412:SSL routines::sslv3 alert bad certificate "
     "(SSL alert number 42)", CONT, "client_rejected_cert"),
    ("apache_error", AP24 + "[client 127.0.0.1:50000] AH01996: SSL handshake failed: HTTP spoken on HTTPS port; "
     "trying to send HTML error page", HEAD, "plain_http_on_tls_port"),
    ("apache_error", AP24 + "(104)Connection reset by peer: [client 127.0.0.1:5] AH02007: SSL handshake interrupted "
     "by system [Hint: Stop button pressed in browser?!]", HEAD, "handshake_eof_or_reset"),
    ("apache_error", AP24 + "(70007)The timeout specified has expired: [client 127.0.0.1:5] AH02007: SSL handshake "
     "interrupted by system [Hint: Stop button pressed in browser?!]", HEAD, "handshake_timeout"),
    ("apache_error", AP24 + "[client 127.0.0.1:5] AH02039: Certificate Verification: Error (20): unable to get "
     "local issuer certificate", HEAD, "client_cert_invalid"),
    ("apache_error", AP24 + "[client 127.0.0.1:5] AH01964: Connection to child 1 established (server a:443)",
     None, None),
    # after the handshake (ssl_engine_io.c); the 2019 httpd users@ list report shows AH01991 with errno 70007
    ("apache_error", AP24 + "(70007)The timeout specified has expired: [client 127.0.0.1:5] AH01991: SSL input "
     "filter read failed.", HEAD, None),
    ("apache_error", AP24 + "[client 127.0.0.1:5] AH01992: SSL library error 1 reading data", HEAD, None),
    # mod_proxy (2.4)
    ("apache_error", "[Fri Nov 27 10:50:55.000000 2026] [proxy:error] [pid 1:tid 2] (111)Connection refused: "
     "AH00957: HTTP: attempt to connect to 127.0.0.1:9 (127.0.0.1:9) failed", HEAD, "backend_unavailable"),
    ("apache_error", "[Fri Nov 27 10:50:55.000000 2026] [proxy_http:error] [pid 1:tid 2] [client 127.0.0.1:5] "
     "AH01114: HTTP: failed to make connection to backend: 127.0.0.1", HEAD, "backend_unavailable"),
    ("apache_error", "[Fri Nov 27 10:50:55.000000 2026] [proxy_http:error] [pid 1:tid 2] (70007)The timeout "
     "specified has expired: [client 127.0.0.1:5] AH01102: error reading status line from remote server "
     "127.0.0.1:8081", HEAD, "backend_timeout"),
    ("apache_error", "[Fri Nov 27 10:50:55.000000 2026] [proxy:error] [pid 1:tid 2] AH00940: HTTP: disabled "
     "connection for (127.0.0.1:9)", EVENT, "backend_unavailable"),
    # startup (2.4): ssl_engine_init.c / ssl_engine_pphrase.c / util_mutex.c messages
    ("apache_error", "[Fri Nov 27 10:50:56.000000 2026] [ssl:emerg] [pid 9:tid 9] AH02565: Certificate and private "
     "key a:443:0 from /x.crt and /x.key do not match", HEAD, "key_cert_mismatch"),
    ("apache_error", "[Fri Nov 27 10:50:56.000000 2026] [ssl:emerg] [pid 9:tid 9] AH02580: Init: Pass phrase "
     "incorrect for key a:443:0", HEAD, "passphrase_failure"),
    ("apache_error", "[Fri Nov 27 10:50:56.000000 2026] [core:emerg] [pid 9:tid 9] (13)Permission denied: AH00023: "
     "Couldn't create the ssl-cache mutex (file /run/x/ssl-cache.9)", HEAD, "mutex_permission_denied"),
    ("apache_error", "[Fri Nov 27 10:50:56.000000 2026] [ssl:emerg] [pid 9:tid 9] AH01874: Could not initialize "
     "session cache. Exiting.", HEAD, "session_cache_error"),
    ("apache_error", "[Fri Nov 27 10:50:56.000000 2026] [ssl:emerg] [pid 9:tid 9] AH02562: Failed to configure "
     "certificate a:443:0 (with chain), check /x.crt", HEAD, "cert_file_unreadable"),
    ("apache_error", "[Fri Nov 27 10:50:56.000000 2026] [ssl:info] [pid 9:tid 9] AH01887: Init: Initializing "
     "(virtual) servers for SSL", None, None),
    # Apache 2.0/2.2 (no pid, no module); the mutex lines are the mod_ssl FAQ's, verbatim
    ("apache22_error", AP22 + "mod_ssl: Child could not open SSLMutex lockfile /opt/apache/logs/ssl_mutex.18332 "
     "(System error follows)", HEAD, "mutex_permission_denied"),
    ("apache22_error", AP22 + "System: Permission denied (errno: 13)", CONT, None),
    ("apache22_error", "[Wed Oct 11 14:32:52 2000] [info] [client 1.2.3.4] SSL library error 1 in handshake "
     "(server www.example.com:443)", HEAD, "other_tls_error"),
    ("apache22_error", AP22 + "Init: Pass phrase incorrect", HEAD, "passphrase_failure"),
    ("apache22_error", "[Tue Jan 26 16:06:29 2016] [info] [client 172.16.2.176] (70014)End of file found: SSL input "
     "filter read failed.", HEAD, None),
    ("apache22_error", AP22 + "Unable to configure RSA server private key", HEAD, "key_cert_mismatch"),
    ("apache22_error", AP22 + "(111)Connection refused: proxy: HTTP: attempt to connect to 127.0.0.1:8080 "
     "(localhost) failed", HEAD, "backend_unavailable"),
    # tlsfront (docs/logs.md examples)
    ("tlsfront_error", "[Fri Nov 27 09:02:59.123456 2026] [ssl:info] [pid 1234] [client 127.0.0.1:50000] TLSF0201: "
     "SSL handshake failed (server www.example.test:443): reason=no_shared_cipher alert=- SSL Library Error: SSL "
     "routines::no shared cipher", EVENT, "no_shared_cipher"),
    ("tlsfront_error", "[Fri Nov 27 09:02:59.423456 2026] [ssl:info] [pid 1234] [client 127.0.0.1:50006] TLSF0201: "
     "SSL handshake failed (server www.example.test:443): reason=unsupported_protocol alert=- SSL Library Error: SSL "
     "routines::unsupported protocol", EVENT, "protocol_mismatch"),
    ("tlsfront_error", "[Fri Nov 27 09:03:00.000001 2026] [proxy:error] [pid 1234] [client 127.0.0.1:50016] "
     "TLSF0301: backend 127.0.0.1:8081 refused the connection (vhost www.example.test:443): Connection refused; "
     "answered 502", EVENT, "backend_unavailable"),
    ("tlsfront_error", "[Fri Nov 27 09:03:00.000001 2026] [proxy:warn] [pid 1234] TLSF0304: backend 127.0.0.1:8081 "
     "marked down for 10s (vhost www.example.test:443)", None, None),
    # nginx 1.22 (ngx_event_openssl.c / ngx_http_request.c / ngx_http_upstream.c messages)
    ("nginx_error", NG + "SSL_do_handshake() failed (SSL: error:0A000418:SSL routines::tlsv1 alert unknown ca:SSL "
     "alert number 48) while SSL handshaking" + NG_TAIL, EVENT, "client_rejected_cert"),
    ("nginx_error", NG + "SSL_do_handshake() failed (SSL: error:0A0000C1:SSL routines::no shared cipher) while SSL "
     "handshaking" + NG_TAIL, EVENT, "no_shared_cipher"),
    ("nginx_error", NG + "client sent plain HTTP request to HTTPS port while reading client request headers" + NG_TAIL,
     EVENT, "plain_http_on_tls_port"),
    ("nginx_error", NG + "client sent no required SSL certificate while reading client request headers" + NG_TAIL,
     EVENT, "client_cert_missing"),
    ("nginx_error", NG + "client SSL certificate verify error: (20:unable to get local issuer certificate) while "
     "reading client request headers" + NG_TAIL, EVENT, "client_cert_invalid"),
    ("nginx_error", NG + "peer closed connection in SSL handshake (104: Connection reset by peer) while SSL "
     "handshaking" + NG_TAIL, EVENT, "handshake_eof_or_reset"),
    ("nginx_error", NG + "client timed out (110: Connection timed out) while SSL handshaking" + NG_TAIL, EVENT,
     "handshake_timeout"),
    ("nginx_error", "2026/11/27 10:50:52 [error] 1234#1234: *7 connect() failed (111: Connection refused) while "
     "connecting to upstream, client: 127.0.0.1, server: localhost, request: \"GET / HTTP/1.1\", upstream: "
     "\"http://127.0.0.1:9/\", host: \"127.0.0.1:8443\"", HEAD, "backend_unavailable"),
    ("nginx_error", "2026/11/27 10:50:52 [error] 1234#1234: *8 upstream timed out (110: Connection timed out) while "
     "reading response header from upstream, client: 127.0.0.1, server: localhost, request: \"GET /slow HTTP/1.1\"",
     HEAD, "backend_timeout"),
    ("nginx_error", "2026/11/27 10:50:52 [emerg] 1234#1234: cannot load certificate key \"/k.pem\": "
     "PEM_read_bio_PrivateKey() failed (SSL: error:1400006B:UI routines::processing error:while reading strings "
     "error:0480006D:PEM routines::problems getting password)", EVENT, "passphrase_failure"),
    ("nginx_error", NG + "SSL_read() failed (SSL: error:0A000126:SSL routines::unexpected eof while reading)" + NG_TAIL,
     None, None),
    # boa issue 555 (OpenSSL 1.0, 2014): the client rejected the certificate after the handshake
    ("nginx_error", NG + "SSL_read() failed (SSL: error:14094418:SSL routines:SSL3_READ_BYTES:tlsv1 alert unknown "
     "ca:SSL alert number 48) while processing SPDY" + NG_TAIL, EVENT, "client_rejected_cert"),
    # HAProxy: doc/configuration.txt 8.2.3 httplog example, a 503 <NOSRV>, a 504, and connection-error lines
    ("haproxy", "haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 "
     "2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} \"GET /index.html HTTP/1.1\"", None, None),
    ("haproxy", "Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in "
     "http-in/<NOSRV> 0/-1/-1/-1/0 503 212 - - SC-- 0/0/0/0/0 0/0 \"GET / HTTP/1.1\"", EVENT, "backend_unavailable"),
    ("haproxy", "10.0.1.2:33318 [06/Feb/2009:12:14:15.000] http-in be/srv1 0/0/0/-1/30001 504 194 - - sH-- "
     "1/1/0/0/0 0/0 \"GET /slow HTTP/1.1\"", EVENT, "backend_timeout"),
    ("haproxy", "127.0.0.1:51234 [27/Nov/2026:10:50:52.123] https-in/1: SSL handshake failure", EVENT,
     "other_tls_error"),
    ("haproxy", "127.0.0.1:51235 [27/Nov/2026:10:50:52.123] https-in/1: Timeout during SSL handshake", EVENT,
     "handshake_timeout"),
    ("haproxy", "127.0.0.1:51236 [27/Nov/2026:10:50:52.123] https-in/1: Connection closed during SSL handshake",
     EVENT, "handshake_eof_or_reset"),
    # error-log-format with %[fc_err]/%[ssl_fc_err,hex]/...
    ("haproxy", "127.0.0.1:55786 [27/Nov/2026:11:03:05.376] main~ 1/1 34/000000000A000418/0/0/0 -/TLSv1.3/"
     "TLS_AES_256_GCM_SHA384 \"error:0A000418:SSL routines::tlsv1 alert unknown ca\"", EVENT, "client_rejected_cert"),
    ("haproxy", "127.0.0.1:55838 [27/Nov/2026:11:03:05.842] main~ 1/1 26/0000000000000000/0/0/0 -/TLSv1.3/(NONE) "
     "\"\"", EVENT, "handshake_timeout"),
]


def _ctx() -> Ctx:
    return Ctx(Clock("UTC"))


@pytest.mark.parametrize("fmt, line, role, category", CASES, ids=[f"{c[0]}:{c[1][-50:]}" for c in CASES])
def test_decode_table(fmt: str, line: str, role, category):
    f = decoders.FORMATS[fmt]
    raw = line.encode()
    rec = f.decode(raw, 0, _ctx())
    if role is None:
        assert rec is None
        return
    assert rec is not None, "the decoder ignored the line"
    assert (rec.role, rec.category) == (role, category)
    # and the block-level candidate regex finds the line at all (else the decoder never sees it)
    assert any(p.search(raw + b"\n") for p in f.candidates)


def test_apache_timestamp_and_key():
    rec = decoders.FORMATS["apache_error"].decode(CASES[0][1].encode(), 7, _ctx())
    assert rec.key == b"1234:tid 140234" and rec.vhost == "a:443" and rec.pos == 7
    assert rec.time == pytest.approx(1795776652.123456)  # 2026-11-27 10:50:52.123456 UTC


DETECT = [
    ("apache_error", AP24 + "AH01964: x\n" + AP24 + "AH01998: y\n"),
    ("apache22_error", AP22 + "[client 1.2.3.4] File does not exist: /x\n"),
    ("tlsfront_error", "[Fri Nov 27 09:02:59.123456 2026] [core:notice] [pid 1] TLSF0001: tlsfront/0.1 configured\n"),
    ("nginx_error", NG + "x\n"),
    ("haproxy", CASES[-7][1] + "\n"),
    ("access", '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326\n'),
    ("access", 'www.example.com:443 127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 2326 "-" "curl"\n'),
    ("ssl_request", '[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.3 TLS_AES_128_GCM_SHA256 "GET / HTTP/1.1" 512\n'),
]


@pytest.mark.parametrize("expected, text", DETECT, ids=[d[0] + str(i) for i, d in enumerate(DETECT)])
def test_detect(expected: str, text: str):
    fmt = decoders.detect(text.encode())
    assert fmt is not None and fmt.name == expected


def test_detect_junk_is_none():
    assert decoders.detect(b"\x00\x01\x02 binary junk\nnot a log line\n") is None


def test_access_and_ssl_request_stats():
    ctx = _ctx()
    block = (b'127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 "-" "x"\n'
             b'127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /nope HTTP/1.0" 404 20 "-" "x"\n'
             b'127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 502 0 "-" "x"\n')
    assert decoders.ACCESS.block_stats(block, ctx, 0, len(block)) == 3
    assert dict(ctx.status) == {"2xx": 1, "4xx": 1, "5xx": 1}
    block = (b'[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.3 TLS_AES_128_GCM_SHA256 "GET / HTTP/1.1" 512 0.001 new\n'
             b'[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1 ECDHE-RSA-AES128-SHA "GET / HTTP/1.1" - 0.002 reused\n')
    assert decoders.SSL_REQUEST.block_stats(block, ctx, 0, len(block)) == 2
    assert ctx.protocols == {("-", "TLSv1.3"): 1, ("-", "TLSv1"): 1}


# ssl_request_log lines -> the (vhost, protocol) and (vhost, cipher) each is counted under
SSLREQ_ROWS = [
    ("tlsfront_with_vhost",  # tlsfront since the vhost field (docs/logs.md): the vhost is the last field
     '[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1 ECDHE-RSA-AES128-SHA "GET / HTTP/1.0" - 0.001234 new '
     'legacy.test:8443', "legacy.test:8443", "TLSv1", "ECDHE-RSA-AES128-SHA"),
    ("tlsfront_with_vhost_quoted_request",  # a '"' escaped inside %r, and new|reused in the request, fool nothing
     '[27/Nov/2026:09:02:59 +0000] ::1 TLSv1.3 TLS_AES_128_GCM_SHA256 "GET /\\" 1 0.1 new x HTTP/1.1" 512 '
     '0.000311 reused www.example.test:443', "www.example.test:443", "TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("tlsfront_unknown_vhost",
     '[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.2 AES128-SHA "GET / HTTP/1.1" 12 0.000100 new -',
     "-", "TLSv1.2", "AES128-SHA"),
    ("tlsfront_before_vhost_field",  # older tlsfront lines end at new|reused
     '[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256 "GET / HTTP/1.1" - 0.000311 reused',
     "-", "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("mod_ssl_default",  # httpd-ssl.conf: no vhost (one file per <VirtualHost>)
     '[27/Nov/2026:09:02:59 +0000] 10.0.0.1 TLSv1.3 TLS_AES_256_GCM_SHA384 "GET /new reused HTTP/1.1" 512',
     "-", "TLSv1.3", "TLS_AES_256_GCM_SHA384"),
    ("mod_ssl_plain_http",  # plain HTTP to the TLS port: "-" protocol and cipher
     '[27/Nov/2026:09:02:59 +0000] 10.0.0.1 - - "GET / HTTP/1.1" 3230', "-", "-", "-"),
    ("leading_vhost_variant",  # %t %v %h ...
     '[27/Nov/2026:09:02:59 +0000] www.example.com 10.0.0.1 TLSv1.2 AES256-SHA "GET / HTTP/1.1" 5',
     "www.example.com", "TLSv1.2", "AES256-SHA"),
]


@pytest.mark.parametrize("line, vhost, protocol, cipher", [r[1:] for r in SSLREQ_ROWS],
                         ids=[r[0] for r in SSLREQ_ROWS])
@pytest.mark.parametrize("newline", ["\n", "\r\n", ""], ids=["lf", "crlf", "last_line_without_newline"])
def test_ssl_request_vhost_protocol_cipher(line: str, vhost: str, protocol: str, cipher: str, newline: str):
    ctx = _ctx()
    block = f"{line}{newline}".encode()
    assert decoders.detect(block).name == "ssl_request"
    assert decoders.SSL_REQUEST.block_stats(block, ctx, 0, len(block)) == 1
    assert (dict(ctx.protocols), dict(ctx.ciphers)) == ({(vhost, protocol): 1}, {(vhost, cipher): 1})


def test_ssl_request_block_counts_per_vhost():
    """Every row at once, in one block: each line is counted once, under its own vhost (no match runs past its line)."""
    ctx = _ctx()
    block = "".join(r[1] + "\n" for r in SSLREQ_ROWS).encode()
    assert decoders.SSL_REQUEST.block_stats(block, ctx, 0, len(block)) == len(SSLREQ_ROWS)
    assert ctx.protocols == Counter((r[2], r[3]) for r in SSLREQ_ROWS)


@pytest.mark.parametrize("fmt", sorted(decoders.FORMATS))
@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=400))
def test_decoders_never_raise(fmt: str, data: bytes):
    f = decoders.FORMATS[fmt]
    ctx = _ctx()
    if f.decode is not None:
        for line in data.split(b"\n"):
            f.decode(line, 0, ctx)
            # and the same with a valid prefix, so the deeper grammar is exercised too
            f.decode(AP24.encode() + line, 0, ctx)
            f.decode(NG.encode() + line, 0, ctx)
    understood = f.understood(data, 0, len(data), data.count(b"\n") + (not data.endswith(b"\n")))
    assert isinstance(understood, int)
    if f.block_stats is not None:
        f.block_stats(data, ctx, 0, len(data))
