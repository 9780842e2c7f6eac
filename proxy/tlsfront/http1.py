"""Sans-IO HTTP/1.1 for the proxy: bytes in, events out, bytes to write back.

Theory of operation
-------------------
`RequestReader` parses what a client sends, `ResponseReader` what a backend
answers. Both wrap llhttp (through `httptools`, the parser of Node.js, in C) and
add the checks a front end for *legacy* applications needs on top of it
(RFC 9112; see issue 11): llhttp already rejects Content-Length together with
Transfer-Encoding, duplicate Content-Length, obsolete line folding, bare CR/LF,
control characters, whitespace before the colon, junk or overflow in chunk
sizes. We add: HTTP/1.0 and 1.1 only; Transfer-Encoding must be exactly
`chunked` (and not on HTTP/1.0); one Host header (required on 1.1); the request
target in origin-, absolute- or asterisk-form; header count and size limits
(431) and a body size limit (413).

`feed(data)` returns a list of events, in order:

- a `Request` (or `Response`) head,
- `bytes` objects: body data, already de-chunked,
- `END`: the message is complete (the next head may follow in the same list:
  pipelining).

Any protocol violation raises `ProtocolError`, which names the HTTP status to
answer with; the reader is unusable afterwards (close the connection after the
answer).

What goes to the other side is always re-serialised from the parsed message
(`request_head_bytes`, `response_head_bytes`, `chunk`): the peer never sees
bytes that we did not understand.

Example::

    >>> r = RequestReader()
    >>> events = r.feed(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
    >>> events[0].method, events[0].target, events[1] is END
    (b'GET', b'/', True)
"""

from __future__ import annotations

import re

import httptools

__all__ = [
    "END", "LAST_CHUNK", "ProtocolError", "ReaderLimits", "Request", "RequestReader",
    "Response", "ResponseReader", "chunk", "request_head_bytes", "response_head_bytes",
    "simple_response", "REASONS",
]


class _End:
    """The end-of-message marker (a singleton: compare with `is`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()

LAST_CHUNK = b"0\r\n\r\n"

# Reason phrases for the statuses the proxy itself produces (RFC 9110 section 15).
REASONS: dict[int, bytes] = {
    100: b"Continue", 200: b"OK", 301: b"Moved Permanently", 400: b"Bad Request",
    404: b"Not Found", 405: b"Method Not Allowed", 408: b"Request Timeout",
    413: b"Content Too Large", 417: b"Expectation Failed", 414: b"URI Too Long", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 501: b"Not Implemented", 502: b"Bad Gateway",
    503: b"Service Unavailable", 504: b"Gateway Timeout", 505: b"HTTP Version Not Supported",
}


class ProtocolError(Exception):
    """The peer broke HTTP/1.1. `status` is the answer to give (for a client),
    `detail` says what was wrong, with the offending value, for the error log."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail
        self.events: list = []  # complete requests before the fault (RequestReader.feed)


class ReaderLimits:
    """Size limits for a RequestReader (defaults follow model.Limits).

    Header limits: Apache's LimitRequestFields is 100 and LimitRequestFieldSize
    8190; nginx's large_client_header_buffers 4 x 8k. The whole head is bounded
    by `max_header_bytes` (+ one transport read, see RequestReader.feed).
    """

    __slots__ = ("max_header_count", "max_header_bytes", "max_body_bytes", "max_target_bytes")

    def __init__(self, max_header_count: int = 100, max_header_bytes: int = 32 * 1024,
                 max_body_bytes: int = 1024 ** 4, max_target_bytes: int = 8192) -> None:
        self.max_header_count = max_header_count
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_target_bytes = max_target_bytes


class Request:
    """A parsed request head.

    `headers` keeps names as the client spelled them (legacy apps may care) in
    order; framing headers are kept too, the forwarder rewrites them.
    `content_length` is None without a Content-Length; `chunked` is True for
    `Transfer-Encoding: chunked`. `keep_alive` is what the client asked for
    (HTTP/1.1 default, or HTTP/1.0 with `Connection: keep-alive`).
    """

    __slots__ = ("method", "target", "version", "headers", "host", "content_length", "chunked",
                 "keep_alive", "expect_continue")

    def __init__(self, method: bytes, target: bytes, version: bytes,
                 headers: list[tuple[bytes, bytes]], host: bytes | None,
                 content_length: int | None, chunked: bool, keep_alive: bool,
                 expect_continue: bool) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.host = host
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower-case bytes), or None."""
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r}, HTTP/{self.version.decode()})"


class Response:
    """A parsed response head. `until_close`: the body ends when the backend
    closes (neither Content-Length nor chunked); `no_body`: 204/304/HEAD."""

    __slots__ = ("status", "reason", "version", "headers", "content_length", "chunked",
                 "keep_alive", "until_close", "no_body")

    def __init__(self, status: int, reason: bytes, version: bytes,
                 headers: list[tuple[bytes, bytes]], content_length: int | None,
                 chunked: bool, keep_alive: bool, until_close: bool, no_body: bool) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.until_close = until_close
        self.no_body = no_body

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.reason!r})"


# Methods llhttp knows but a reverse proxy must not pass on as ordinary requests.
_UNSUPPORTED_METHODS = {b"CONNECT": 405, b"PRI": 505}
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
# RFC 9112 3.2: a Host with an invalid value gets 400. Host = uri-host [":" port] (RFC 3986
# 3.2.2), narrowed to DNS names and IP literals: the sub-delims and %-escapes a reg-name may
# hold (`,;=!$&'()*+`), and anything else (`/`, `@`, spaces, empty), are not a host name, and
# a backend or cache behind us may split or route them differently (Host header attacks).
_HOST_VALUE = re.compile(rb"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?\Z")  # port = *DIGIT


class RequestReader:
    """Parses requests from one client connection (see the module docstring).

    The callbacks (`on_*`) are llhttp's, called from inside `feed`; do not call them.
    """

    def __init__(self, limits: ReaderLimits | None = None) -> None:
        self.limits = limits or ReaderLimits()
        self._parser = httptools.HttpRequestParser(self)
        self._events: list = []
        self._error: ProtocolError | None = None
        self._in_head = False
        self._began_in_feed = False
        self._partial_head_bytes = 0
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._host: bytes | None = None
        self._host_count = 0
        self._te: bytes | None = None
        self._cl: int | None = None
        self._expect_continue = False
        self._body_bytes = 0

    # -- public API ---------------------------------------------------------

    def close(self) -> None:
        """The connection is gone: drop the parser. llhttp's parser holds this reader's
        bound callbacks, a reference cycle that would otherwise wait (with the requests it
        holds) for the cyclic garbage collector: measured, 7% of a worker's CPU under full
        handshakes (docs/benchmarks.md). `feed` must not be called after."""
        self._parser = None

    @property
    def in_message(self) -> bool:
        """True between the first byte of a request and its end."""
        return self._in_head or self._in_body

    _in_body = False

    def feed(self, data: bytes) -> list:
        """Parse `data`; returns the events it completed. Raises ProtocolError.

        The error's `events` are the complete requests parsed before the fault
        in the same `data` (pipelining): they are valid and deserve their
        answers before the error's. A partial request before the fault is not
        among them.

        Memory bound for an unfinished head: `max_header_bytes` plus the bytes
        of the read in which the head began (llhttp does not tell offsets).
        """
        if self._error is not None:
            raise self._error
        events = self._events = []
        self._began_in_feed = False
        try:
            self._feed(data)
            if self._in_head and not self._began_in_feed:
                self._partial_head_bytes += len(data)
                if self._partial_head_bytes > self.limits.max_header_bytes:
                    self._raise(431, f"request head larger than {self.limits.max_header_bytes} bytes")
        except ProtocolError as exc:
            last_end = max((i for i, e in enumerate(events) if e is END), default=-1)
            exc.events = events[:last_end + 1]
            raise
        return events

    # -- helpers ------------------------------------------------------------

    def _raise(self, status: int, detail: str) -> None:
        self._error = ProtocolError(status, detail)
        raise self._error

    def _fail_from(self, exc: Exception) -> None:
        cause = exc.__context__ if isinstance(exc.__context__, ProtocolError) else self._error
        if isinstance(cause, ProtocolError):
            self._error = cause
            raise cause from None
        if isinstance(exc, httptools.HttpParserInvalidMethodError):
            self._raise(400, f"invalid or unknown method: {exc}")
        self._raise(400, f"malformed request: {exc}")

    def _feed(self, data: bytes) -> None:
        """llhttp's feed_data, its upgrade stop and its errors turned into ours."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as up:
            self._after_upgrade(data, up.args[0] if up.args else len(data))
        except httptools.HttpParserError as exc:
            self._fail_from(exc)

    def _after_upgrade(self, data: bytes, offset: int) -> None:
        # llhttp stops after a request with `Connection: upgrade` + `Upgrade` (or a
        # CONNECT). The Upgrade header is hop-by-hop and never forwarded, so the
        # request is an ordinary one; but llhttp skipped its body: refuse bodies,
        # else the body would be parsed as the next request (smuggling).
        # CONNECT was refused in on_headers_complete.
        last = next((e for e in reversed(self._events) if isinstance(e, Request)), None)
        if last is not None and last.has_body:
            del self._events[self._events.index(last):]  # not among the valid requests
            self._raise(400, "a request with Upgrade must not carry a body through this proxy")
        rest = data[offset:]
        if rest:
            self._feed(rest)

    # -- llhttp callbacks -----------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._began_in_feed = True
        self._partial_head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_target_bytes:
            self._raise(414, f"request target longer than {self.limits.max_target_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer field (after a chunked body): dropped, RFC 9112 7.1.2
        headers = self._headers
        headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if len(headers) > self.limits.max_header_count:
            self._raise(431, f"more than {self.limits.max_header_count} header fields")
        if self._head_bytes > self.limits.max_header_bytes:
            self._raise(431, f"header fields larger than {self.limits.max_header_bytes} bytes")
        lname = name.lower()
        if lname == b"host":
            self._host = value
            self._host_count += 1
        elif lname == b"transfer-encoding":
            self._te = value
        elif lname == b"content-length":
            self._cl = int(value)  # llhttp checked the digits and rejected duplicates
        elif lname == b"expect":
            if value.lower() == b"100-continue":
                self._expect_continue = True
            else:
                self._raise(417, f"unsupported Expect value {value!r} (only 100-continue)")

    def on_headers_complete(self) -> None:
        parser = self._parser
        method = parser.get_method()
        if method in _UNSUPPORTED_METHODS:
            self._raise(_UNSUPPORTED_METHODS[method], f"method {method.decode()} is not supported by this reverse proxy")
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            self._raise(505 if parser.get_http_version() != "0.9" else 400,
                        f"HTTP version {parser.get_http_version()} (only 1.0 and 1.1 are served)")
        target = self._url
        if target[:1] != b"/":
            if target == b"*" and method == b"OPTIONS":
                pass
            elif target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
                # absolute-form: the authority replaces Host (RFC 9112 3.2.2)
                rest = target.split(b"://", 1)[1]
                slash = rest.find(b"/")
                authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
                if not authority or b"@" in authority:
                    self._raise(400, f"invalid absolute request target {target[:100]!r}")
                target = path
                if self._host_count > 1:
                    self._raise(400, "several Host header fields (RFC 9112 3.2)")
                # The authority wins over Host; the backend gets origin-form + this Host.
                self._headers = [(n, v) for n, v in self._headers if n.lower() != b"host"]
                self._headers.insert(0, (b"Host", authority))
                self._host, self._host_count = authority, 1
            else:
                self._raise(400, f"invalid request target {target[:100]!r}")
        if self._host_count > 1:
            self._raise(400, "several Host header fields (RFC 9112 3.2)")
        if self._host_count == 0 and version == b"1.1":
            self._raise(400, "HTTP/1.1 request without Host (RFC 9112 3.2)")
        if self._host is not None:
            host = self._host.rstrip(b" \t")
            if not _HOST_VALUE.match(host):
                self._raise(400, f"invalid Host {host[:100]!r} (RFC 9112 3.2: a host name or [IP], optional :port)")
            self._host = host
        chunked = False
        if self._te is not None:
            if version == b"1.0":
                self._raise(400, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1)")
            if self._te.strip().lower() != b"chunked":
                self._raise(501 if b"chunked" not in self._te.lower() else 400,
                            f"Transfer-Encoding {self._te!r} (only 'chunked' is accepted)")
            chunked = True
        cl = self._cl
        if cl is not None and cl > self.limits.max_body_bytes:
            self._raise(413, f"Content-Length {cl} exceeds the limit of {self.limits.max_body_bytes} bytes")
        self._events.append(Request(
            method, target, version, self._headers, self._host, cl, chunked,
            parser.should_keep_alive(), self._expect_continue and version == b"1.1",
        ))
        self._in_head = False
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            self._raise(413, f"request body exceeds the limit of {self.limits.max_body_bytes} bytes")
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._events.append(END)
        self._in_body = False
        self._reset_message()


class ResponseReader:
    """Parses responses from one backend connection.

    Call `expect(method)` before each response: answers to HEAD have no body
    whatever their headers say (RFC 9110 9.3.2), and llhttp cannot be told so;
    after a HEAD the connection must not be reused (see `reusable`).
    1xx interim responses are swallowed (the proxy answers `100 Continue` to
    clients itself, and never forwards `Upgrade`).
    """

    def __init__(self, max_header_count: int = 200, max_header_bytes: int = 64 * 1024) -> None:
        self.max_header_count = max_header_count
        self.max_header_bytes = max_header_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._events: list = []
        self._error: ProtocolError | None = None
        self._head_method = False
        self._done_head = False
        self._reset()

    def _reset(self) -> None:
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._te_chunked = False
        self._cl: int | None = None
        self._started = False

    def close(self) -> None:
        """The connection is gone: drop the parser and its reference cycle (RequestReader.close)."""
        self._parser = None

    def expect(self, method: bytes) -> None:
        """Declare the method of the request whose response comes next."""
        self._head_method = method == b"HEAD"
        self._done_head = False

    @property
    def started(self) -> bool:
        """True once any byte of the current response was parsed."""
        return self._started

    def feed(self, data: bytes) -> list:
        if self._error is not None:
            raise self._error
        events = self._events = []
        if self._done_head:
            # Bytes after the head of a HEAD response: the backend is confused.
            self._error = ProtocolError(502, f"{len(data)} unexpected bytes after a response to HEAD")
            raise self._error
        try:
            self._parser.feed_data(data)
        except _HeadDone:
            pass
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadDone):
                return events
            if isinstance(cause, ProtocolError):
                self._error = cause
                raise cause from None
            self._error = ProtocolError(502, f"malformed response from backend: {exc}")
            raise self._error from None
        return events

    def on_message_begin(self) -> None:
        self._started = True
        self._in_head = True

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    _in_head = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer field after a chunked body: dropped (RFC 9112 7.1.2)
        headers = self._headers
        headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if len(headers) > self.max_header_count or self._head_bytes > self.max_header_bytes:
            raise ProtocolError(502, "backend response head too large")
        lname = name.lower()
        if lname == b"transfer-encoding":
            if value.strip().lower() != b"chunked":
                raise ProtocolError(502, f"backend sent Transfer-Encoding {value!r}")
            self._te_chunked = True
        elif lname == b"content-length":
            self._cl = int(value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError(502, "backend switched protocols (101) without being asked")
            self._reset()  # interim response: skip it, the final one follows
            self._interim = True
            return
        self._interim = False
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            raise ProtocolError(502, f"backend answered with HTTP/{parser.get_http_version()}")
        no_body = self._head_method or status in (204, 304)
        until_close = not no_body and not self._te_chunked and self._cl is None
        self._events.append(Response(
            status, self._reason, version, self._headers,
            self._cl,  # kept for HEAD/304: the length of what GET would return
            self._te_chunked and not no_body, parser.should_keep_alive() and not until_close,
            until_close, no_body,
        ))
        if self._head_method:
            self._events.append(END)
            self._done_head = True
            self._reset()
            raise _HeadDone()

    _interim = False

    def on_body(self, body: bytes) -> None:
        self._events.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._events.append(END)
        self._reset()


class _HeadDone(Exception):
    """Stops llhttp after the head of a response to HEAD."""


def request_head_bytes(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Serialise an HTTP/1.1 request head (always 1.1 towards backends)."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def response_head_bytes(version: bytes, status: int, reason: bytes,
                        headers: list[tuple[bytes, bytes]]) -> bytes:
    """Serialise a response head; `version` is b"1.1" or b"1.0"."""
    parts = [b"HTTP/", version, b" %d " % status, reason, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> list[bytes]:
    """One chunk of a chunked body, as a write sequence (no copy of `data`)."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


def simple_response(status: int, body: bytes, *, close: bool = True, version: bytes = b"1.1",
                    extra: list[tuple[bytes, bytes]] | None = None,
                    content_type: bytes = b"text/plain; charset=utf-8") -> bytes:
    """A complete small response the proxy makes itself (errors, redirects)."""
    headers = [(b"Content-Type", content_type), (b"Content-Length", b"%d" % len(body))]
    if extra:
        headers += extra
    if close:
        headers.append((b"Connection", b"close"))
    return response_head_bytes(version, status, REASONS.get(status, b"Unknown"), headers) + body
