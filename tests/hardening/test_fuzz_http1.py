"""hypothesis on the HTTP request parser (issue 11): generated request streams, not one fixed one.

tests/proxy/test_http1.py (the data-path engineer's) already checks one fixed pipelined
stream under any split, and that random bytes raise only ProtocolError. This file adds:

- *generated* pipelines (methods, targets, field names/values, Content-Length or chunked
  bodies with random chunk sizes, extensions and trailers, HTTP/1.0 and 1.1): whole ==
  byte by byte == any split, and the events say what the generator meant;
- what the backend would get (the frontend's own recipe: headers.forward_request_headers +
  one framing field + http1.request_head_bytes) is a fixed point: it parses back to the
  same request, and it passes the recording backend's strict grammar;
- *mutated* valid streams (bytes inserted, deleted, replaced; the smuggling alphabet):
  only ProtocolError, and whenever a request does come out, what would be forwarded for it
  still passes the strict grammar: the backend never sees bytes the proxy did not understand.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recording_backend import Violation, parse_one
from tlsfront import headers, http1
from tlsfront.http1 import END, ProtocolError, RequestReader

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"PROPFIND"])
PATH_CHARS = st.sampled_from(list(b"abcXYZ019-._~!$&'()*+,;=:@/%?"))
TARGETS = st.builds(lambda cs: b"/" + bytes(cs), st.lists(PATH_CHARS, max_size=20))
NAMES = st.text(TCHAR, min_size=1, max_size=12).map(str.encode).filter(
    lambda n: n.lower() not in (b"host", b"content-length", b"transfer-encoding", b"expect", b"connection",
                                b"upgrade", b"te", b"trailer", b"keep-alive", b"proxy-connection"))
VALUE_BYTES = st.sampled_from([c for c in range(0x20, 0x7F)] + [0x09, 0x80, 0xE9, 0xFF])
VALUES = st.lists(VALUE_BYTES, max_size=20).map(bytes).map(lambda v: v.strip(b" \t"))


@dataclass
class Meant:
    """What the generator meant one request to be."""

    method: bytes
    target: bytes
    version: bytes
    fields: list[tuple[bytes, bytes]]
    body: bytes
    chunked: bool
    wire: bytes


@st.composite
def request(draw) -> Meant:
    method = draw(METHODS)
    target = draw(TARGETS)
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    fields = draw(st.lists(st.tuples(NAMES, VALUES), max_size=6))
    body = draw(st.binary(max_size=80)) if method not in (b"HEAD",) else b""
    chunked = version == b"1.1" and bool(body) and draw(st.booleans())
    head = [method + b" " + target + b" HTTP/" + version]
    if version == b"1.0":  # kept alive, so that a next request may follow; Host optional
        fields = [(b"Connection", b"keep-alive")] + fields
    if version == b"1.1" or draw(st.booleans()):
        fields = [(b"Host", b"app.test")] + fields
    for n, v in fields:
        head.append(n + b":" + draw(st.sampled_from([b" ", b"", b"\t", b"  "])) + v)
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
        wire_body = b""
        rest = body
        while rest:
            n = draw(st.integers(1, len(rest)))
            ext = draw(st.sampled_from([b"", b";a=b", b';q="x;y"', b";flag"]))
            size = (b"%x" % n).upper() if draw(st.booleans()) else b"%x" % n
            wire_body += size + ext + b"\r\n" + rest[:n] + b"\r\n"
            rest = rest[n:]
        trailer = draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
        wire_body += b"0\r\n" + trailer + b"\r\n"
    else:
        if body or draw(st.booleans()):
            head.append(b"Content-Length: %d" % len(body))
        wire_body = body
    wire = b"\r\n".join(head) + b"\r\n\r\n" + wire_body
    return Meant(method, target, version, fields, body, chunked, wire)


PIPELINES = st.lists(request(), min_size=1, max_size=4)


def requests_of(events: list) -> list[tuple[http1.Request, bytes]]:
    out, body, req = [], b"", None
    for e in events:
        if isinstance(e, http1.Request):
            req, body = e, b""
        elif type(e) is bytes:
            body += e
        elif e is END:
            out.append((req, body))
    return out


def summarize(events: list) -> list:
    """Events as comparable values, consecutive body pieces merged (splits cut them differently)."""
    out: list = []
    for e in events:
        if type(e) is bytes:
            if out and type(out[-1]) is bytes:
                out[-1] += e
            else:
                out.append(bytes(e))
        elif e is END:
            out.append("END")
        else:
            out.append((e.method, e.target, e.version, tuple(e.headers), e.host, e.content_length,
                        e.chunked, e.keep_alive, e.expect_continue))
    return out


def feed_all(pieces) -> list:
    reader = RequestReader()
    events: list = []
    for p in pieces:
        events += reader.feed(p)
    return events


def forwarded(req: http1.Request) -> bytes:
    """The head the frontend would send to the backend (frontend._start_request's recipe)."""
    fwd = headers.forward_request_headers(req.headers, peer_ip=b"127.0.0.1", proto=b"https",
                                          local_port=b"443", trusted=False, extra=(),
                                          default_host=b"app.test")
    if req.chunked:
        fwd.append((b"Transfer-Encoding", b"chunked"))
    elif req.content_length is not None:
        fwd.append((b"Content-Length", b"%d" % req.content_length))
    return http1.request_head_bytes(req.method, req.target, fwd)


def framed(req: http1.Request, body: bytes) -> bytes:
    if req.chunked:
        return b"".join(http1.chunk(body)) + http1.LAST_CHUNK if body else http1.LAST_CHUNK
    return body


@SETTINGS
@given(PIPELINES, st.data())
def test_generated_pipelines_whole_bytewise_and_split(meant, data):
    stream = b"".join(m.wire for m in meant)
    whole = feed_all([stream])
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=8))))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    bytewise = feed_all([stream[i:i + 1] for i in range(len(stream))])
    assert summarize(feed_all(pieces)) == summarize(whole) == summarize(bytewise)
    got = requests_of(whole)
    assert len(got) == len(meant)
    for (req, body), m in zip(got, meant):
        assert (req.method, req.target, req.version, body, req.chunked) == \
               (m.method, m.target, m.version, m.body, m.chunked)
        sent = {(n.lower(), v.strip(b" \t")) for n, v in m.fields}
        assert {(n.lower(), v) for n, v in req.headers} - {(b"transfer-encoding", b"chunked"),
                                                          (b"content-length", b"%d" % len(m.body))} == sent


@SETTINGS
@given(PIPELINES)
def test_forwarded_head_is_a_fixed_point_and_strictly_valid(meant):
    for req, body in requests_of(feed_all([b"".join(m.wire for m in meant)])):
        wire = forwarded(req) + framed(req, body)
        parsed = parse_one(wire)  # the recording backend's strict grammar; raises Violation
        assert parsed is not None and parsed[1] == body and parsed[2] == len(wire)
        again = requests_of(feed_all([wire]))
        assert len(again) == 1
        req2, body2 = again[0]
        assert (req2.method, req2.target, req2.version, body2) == (req.method, req.target, b"1.1", body)
        assert forwarded(req2) == forwarded(req)  # re-serialising twice changes nothing more
        # (X-Forwarded-* of the second pass replace the first's: the peer is not trusted)


SMUGGLING_ALPHABET = st.sampled_from([
    b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b"\x0b", b":", b";", b",", b"0", b"f", b"-",
    b"Transfer-Encoding: chunked\r\n", b"Content-Length: 0\r\n", b"Content-Length: 5\r\n", b"\r\n\r\n",
    b"0\r\n\r\n", b"GET / HTTP/1.1\r\n", b"Host: evil\r\n", b" chunked", b"\x80", b"\xff"])


@st.composite
def mutated(draw) -> bytes:
    stream = bytearray(b"".join(m.wire for m in draw(PIPELINES)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(stream)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert":
            stream[i:i] = draw(SMUGGLING_ALPHABET)
        elif op == "delete":
            del stream[i:i + draw(st.integers(1, 4))]
        else:
            stream[i:i + 1] = draw(SMUGGLING_ALPHABET)
    return bytes(stream)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.data())
def test_mutated_streams_raise_only_protocol_error_and_forward_only_valid_heads(stream, data):
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=4))))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    reader = RequestReader()
    events: list = []
    for p in pieces:
        try:
            events += reader.feed(p)
        except ProtocolError as exc:
            assert 400 <= exc.status < 600 and exc.detail
            events += exc.events
            break
    for req, body in requests_of(events):
        try:
            parsed = parse_one(forwarded(req) + framed(req, body))
        except Violation as exc:
            raise AssertionError(f"would forward bytes the backend grammar refuses: {exc}\n"
                                 f"request {req!r} from stream {stream!r}") from None
        assert parsed is not None and parsed[1] == body
