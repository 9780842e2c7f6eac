"""Look at the first bytes of a connection before OpenSSL does (sans-IO, never raises).

Two jobs, both pure functions over the bytes received so far:

1. `classify(data) -> Kind`: is this TLS, plain HTTP, an SSLv2-style hello or
   junk, or do we need more bytes?  The data path feeds it everything buffered
   until the answer is not ``NEED_MORE`` (at most `MAX_SNIFF_BYTES`):

   - ``TLS``: a handshake record header, ``0x16 0x03`` (RFC 8446 5.1: content
     type 22, legacy record version major 3).
   - ``HTTP``: a known method token followed by a space (`HTTP_METHODS`,
     RFC 9110 9.1 plus WebDAV and the HTTP/2 preface's ``PRI``): Apache answers
     these with "400 ... speaking plain HTTP to an SSL-enabled server port".
   - ``SSLV2``: an SSL 2.0-compatible CLIENT-HELLO (RFC 5246 E.2: 2-byte length
     with the top bit set, msg_type 1, version 0x0002 or 0x03xx). OpenSSL 3
     refuses it; it is counted as ``not_tls``/``unsupported`` by the caller.
   - ``JUNK``: anything else; the caller closes the connection.

2. `parse_client_hello(data) -> HelloResult`: reassemble the ClientHello from
   one or more handshake records (RFC 8446 5.1 allows a handshake message to
   span records; post-quantum key shares make that common) and extract the
   facts the proxy needs: whether the client offered a session to resume
   (legacy session ID, a non-empty ``session_ticket`` extension (RFC 5077),
   ``pre_shared_key`` (RFC 8446 4.2.11)), SNI, the offered versions, the
   number of cipher suites and ALPN.  Session-cache misses are counted as
   "`ClientHello.offers_resumption` and the handshake was not resumed".

Example::

    >>> classify(b"GET / HTTP/1.1\\r\\n")
    <Kind.HTTP: 'http'>
    >>> classify(b"\\x16\\x03")
    <Kind.TLS: 'tls'>
    >>> classify(b"GE")
    <Kind.NEED_MORE: 'need_more'>

Neither function raises on any input (hypothesis-tested): malformed hellos give
``HelloStatus.INVALID`` with a ``problem`` text, for OpenSSL to reject with its
own error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# RFC 9110 9.1 methods, RFC 5789 PATCH, WebDAV (RFC 4918/3253/5323), and the
# HTTP/2 connection preface "PRI * HTTP/2.0" (RFC 9113 3.4).
HTTP_METHODS: tuple[bytes, ...] = (
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH",
    b"REPORT", b"MKACTIVITY", b"CHECKOUT", b"MERGE", b"PRI",
)
_METHOD_PREFIXES: tuple[bytes, ...] = tuple(m + b" " for m in HTTP_METHODS)
_MAX_METHOD_PREFIX = max(len(m) for m in _METHOD_PREFIXES)
# `classify` never needs more than this many bytes to decide (SSLv2 header: 5).
MAX_SNIFF_BYTES = max(_MAX_METHOD_PREFIX, 5)

# Enough for any real first flight: a ClientHello with ML-KEM key shares is
# about 1.8 KB; browsers pad to 512 bytes. RFC 8446 allows 2^24 - 1, which no
# sane server buffers before deciding (OpenSSL's own limit for the hello is
# SSL3_RT_MAX_PLAIN_LENGTH-ish per record, and 2^16 bytes for the message).
MAX_CLIENT_HELLO_BYTES = 65536
_MAX_RECORD = 2 ** 14 + 2048  # RFC 5246 6.2.3 TLSCiphertext bound; plaintext is 2^14

_TLS_HANDSHAKE = 0x16
_CLIENT_HELLO = 1

# Extension code points (IANA TLS ExtensionType registry).
_EXT_SNI = 0
_EXT_ALPN = 16
_EXT_SESSION_TICKET = 35
_EXT_PRE_SHARED_KEY = 41
_EXT_SUPPORTED_VERSIONS = 43

VERSION_NAMES: dict[int, str] = {
    0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1",
    0x0303: "TLSv1.2", 0x0304: "TLSv1.3",
}


class Kind(enum.Enum):
    NEED_MORE = "need_more"
    TLS = "tls"
    HTTP = "http"
    SSLV2 = "sslv2"
    JUNK = "junk"


def classify(data: bytes) -> Kind:
    """Classify the first bytes of a connection (see the module docstring)."""
    n = len(data)
    if n == 0:
        return Kind.NEED_MORE
    first = data[0]
    if first == _TLS_HANDSHAKE:
        if n < 2:
            return Kind.NEED_MORE
        return Kind.TLS if data[1] == 0x03 else Kind.JUNK
    if first & 0x80:
        # SSLv2 record header: length in the low 15 bits, then msg_type, version.
        if n < 5:
            return Kind.NEED_MORE
        if data[2] == 1 and (data[3:5] == b"\x00\x02" or data[3] == 0x03):
            return Kind.SSLV2
        return Kind.JUNK
    head = data[:_MAX_METHOD_PREFIX]
    for prefix in _METHOD_PREFIXES:
        if head.startswith(prefix):
            return Kind.HTTP
    if n < _MAX_METHOD_PREFIX:
        for prefix in _METHOD_PREFIXES:
            if prefix.startswith(head):
                return Kind.NEED_MORE
    return Kind.JUNK


def request_line(data: bytes, limit: int = 512) -> str:
    """The first line of a plain-HTTP request, for the log (latin-1, at most `limit` chars).

    >>> request_line(b"GET /x HTTP/1.1\\r\\nHost: a\\r\\n")
    'GET /x HTTP/1.1'
    """
    end = data.find(b"\n", 0, limit + 2)
    line = data[:end] if end >= 0 else data[:limit]
    return line.rstrip(b"\r")[:limit].decode("latin-1")


class HelloStatus(enum.Enum):
    NEED_MORE = "need_more"
    OK = "ok"
    INVALID = "invalid"
    TOO_LARGE = "too_large"


@dataclass(frozen=True)
class ClientHello:
    """Facts from one ClientHello (RFC 8446 4.1.2 / RFC 5246 7.4.1.2).

    `session_ticket_length` is None when the extension is absent, 0 when the
    client asks for a new ticket, >0 when it offers one to resume.
    `versions` is `supported_versions` if present, else ``(legacy_version,)``.
    """

    legacy_version: int
    session_id_length: int
    cipher_count: int
    versions: tuple[int, ...]
    sni: str | None = None
    session_ticket_length: int | None = None
    psk_offered: bool = False
    alpn: tuple[str, ...] = ()
    extension_count: int = 0

    @property
    def offers_tls13(self) -> bool:
        return 0x0304 in self.versions

    @property
    def offers_ticket(self) -> bool:
        return bool(self.session_ticket_length)

    @property
    def offers_resumption(self) -> bool:
        """Did the client offer a session to resume?

        - a TLS 1.3 PSK (``pre_shared_key``) or a non-empty TLS 1.2 ticket: yes;
        - a legacy session ID: yes only if the client does not offer TLS 1.3,
          because TLS 1.3 clients send a random 32-byte ID in "middlebox
          compatibility mode" (RFC 8446 D.4) that resumes nothing.  A TLS 1.3
          capable client resuming a TLS 1.2 session by ID alone is therefore
          not counted (it cannot be told apart from the ClientHello).
        """
        if self.psk_offered or self.offers_ticket:
            return True
        return self.session_id_length > 0 and not self.offers_tls13

    @property
    def max_version_name(self) -> str:
        """The highest offered version's OpenSSL name (``TLSv1.2``), ``unknown`` if none known."""
        known = [v for v in self.versions if v in VERSION_NAMES]
        return VERSION_NAMES[max(known)] if known else "unknown"


@dataclass(frozen=True)
class HelloResult:
    status: HelloStatus
    hello: ClientHello | None = None
    problem: str = ""
    # Bytes of records consumed to get the whole hello (OK only).
    consumed: int = 0


class HelloWatcher:
    """Feed it the client's bytes as they arrive; it keeps them until the ClientHello is complete.

    For the data path's session-cache-miss count: call ``feed(data)`` from the
    TLS protocol's ``dataReceived`` *before* passing the bytes on; it returns
    None while it needs more, then the `HelloResult` once (and None after
    that, having dropped its buffer).  Each call costs O(len(data)): record
    headers are scanned incrementally and the hello is parsed once, when
    complete (re-parsing from scratch on every byte would be quadratic, a gift
    to a slow-loris client).  Memory is bounded: a hello claiming more than
    `max_bytes`, or records that bring no complete hello within
    ``2 * max_bytes`` bytes, end as TOO_LARGE.  After the handshake::

        hello = watcher.result.hello if watcher.result else None
        if hello is not None and hello.offers_resumption and not reused:
            metrics.cache_miss(label)
    """

    __slots__ = ("_buf", "_pos", "_hs_bytes", "_need", "max_bytes", "result")

    def __init__(self, max_bytes: int = MAX_CLIENT_HELLO_BYTES) -> None:
        self._buf: bytearray | None = bytearray()
        self._pos = 0  # start of the next record header in _buf
        self._hs_bytes = 0  # handshake bytes seen in complete records
        self._need: int | None = None  # handshake bytes the hello needs, once known
        self.max_bytes = max_bytes
        self.result: HelloResult | None = None

    @property
    def done(self) -> bool:
        return self._buf is None

    def _finish(self, result: HelloResult) -> HelloResult:
        self._buf = None
        self.result = result
        return result

    def feed(self, data: bytes) -> HelloResult | None:
        buf = self._buf
        if buf is None:
            return None
        buf += data
        n = len(buf)
        while self._pos + 5 <= n:
            pos = self._pos
            length = (buf[pos + 3] << 8) | buf[pos + 4]
            if buf[pos] != _TLS_HANDSHAKE or buf[pos + 1] != 3 or not 0 < length <= _MAX_RECORD:
                return self._finish(parse_client_hello(bytes(buf[:pos + 5]), self.max_bytes))
            if pos + 5 + length > n:
                break
            if self._need is None and self._hs_bytes < 4 <= self._hs_bytes + length:
                # The 4-byte handshake header is complete: learn the hello's size (maybe
                # split across records, so let the full parser read it).
                head = parse_client_hello(bytes(buf[:pos + 5 + length]), self.max_bytes)
                if head.status is not HelloStatus.NEED_MORE:
                    return self._finish(head)
                self._need = self._hello_size(bytes(buf[:pos + 5 + length]))
            self._hs_bytes += length
            self._pos = pos + 5 + length
            if self._need is not None and self._hs_bytes >= self._need:
                return self._finish(parse_client_hello(bytes(buf[:self._pos]), self.max_bytes))
        if n > 2 * self.max_bytes:
            return self._finish(HelloResult(HelloStatus.TOO_LARGE,
                                            problem=f"no complete ClientHello in {n} bytes"))
        return None

    @staticmethod
    def _hello_size(records: bytes) -> int:
        hs = bytearray()
        pos = 0
        while len(hs) < 4 and pos + 5 <= len(records):
            length = (records[pos + 3] << 8) | records[pos + 4]
            hs += records[pos + 5:pos + 5 + length]
            pos += 5 + length
        return 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])


_PARSED_EXTENSIONS = frozenset((_EXT_SNI, _EXT_SESSION_TICKET, _EXT_PRE_SHARED_KEY, _EXT_SUPPORTED_VERSIONS, _EXT_ALPN))


class _Bad(Exception):
    """Malformed hello (private: never escapes this module)."""


class _Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise _Bad(f"{what}: needs {n} bytes, {self.end - self.pos} left")
        chunk = self.buf[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        b = self.take(2, what)
        return (b[0] << 8) | b[1]

    def vec(self, length_bytes: int, what: str) -> "_Reader":
        n = self.u8(what) if length_bytes == 1 else self.u16(what)
        start = self.pos
        self.take(n, what)
        return _Reader(self.buf, start, start + n)

    @property
    def left(self) -> int:
        return self.end - self.pos


def parse_client_hello(data: bytes, max_bytes: int = MAX_CLIENT_HELLO_BYTES) -> HelloResult:
    """Reassemble and parse the ClientHello at the start of `data`.

    Returns ``NEED_MORE`` until the whole message has arrived, ``TOO_LARGE``
    when it claims more than `max_bytes`, ``INVALID`` (with `problem`) for
    anything that is not a well-formed ClientHello, else ``OK`` with the facts.
    """
    try:
        return _parse(data, max_bytes)
    except _Bad as exc:
        return HelloResult(HelloStatus.INVALID, problem=str(exc))
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        return HelloResult(HelloStatus.INVALID, problem=f"parser error: {exc!r}")


def _parse(data: bytes, max_bytes: int) -> HelloResult:
    handshake = bytearray()
    pos = 0
    n = len(data)
    need: int | None = None  # total handshake message bytes once the header is known
    while True:
        if need is not None and len(handshake) >= need:
            break
        if pos + 5 > n:
            return HelloResult(HelloStatus.NEED_MORE)
        ctype, major = data[pos], data[pos + 1]
        length = (data[pos + 3] << 8) | data[pos + 4]
        if ctype != _TLS_HANDSHAKE:
            raise _Bad(f"record of content type {ctype} before the ClientHello was complete")
        if major != 3:
            raise _Bad(f"record version {major}.{data[pos + 2]} is not 3.x")
        if length == 0 or length > _MAX_RECORD:
            raise _Bad(f"record length {length} out of range 1..{_MAX_RECORD}")
        if pos + 5 + length > n:
            return HelloResult(HelloStatus.NEED_MORE)
        handshake += data[pos + 5:pos + 5 + length]
        pos += 5 + length
        if need is None and len(handshake) >= 4:
            if handshake[0] != _CLIENT_HELLO:
                raise _Bad(f"first handshake message is type {handshake[0]}, not ClientHello (1)")
            body_len = (handshake[1] << 16) | (handshake[2] << 8) | handshake[3]
            if body_len + 4 > max_bytes:
                return HelloResult(HelloStatus.TOO_LARGE,
                                   problem=f"ClientHello of {body_len} bytes exceeds {max_bytes}")
            need = 4 + body_len
    hello = _parse_body(_Reader(bytes(handshake), 4, need))
    return HelloResult(HelloStatus.OK, hello, consumed=pos)


def _parse_body(r: _Reader) -> ClientHello:
    """The ClientHello body in r.buf[r.pos:r.end].

    Offsets and ints rather than a reader object per field: this runs once per new TLS
    connection (about 30 µs per hello with one _Reader per vector, under 10 µs so).
    """
    b, pos, end = r.buf, r.pos, r.end
    if pos + 35 > end:
        raise _Bad(f"legacy_version, random, legacy_session_id: needs 35 bytes, {end - pos} left")
    legacy_version = (b[pos] << 8) | b[pos + 1]
    sid_len = b[pos + 34]
    pos += 35 + sid_len
    if sid_len > 32:
        raise _Bad(f"legacy_session_id of {sid_len} bytes (max 32)")
    if pos + 2 > end:
        raise _Bad(f"cipher_suites: needs 2 bytes, {end - pos} left")
    suites_len = (b[pos] << 8) | b[pos + 1]
    pos += 2 + suites_len
    if suites_len == 0 or suites_len % 2:
        raise _Bad(f"cipher_suites of {suites_len} bytes (must be even and non-zero)")
    if pos + 1 > end:
        raise _Bad(f"legacy_compression_methods: needs 1 byte, {end - pos} left")
    comp_len = b[pos]
    pos += 1 + comp_len
    if comp_len == 0:
        raise _Bad("no compression method")
    if pos > end:
        raise _Bad(f"legacy_compression_methods: {pos - end} bytes missing")
    sni: str | None = None
    ticket_len: int | None = None
    psk = False
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    count = 0
    if pos < end:  # extensions are optional in TLS 1.0-1.2 hellos
        if pos + 2 > end:
            raise _Bad(f"extensions: needs 2 bytes, {end - pos} left")
        exts_end = pos + 2 + ((b[pos] << 8) | b[pos + 1])
        pos += 2
        if exts_end > end:
            raise _Bad(f"extensions: needs {exts_end - pos} bytes, {end - pos} left")
        if exts_end < end:
            raise _Bad(f"{end - exts_end} bytes after the extensions")
        seen: set[int] = set()
        while pos < exts_end:
            if pos + 4 > exts_end:
                raise _Bad(f"extension header: needs 4 bytes, {exts_end - pos} left")
            etype = (b[pos] << 8) | b[pos + 1]
            body_end = pos + 4 + ((b[pos + 2] << 8) | b[pos + 3])
            if body_end > exts_end:
                raise _Bad(f"extension {etype}: needs {body_end - pos - 4} bytes, {exts_end - pos - 4} left")
            if etype in seen:  # RFC 8446 4.2: duplicates are illegal
                raise _Bad(f"extension {etype} appears twice")
            seen.add(etype)
            count += 1
            if etype in _PARSED_EXTENSIONS:
                body = _Reader(b, pos + 4, body_end)
                if etype == _EXT_SNI:
                    sni = _parse_sni(body)
                elif etype == _EXT_SESSION_TICKET:
                    ticket_len = body.left
                elif etype == _EXT_PRE_SHARED_KEY:
                    psk = True
                elif etype == _EXT_SUPPORTED_VERSIONS:
                    vs = body.vec(1, "supported_versions")
                    if vs.left % 2:
                        raise _Bad("odd supported_versions length")
                    vb, vp = vs.buf, vs.pos
                    versions = tuple((vb[i] << 8) | vb[i + 1] for i in range(vp, vs.end, 2))
                elif etype == _EXT_ALPN:
                    alpn = _parse_alpn(body)
            pos = body_end
    return ClientHello(
        legacy_version=legacy_version,
        session_id_length=sid_len,
        cipher_count=suites_len // 2,
        versions=versions or (legacy_version,),
        sni=sni,
        session_ticket_length=ticket_len,
        psk_offered=psk,
        alpn=alpn,
        extension_count=count,
    )


def _parse_sni(body: _Reader) -> str | None:
    names = body.vec(2, "server_name list")
    while names.left:
        kind = names.u8("server_name type")
        name = names.vec(2, "host_name")
        if kind == 0:  # host_name (RFC 6066 3)
            return name.take(name.left, "host_name").decode("latin-1")
    return None


def _parse_alpn(body: _Reader) -> tuple[str, ...]:
    names = body.vec(2, "alpn protocol_name_list")
    out = []
    while names.left:
        name = names.vec(1, "alpn protocol name")
        out.append(name.take(name.left, "alpn protocol name").decode("latin-1"))
    return tuple(out)
