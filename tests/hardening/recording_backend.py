"""A backend that records exactly the bytes and the requests it received (issue 11).

The smuggling table asserts "which requests reached the backend, byte for byte".
This backend runs in the test process (one thread per connection, blocking
sockets), so a test reads what it got without files or timing games.

It parses with its own small strict grammar, independent of tlsfront's parser
(an assertion made with the parser under test would prove nothing):

    request   = METHOD SP TARGET SP "HTTP/1.1" CRLF *( NAME ": " VALUE CRLF ) CRLF body
    METHOD    = 1*tchar ; NAME = 1*tchar ; TARGET and VALUE: visible ASCII/obs-text, SP, HTAB
    body      = exactly Content-Length bytes, or chunked (hex size CRLF data CRLF ... "0" CRLF CRLF),
                never both: that is what tlsfront promises to send after re-serialising.

Anything else is recorded as `Conn.violation` (the test then fails) and the
connection is closed. Each complete request is answered `200` with a small
body naming it, keep-alive, so the proxy's pool reuses connections.

Example::

    backend = RecordingBackend()
    port = backend.start()
    ...  # drive tlsfront at it
    backend.requests()  -> [Received(conn=0, head=b"GET / HTTP/1.1\\r\\n...", body=b"", ...)]
    backend.stop()
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_REQUEST_LINE = re.compile(rb"(" + _TCHAR + rb"+) ([\x21-\x7e\x80-\xff]+) HTTP/1\.1\Z")
_FIELD = re.compile(rb"(" + _TCHAR + rb"+): ([\x21-\x7e\x80-\xff](?:[\x20-\x7e\x80-\xff\t]*[\x21-\x7e\x80-\xff])?)?\Z")
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}\Z")


class Violation(Exception):
    """What tlsfront sent does not follow the grammar above."""


@dataclass
class Received:
    """One complete request as the backend got it."""

    conn: int  # which backend connection (0, 1, ...)
    head: bytes  # the exact head, request line to the empty line included
    body: bytes  # the body, de-chunked
    raw: bytes  # the exact bytes of the whole request on the wire
    chunked: bool

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        out = []
        for line in self.head.split(b"\r\n")[1:]:
            if line:
                name, _, value = line.partition(b": ")
                out.append((name, value))
        return out

    def summary(self) -> str:
        """`METHOD TARGET body=...` (the table's compact form)."""
        return f"{self.request_line.rsplit(b' ', 1)[0].decode('latin-1')} body={self.body!r}"


@dataclass
class Conn:
    index: int
    raw: bytearray = field(default_factory=bytearray)  # everything received, in order
    leftover: bytes = b""  # an incomplete request when the connection ended
    violation: str | None = None
    closed: bool = False


def parse_one(data: bytes) -> tuple[bytes, bytes, int, bool] | None:
    """(head, body, consumed, chunked) for the first complete request in `data`, None if
    incomplete. Raises Violation."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > 1 << 20:
            raise Violation("no end of head in 1 MiB")
        return None
    head = data[:end + 4]
    lines = head[:-4].split(b"\r\n")
    if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        raise Violation(f"bare CR or LF in head {head[:200]!r}")
    if not _REQUEST_LINE.match(lines[0]):
        raise Violation(f"bad request line {lines[0][:200]!r}")
    cl: list[bytes] = []
    te: list[bytes] = []
    hosts = 0
    for line in lines[1:]:
        m = _FIELD.match(line)
        if not m:
            raise Violation(f"bad header line {line[:200]!r}")
        name = m.group(1).lower()
        if name == b"content-length":
            cl.append(m.group(2) or b"")
        elif name == b"transfer-encoding":
            te.append(m.group(2) or b"")
        elif name == b"host":
            hosts += 1
    if hosts != 1:
        raise Violation(f"{hosts} Host fields")
    if cl and te:
        raise Violation("both Content-Length and Transfer-Encoding")
    if len(cl) > 1 or len(te) > 1:
        raise Violation(f"framing fields repeated: CL {cl} TE {te}")
    pos = end + 4
    if te:
        if te[0] != b"chunked":
            raise Violation(f"Transfer-Encoding {te[0]!r}")
        body = bytearray()
        while True:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                return None
            size_text = data[pos:eol]
            if not _CHUNK_SIZE.match(size_text):
                raise Violation(f"bad chunk size line {size_text[:100]!r} (no extensions expected)")
            size = int(size_text, 16)
            if size == 0:
                if data[eol + 2:eol + 4] == b"":
                    return None
                if data[eol + 2:eol + 4] != b"\r\n":
                    if len(data) < eol + 4:
                        return None
                    raise Violation(f"trailer fields sent: {data[eol + 2:eol + 80]!r}")
                return head, bytes(body), eol + 4, True
            if len(data) < eol + 2 + size + 2:
                return None
            body += data[eol + 2:eol + 2 + size]
            if data[eol + 2 + size:eol + 4 + size] != b"\r\n":
                raise Violation("chunk data not followed by CRLF")
            pos = eol + 4 + size
    length = 0
    if cl:
        if not cl[0].isdigit():
            raise Violation(f"Content-Length {cl[0]!r}")
        length = int(cl[0])
    if len(data) < pos + length:
        return None
    return head, data[pos:pos + length], pos + length, False


class RecordingBackend:
    """The threaded recording server; `start()` returns its port (127.0.0.1)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.conns: list[Conn] = []
        self._sock: socket.socket | None = None
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []

    def start(self) -> int:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, 0))
        s.listen(128)
        self._sock = s
        t = threading.Thread(target=self._accept_loop, name="recording-backend", daemon=True)
        t.start()
        self._threads.append(t)
        return s.getsockname()[1]

    def stop(self) -> None:
        self._stopping = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)

    # -- what the tests read ------------------------------------------------------

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def mark(self) -> tuple[int, int]:
        """A point in the recording: (requests so far, connections so far)."""
        with self._lock:
            return len(self._received), len(self.conns)

    def since(self, mark: tuple[int, int], settle_seconds: float = 0.15) -> tuple[list[Received], list[Conn]]:
        """Requests and connections after `mark`, once nothing new arrived for `settle_seconds`
        (a request the proxy forwarded after answering the client would show up here)."""
        last = None
        quiet_since = time.monotonic()
        while True:
            with self._lock:
                now_state = (len(self._received), sum(len(c.raw) for c in self.conns))
            if now_state != last:
                last = now_state
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle_seconds:
                break
            time.sleep(0.02)
        with self._lock:
            return list(self._received[mark[0]:]), list(self.conns[mark[1]:])

    def conn_with(self, needle: bytes, timeout: float = 5.0) -> Conn:
        """The connection (new or pooled) whose received bytes contain `needle`, once they do."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for c in self.conns:
                    if needle in c.raw:
                        return c
            if time.monotonic() > deadline:
                raise AssertionError(f"the backend never received {needle!r}")
            time.sleep(0.02)

    def violations(self) -> list[str]:
        with self._lock:
            return [f"backend conn {c.index}: {c.violation}" for c in self.conns if c.violation]

    # -- server -------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                conn = Conn(len(self.conns))
                self.conns.append(conn)
                self._clients.append(c)
            t = threading.Thread(target=self._serve, args=(c, conn), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, sock: socket.socket, conn: Conn) -> None:
        buf = b""
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                with self._lock:
                    conn.raw += data
                buf += data
                while True:
                    try:
                        got = parse_one(buf)
                    except Violation as exc:
                        with self._lock:
                            conn.violation = str(exc)
                        return
                    if got is None:
                        break
                    head, body, used, chunked = got
                    rec = Received(conn.index, head, body, buf[:used], chunked)
                    buf = buf[used:]
                    with self._lock:
                        self._received.append(rec)
                    answer = b"backend saw %s body=%d\n" % (rec.request_line, len(body))
                    method = rec.request_line.split(b" ", 1)[0]
                    out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(answer)
                    try:
                        sock.sendall(out if method == b"HEAD" else out + answer)
                    except OSError:
                        return
        finally:
            with self._lock:
                conn.leftover = buf
                conn.closed = True
                if sock in self._clients:
                    self._clients.remove(sock)
            sock.close()
