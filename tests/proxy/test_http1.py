"""Sans-IO tests of tlsfront.http1: requests and responses fed whole, byte by byte, split anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsfront import http1
from tlsfront.http1 import END, ProtocolError, RequestReader, ResponseReader


def summarize(events: list) -> list:
    """Events as comparable values; consecutive body pieces merged (splits differ)."""
    out: list = []
    for e in events:
        if type(e) is bytes:
            if out and isinstance(out[-1], bytes):
                out[-1] += e
            else:
                out.append(bytes(e))
        elif e is END:
            out.append("END")
        elif isinstance(e, http1.Request):
            out.append(("REQ", e.method, e.target, e.version, tuple(e.headers), e.host,
                        e.content_length, e.chunked, e.keep_alive, e.expect_continue))
        else:
            out.append(("RESP", e.status, e.reason, e.version, tuple(e.headers), e.content_length,
                        e.chunked, e.keep_alive, e.until_close, e.no_body))
    return out


def feed_pieces(reader, pieces) -> list:
    events: list = []
    for p in pieces:
        events += reader.feed(p)
    return summarize(events)


GOOD = [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", [("GET", b"/", b"")]),
    (b"POST /u?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", [("POST", b"/u?x=1", b"hello")]),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer-X: 1\r\n\r\n", [("POST", b"/", b"abcde")]),
    (b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
     [("GET", b"/1", b""), ("GET", b"/2", b"")]),
    (b"GET / HTTP/1.0\r\n\r\n", [("GET", b"/", b"")]),
    (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", [("OPTIONS", b"*", b"")]),
    (b"GET http://b.example/p?q HTTP/1.1\r\nHost: a\r\n\r\n", [("GET", b"/p?q", b"")]),
]


@pytest.mark.parametrize("data,expected", GOOD, ids=[repr(g[0][:30]) for g in GOOD])
def test_good_requests_whole_and_byte_by_byte(data, expected):
    whole = feed_pieces(RequestReader(), [data])
    bytewise = feed_pieces(RequestReader(), [data[i:i + 1] for i in range(len(data))])
    assert whole == bytewise
    got = []
    body = b""
    for e in whole:
        if isinstance(e, tuple):
            current = [e[1].decode(), e[2], b""]
            got.append(current)
        elif isinstance(e, bytes):
            got[-1][2] += e
    assert [tuple(g) for g in got] == expected


def test_request_fields():
    ev = RequestReader().feed(b"PUT /x HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\n"
                              b"Expect: 100-continue\r\nConnection: close\r\n\r\nab")
    req = ev[0]
    assert (req.method, req.target, req.version, req.host) == (b"PUT", b"/x", b"1.1", b"h:1")
    assert req.content_length == 2 and not req.chunked and req.expect_continue
    assert req.keep_alive is False
    assert ev[1:] == [b"ab", END]


def test_absolute_form_replaces_host():
    req = RequestReader().feed(b"GET http://real.example:8080/p HTTP/1.1\r\nHost: fake\r\n\r\n")[0]
    assert req.host == b"real.example:8080" and req.target == b"/p"


def test_http10_keep_alive():
    req = RequestReader().feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0]
    assert req.keep_alive and req.version == b"1.0"


# What must be refused and with which status (issue 11's list).
BAD = [
    ("CL+TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("TE+CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    ("two CL", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\na", 400),
    ("CL sign", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na", 400),
    ("TE gzip,chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE chunked,gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("TE xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
    ("TE twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("TE on 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400),
    ("CTL in value", b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n", 400),
    ("CTL in name", b"GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n", 400),
    ("empty name", b"GET / HTTP/1.1\r\n: a\r\n\r\n", 400),
    ("bad method", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("HTTP/0.9", b"GET /\r\n\r\n", 400),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
    ("HTTP/2.0 line", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("relative target", b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("userinfo authority", b"GET http://u@h/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("no Host on 1.1", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
    ("two Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    ("Expect other", b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
    ("chunk size overflow", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"FFFFFFFFFFFFFFFFF1\r\nabc\r\n", 400),
    ("chunk size junk", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n", 400),
    ("chunk data too long", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 400),
    ("upgrade with body", b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n"
                          b"Content-Length: 30\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
]


@pytest.mark.parametrize("name,data,status", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_refused(name, data, status):
    with pytest.raises(ProtocolError) as info:
        RequestReader().feed(data)
    assert info.value.status == status
    assert info.value.detail  # says what was wrong


@pytest.mark.parametrize("name,data,status", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_refused_byte_by_byte(name, data, status):
    reader = RequestReader()
    with pytest.raises(ProtocolError) as info:
        for i in range(len(data)):
            reader.feed(data[i:i + 1])
    assert info.value.status == status


def test_reader_stays_failed():
    r = RequestReader()
    with pytest.raises(ProtocolError):
        r.feed(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    with pytest.raises(ProtocolError):
        r.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def test_limits_header_count_and_size_give_431():
    limits = http1.ReaderLimits(max_header_count=5, max_header_bytes=200)
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(5)) + b"\r\n"
    with pytest.raises(ProtocolError) as info:
        RequestReader(limits).feed(many)
    assert info.value.status == 431
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 300 + b"\r\n\r\n"
    with pytest.raises(ProtocolError) as info:
        RequestReader(limits).feed(big)
    assert info.value.status == 431


def test_unterminated_header_line_is_bounded():
    """A header line that never ends (slowloris-style growth) is refused once over the limit."""
    r = RequestReader(http1.ReaderLimits(max_header_bytes=1000))
    r.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: ")
    with pytest.raises(ProtocolError) as info:
        for _ in range(20):
            r.feed(b"v" * 100)
    assert info.value.status == 431


def test_long_target_gives_414():
    with pytest.raises(ProtocolError) as info:
        RequestReader(http1.ReaderLimits(max_target_bytes=50)).feed(b"GET /" + b"a" * 60 + b" HTTP/1.1\r\n")
    assert info.value.status == 414


def test_body_limit_gives_413_for_length_and_chunks():
    lim = http1.ReaderLimits(max_body_bytes=10)
    with pytest.raises(ProtocolError) as info:
        RequestReader(lim).feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    assert info.value.status == 413
    r = RequestReader(lim)
    r.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n")
    with pytest.raises(ProtocolError) as info:
        r.feed(b"8\r\n12345678\r\n")
    assert info.value.status == 413


def test_upgrade_request_without_body_is_ordinary_and_parsing_continues():
    data = (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    ev = summarize(RequestReader().feed(data))
    assert [e[2] for e in ev if isinstance(e, tuple)] == [b"/", b"/2"]


def test_trailers_are_dropped():
    ev = RequestReader().feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"1\r\na\r\n0\r\nX-Trailer: evil\r\n\r\n")
    assert ev[0].headers == [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")]
    assert ev[1:] == [b"a", END]


# -- hypothesis: any split gives the same events -------------------------------------------

PIPELINE = (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nwxyz"
            b"PUT /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1a\r\n"
            + b"q" * 26 + b"\r\n0\r\n\r\n"
            b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
PIPELINE_EVENTS = feed_pieces(RequestReader(), [PIPELINE])


@given(st.lists(st.integers(min_value=0, max_value=len(PIPELINE)), max_size=12))
@settings(max_examples=200, deadline=None)
def test_any_split_gives_same_events(cuts):
    cuts = sorted(set(cuts))
    pieces, last = [], 0
    for c in cuts:
        pieces.append(PIPELINE[last:c])
        last = c
    pieces.append(PIPELINE[last:])
    assert feed_pieces(RequestReader(), pieces) == PIPELINE_EVENTS


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_garbage_raises_only_protocol_error(data):
    try:
        RequestReader().feed(data)
    except ProtocolError as exc:
        assert 400 <= exc.status < 600


# -- responses -------------------------------------------------------------------------------

def test_response_with_length_chunked_and_until_close():
    r = ResponseReader()
    r.expect(b"GET")
    ev = r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: y\r\n\r\nabc")
    assert ev[0].status == 200 and ev[0].content_length == 3 and ev[0].keep_alive
    assert ev[1:] == [b"abc", END]
    r.expect(b"GET")
    ev = r.feed(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    assert ev[0].chunked and ev[0].content_length is None and ev[1:] == [b"hi", END]
    r2 = ResponseReader()
    r2.expect(b"GET")
    ev = r2.feed(b"HTTP/1.0 200 OK\r\n\r\nabc")
    assert ev[0].until_close and not ev[0].keep_alive and ev[1:] == [b"abc"]


def test_response_interim_1xx_is_skipped():
    r = ResponseReader()
    r.expect(b"POST")
    ev = summarize(r.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
    assert ev[0][1] == 204 and ev[0][9] is True and ev[1] == "END"


def test_response_to_head_has_no_body_whatever_length():
    r = ResponseReader()
    r.expect(b"HEAD")
    ev = r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    assert ev[0].no_body and ev[0].content_length == 1000 and ev[1] is END


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    b"HTTX/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
], ids=["CL+TE", "TE gzip", "101", "bad version", "NUL"])
def test_bad_responses_are_502(data):
    r = ResponseReader()
    r.expect(b"GET")
    with pytest.raises(ProtocolError) as info:
        r.feed(data)
    assert info.value.status == 502


@given(st.lists(st.integers(min_value=0, max_value=80), max_size=8))
@settings(max_examples=100, deadline=None)
def test_response_any_split(cuts):
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
    whole = ResponseReader()
    whole.expect(b"GET")
    expected = summarize(whole.feed(data))
    r = ResponseReader()
    r.expect(b"GET")
    pieces, last = [], 0
    for c in sorted(set(min(c, len(data)) for c in cuts)):
        pieces.append(data[last:c])
        last = c
    pieces.append(data[last:])
    assert feed_pieces(r, pieces) == expected


# -- serialisation -------------------------------------------------------------------------

def test_serialisation_round_trips():
    head = http1.request_head_bytes(b"POST", b"/x", [(b"Host", b"a"), (b"Content-Length", b"2")])
    assert head == b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"
    ev = RequestReader().feed(head + b"hi")
    assert ev[0].headers == [(b"Host", b"a"), (b"Content-Length", b"2")] and ev[1] == b"hi"
    assert b"".join(http1.chunk(b"hello")) == b"5\r\nhello\r\n"
    resp = http1.simple_response(502, b"bad\n")
    assert resp.startswith(b"HTTP/1.1 502 Bad Gateway\r\n") and resp.endswith(b"\r\n\r\nbad\n")
    assert b"Content-Length: 4\r\n" in resp and b"Connection: close\r\n" in resp


def test_error_keeps_the_complete_requests_before_it():
    with pytest.raises(ProtocolError) as info:
        RequestReader().feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\n"
                             b"Content-Length: 3\r\n\r\nabGARBAGE / HTTP/1.1\r\n\r\n")
    assert [e.target if isinstance(e, http1.Request) else e for e in info.value.events] == \
        [b"/1", END, b"/2", b"abG", END]
    with pytest.raises(ProtocolError) as info:  # a partial request before the fault is dropped
        RequestReader().feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
    assert [e.target if isinstance(e, http1.Request) else e for e in info.value.events] == [b"/1", END]


def test_response_trailers_are_dropped_not_checked_as_headers():
    r = ResponseReader()
    r.expect(b"GET")
    ev = r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"
                b"X-Checksum: abc\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert ev[0].headers == [(b"Transfer-Encoding", b"chunked")] and ev[1:] == [b"hi", END]


@pytest.mark.parametrize("make, data", [
    (lambda: http1.RequestReader(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    (lambda: http1.ResponseReader(), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
])
def test_close_breaks_the_parser_cycle(make, data):
    """llhttp's parser holds the reader's bound callbacks: without close() a reader (and the
    messages it holds) is freed only by the cyclic collector (7% of a worker's CPU under full
    handshakes, docs/benchmarks.md)."""
    import gc
    import weakref

    gc.disable()
    try:
        kept = make()
        kept.feed(data)
        kept_ref = weakref.ref(kept)
        del kept
        assert kept_ref() is not None  # the cycle this guards against (the test can fail)
        closed = make()
        closed.feed(data)
        closed.close()
        closed_ref = weakref.ref(closed)
        del closed
        assert closed_ref() is None
    finally:
        gc.enable()
        gc.collect()
