"""Size limits at the front door (issue 11): 431 *with a body* for too many or too large
header fields (not a silent close, as twisted.web does), 413 for a body over
`[limits] max_body_bytes`, and in every refused case nothing complete reaches the backend.

Limits set small here: 20 fields, 4096 bytes of fields, 1000 bytes of body. Each field
counts len(name) + len(value) + 4 (": " and CRLF), as http1.ReaderLimits says.
"""

from __future__ import annotations

import time

import pytest

from conftest import start_front
from rawclient import Reader

MAX_FIELDS, MAX_FIELD_BYTES, MAX_BODY = 20, 4096, 1000


@pytest.fixture(scope="module")
def front(recorder, pki, tmp_path_factory):
    f = start_front(tmp_path_factory, pki, "limits-front", recorder.port,
                    limits=f"max_header_count = {MAX_FIELDS}\nmax_header_bytes = {MAX_FIELD_BYTES}\n"
                           f"max_body_bytes = {MAX_BODY}",
                    timeouts="client_header_seconds = 5\nclient_body_idle_seconds = 5")
    yield f
    f.proc.stop()


def head(*fields: bytes, line: bytes = b"GET /limits HTTP/1.1") -> bytes:
    return line + b"\r\nHost: app.test\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


def exchange(front, *pieces: bytes, pause: float = 0.0):
    """Send `pieces` (separate TLS records, `pause` apart); the first answer and whether the
    connection was closed after it."""
    with front.connect() as s:
        for i, p in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            try:
                s.sendall(p)
            except OSError:
                break  # the proxy answered and closed before the rest: fine
        r = Reader(s)
        answer = r.answer()
        while answer.status < 200:
            answer = r.answer()
        return answer, r.closed(timeout=3)


def assert_refused(answer, closed: bool, status: int, words: bytes) -> None:
    assert answer.status == status
    assert words in answer.body, answer.body  # a body that says what happened
    assert answer.header(b"content-length") == b"%d" % len(answer.body)
    assert answer.header(b"connection") == b"close"
    assert closed


FIELDS_OVER = [b"X-F%02d: v" % i for i in range(MAX_FIELDS)]  # + Host = 21 fields
BYTES_OVER = [b"X-Big: " + b"a" * MAX_FIELD_BYTES]  # one value as large as the limit
BYTES_SPREAD = [b"X-S%02d: " % i + b"b" * 300 for i in range(14)]  # 14 x 311 + Host > 4096

# (id, what is sent in pieces, expected status, a word of the body)
REFUSED = [
    ("21 fields", [head(*FIELDS_OVER)], 431, b"Header Fields Too Large"),
    ("one field over the byte limit", [head(*BYTES_OVER)], 431, b"Header Fields Too Large"),
    ("small fields adding up over the limit", [head(*BYTES_SPREAD)], 431, b"Header Fields Too Large"),
    ("a field line that never ends, in 1 KiB records",
     [b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Endless: "] + [b"c" * 1024] * 8, 431, b"Header Fields Too Large"),
    ("Content-Length over max_body_bytes", [head(b"Content-Length: %d" % (MAX_BODY + 1), line=b"POST /b HTTP/1.1")
                                            + b"x" * (MAX_BODY + 1)], 413, b"Content Too Large"),
    ("huge Content-Length", [head(b"Content-Length: 1099511627776", line=b"POST /b HTTP/1.1")], 413,
     b"Content Too Large"),
    ("Expect 100-continue over the limit: 413, no 100",
     [head(b"Expect: 100-continue", b"Content-Length: %d" % (MAX_BODY + 1), line=b"POST /b HTTP/1.1")], 413,
     b"Content Too Large"),
    ("chunked body over the limit, one record",
     [head(b"Transfer-Encoding: chunked", line=b"POST /b HTTP/1.1") + b"3e9\r\n" + b"y" * 1001 + b"\r\n0\r\n\r\n"],
     413, b"Content Too Large"),
]


@pytest.mark.parametrize("pieces,status,words", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_with_a_body(front, recorder, pieces, status, words):
    mark = recorder.mark()
    answer, closed = exchange(front, *pieces, pause=0.02)
    assert_refused(answer, closed, status, words)
    received, conns = recorder.since(mark)
    assert received == []
    assert [c.leftover for c in conns if c.leftover] == []


def test_no_100_continue_before_a_413(front):
    with front.connect() as s:
        s.sendall(head(b"Expect: 100-continue", b"Content-Length: 5000", line=b"POST /b HTTP/1.1"))
        assert Reader(s).answer().status == 413  # the first answer: no interim 100 before it


def test_chunked_body_crossing_the_limit_after_the_head_was_forwarded(front, recorder):
    """The head goes to the backend as soon as it is parsed (uploads stream); when the body
    then crosses the limit, the client gets 413 and the backend connection is cut: the
    backend holds an incomplete request it never completes, never a complete one."""
    mark = recorder.mark()
    h = head(b"Transfer-Encoding: chunked", line=b"POST /stream HTTP/1.1")
    with front.connect() as s:
        s.sendall(h + b"1f4\r\n" + b"z" * 500 + b"\r\n")
        conn = recorder.conn_with(b"POST /stream HTTP/1.1")  # new or pooled: the head arrived
        s.sendall(b"1f5\r\n" + b"z" * 501 + b"\r\n0\r\n\r\n")  # 1001 bytes in all
        r = Reader(s)
        answer = r.answer()
        assert_refused(answer, r.closed(timeout=3), 413, b"Content Too Large")
    received, _ = recorder.since(mark)
    assert received == []
    deadline = time.monotonic() + 3
    while not conn.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert conn.closed, "the proxy kept the backend connection with a half-sent request"
    assert conn.leftover.startswith(b"POST /stream HTTP/1.1\r\n")
    assert conn.leftover.count(b"z") <= 1001 and not conn.leftover.endswith(b"0\r\n\r\n")


ACCEPTED = [
    ("20 fields exactly", head(*FIELDS_OVER[:-1]), b""),
    ("body of max_body_bytes exactly", head(b"Content-Length: %d" % MAX_BODY, line=b"POST /b HTTP/1.1")
     + b"k" * MAX_BODY, b"k" * MAX_BODY),
    ("chunked body of max_body_bytes exactly", head(b"Transfer-Encoding: chunked", line=b"POST /b HTTP/1.1")
     + b"3e8\r\n" + b"k" * MAX_BODY + b"\r\n0\r\n\r\n", b"k" * MAX_BODY),
]


@pytest.mark.parametrize("payload,body", [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_at_the_limit_is_accepted(front, recorder, payload, body):
    mark = recorder.mark()
    with front.connect() as s:
        s.sendall(payload)
        r = Reader(s)
        assert r.answer().status == 200
        s.sendall(head(line=b"GET /still-open HTTP/1.1"))  # the connection stays usable
        assert r.answer().status == 200
    received, _ = recorder.since(mark)
    assert [r.body for r in received] == [body, b""]
