"""A raw TLS client for wire tests: Python `ssl` over a MemoryBIO on a real socket.

Why a memory BIO: an `ssl.SSLSocket` hides how a connection ended. Here every
TCP read is fed to the TLS object by hand, so the client sees, in order:

- a TLS close_notify alert: `SSLObject.read()` returns ``b""`` (CPython turns
  SSL_ERROR_ZERO_RETURN into an empty read while our own close_notify is unsent)
  or raises `ssl.SSLZeroReturnError`;
- the TCP FIN: `socket.recv()` returns ``b""``; after `MemoryBIO.write_eof()`,
  a read that had no close_notify raises `ssl.SSLEOFError` (an *unclean*
  shutdown, what mod_ssl's ``ssl-unclean-shutdown`` does on purpose).

The HTTP response is parsed here too, by a deliberately small parser of its
own (status line, headers, then Content-Length, chunked or read-until-close),
so a test sees the framing the proxy chose rather than a decoded body:
`Response.framing` is ``"length"``, ``"chunked"``, ``"close"`` or ``"none"``.

Example::

    with RawTLSClient("127.0.0.1", port, cafile) as c:
        x = c.record(b"GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
        x.version, x.connection, x.response.framing      # 'HTTP/1.1', None, 'length'
        x.stayed_open                                    # True: kept alive
        x = c.record(b"GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
        x.stayed_open, x.close_notify_before_fin         # False, True (mod_ssl's standard mode)
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

# Bodies these tests expect are small; a bound keeps a runaway response from hanging a test.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class WireError(AssertionError):
    """The peer did something a test did not expect (closed early, timed out, bad framing)."""


@dataclass
class Response:
    """One HTTP response as it came off the wire."""

    version: str  # "HTTP/1.1" / "HTTP/1.0", from the status line
    status: int
    reason: str
    headers: list[tuple[str, str]]
    framing: str  # "length" | "chunked" | "close" | "none" (HEAD, 1xx, 204, 304)
    body: bytes  # de-chunked
    chunk_sizes: list[int] = field(default_factory=list)  # sizes of the chunks as sent

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    @property
    def connection(self) -> str | None:
        return self.header("Connection")

    @property
    def transfer_encoding(self) -> str | None:
        return self.header("Transfer-Encoding")


@dataclass
class Ending:
    """How the server ended the connection, as seen by the client."""

    close_notify: bool  # a TLS close_notify alert arrived
    fin: bool  # the TCP FIN arrived
    close_notify_before_fin: bool  # both, in that order (a clean TLS shutdown)
    close_notify_at: float | None  # time.monotonic() of each, None when not seen
    fin_at: float | None


@dataclass
class Exchange:
    """One request's record: what a legacy-client test wants to know about it."""

    response: Response
    stayed_open: bool  # nothing ended the connection after the response
    ending: Ending | None  # how the connection ended, when it did

    @property
    def version(self) -> str:
        return self.response.version

    @property
    def connection(self) -> str | None:
        return self.response.connection

    @property
    def transfer_encoding(self) -> str | None:
        return self.response.transfer_encoding

    @property
    def close_notify_before_fin(self) -> bool | None:
        return None if self.ending is None else self.ending.close_notify_before_fin


class RawTLSClient:
    """One TLS connection to (host, port), from `source_ip` when given (for Remote_Addr tests)."""

    def __init__(self, host: str, port: int, cafile: Path | str, server_hostname: str = "localhost",
                 source_ip: str | None = None, timeout: float = 5.0) -> None:
        self.timeout = timeout
        ctx = ssl.create_default_context(cafile=str(cafile))
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source_ip is not None:
            self.sock.bind((source_ip, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self._plain = bytearray()
        self.close_notify_at: float | None = None
        self.fin_at: float | None = None
        self.unclean_eof = False  # FIN without close_notify (SSLEOFError)
        self._handshake()

    # -- plumbing ----------------------------------------------------------------------

    def _handshake(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._recv_once(deadline - time.monotonic()):
                    raise WireError("TLS handshake: no answer from the server in time") from None
                if self.fin_at is not None:
                    raise WireError("TLS handshake: the server closed the connection") from None
        self._flush()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self.sock.sendall(data)

    def _recv_once(self, timeout: float) -> bool:
        """One socket read (False: nothing within `timeout`); TLS records go to the BIO."""
        if self.fin_at is not None:
            return False
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
        if not ready:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if data:
            self._incoming.write(data)
        else:
            self.fin_at = time.monotonic()
            self._incoming.write_eof()
        return True

    def _drain_tls(self) -> None:
        """Decrypt what the BIO holds into the plaintext buffer; note close_notify / unclean EOF."""
        while self.close_notify_at is None and not self.unclean_eof:
            try:
                data = self.tls.read(65536)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                data = b""
            except ssl.SSLEOFError:
                self.unclean_eof = True
                return
            if not data:
                self.close_notify_at = time.monotonic()
                return
            self._plain += data
            if len(self._plain) > MAX_RESPONSE_BYTES:
                raise WireError(f"more than {MAX_RESPONSE_BYTES} bytes of response")

    def _pump(self, deadline: float) -> bool:
        """Read more from the wire; False when the connection ended or the deadline passed."""
        if self.close_notify_at is not None or self.unclean_eof or self.fin_at is not None:
            self._drain_tls()
            return False
        if not self._recv_once(deadline - time.monotonic()):
            return False
        self._drain_tls()
        return True

    @property
    def ended(self) -> bool:
        """The server ended the stream (close_notify or FIN seen)."""
        return self.close_notify_at is not None or self.fin_at is not None

    # -- HTTP -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def _need_line(self, deadline: float) -> bytes:
        while True:
            i = self._plain.find(b"\r\n")
            if i >= 0:
                line = bytes(self._plain[:i])
                del self._plain[:i + 2]
                return line
            if not self._pump(deadline) and self._plain.find(b"\r\n") < 0:
                raise WireError(f"connection ended or timed out inside a line: {bytes(self._plain[:200])!r}")

    def _need(self, n: int, deadline: float) -> bytes:
        while len(self._plain) < n:
            if not self._pump(deadline) and len(self._plain) < n:
                raise WireError(f"connection ended or timed out: {len(self._plain)} of {n} bytes")
        data = bytes(self._plain[:n])
        del self._plain[:n]
        return data

    def read_response(self, method: bytes = b"GET") -> Response:
        """Read one response, framed as RFC 9112 section 6.3 says a client must."""
        deadline = time.monotonic() + self.timeout
        status_line = self._need_line(deadline).decode("latin-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        headers: list[tuple[str, str]] = []
        while True:
            line = self._need_line(deadline)
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        r = Response(version, int(code), reason, headers, "none", b"")
        te = (r.transfer_encoding or "").lower()
        if method == b"HEAD" or r.status < 200 or r.status in (204, 304):
            return r
        if te:
            if te != "chunked":
                raise WireError(f"Transfer-Encoding {te!r}: only chunked is expected")
            r.framing = "chunked"
            body = bytearray()
            while True:
                size = int(self._need_line(deadline).split(b";", 1)[0], 16)
                r.chunk_sizes.append(size)
                if size == 0:
                    while self._need_line(deadline):  # trailer fields, then the empty line
                        pass
                    break
                body += self._need(size, deadline)
                if self._need(2, deadline) != b"\r\n":
                    raise WireError("chunk data not followed by CRLF")
            r.body = bytes(body)
        elif r.header("Content-Length") is not None:
            r.framing = "length"
            r.body = self._need(int(r.header("Content-Length")), deadline)
        else:
            r.framing = "close"
            while self._pump(deadline):
                pass
            if not self.ended:
                raise WireError("a close-delimited body, but the connection stayed open")
            r.body, self._plain = bytes(self._plain), bytearray()
        return r

    def exchange(self, request: bytes, method: bytes = b"GET") -> Response:
        self.send(request)
        return self.read_response(method)

    def record(self, request: bytes, method: bytes = b"GET", answer_close_notify: bool = False,
               wait: float = 0.3, close_timeout: float = 3.0) -> Exchange:
        """Send `request`, read the response, then see whether the connection stays open.

        A response that announces the close (`Connection: close`, or a body delimited by the
        close) is followed to the FIN, however slow the machine; any other must stay open
        for `wait` seconds. With `answer_close_notify`, the server's close_notify is answered
        with ours (what mod_ssl's accurate mode waits for) before waiting for the FIN.
        """
        r = self.exchange(request, method)
        announced = (r.connection or "").lower() == "close" or r.framing == "close"
        if not announced and self.stays_open(wait):
            return Exchange(r, True, None)
        if answer_close_notify:
            deadline = time.monotonic() + close_timeout
            while self.close_notify_at is None and self.fin_at is None and self._pump(deadline):
                pass
            self.send_close_notify()
        return Exchange(r, False, self.wait_closed(close_timeout))

    # -- how the connection ends ---------------------------------------------------------

    def stays_open(self, wait: float = 0.3) -> bool:
        """Nothing (no byte, no close_notify, no FIN) arrives for `wait` seconds."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self._pump(deadline)
            if self.ended or self._plain:
                return False
        return not self.ended

    def wait_closed(self, timeout: float = 3.0) -> Ending:
        """Read until the FIN (or `timeout`); report close_notify and FIN, in order."""
        deadline = time.monotonic() + timeout
        while self.fin_at is None and time.monotonic() < deadline:
            if self.close_notify_at is not None or self.unclean_eof:
                self._recv_once(deadline - time.monotonic())  # only the FIN is left to see
            else:
                self._pump(deadline)
        return self.ending()

    def ending(self) -> Ending:
        cn, fin = self.close_notify_at, self.fin_at
        return Ending(cn is not None, fin is not None, cn is not None and fin is not None and cn <= fin, cn, fin)

    def send_close_notify(self) -> None:
        """Answer with our own close_notify (what mod_ssl's accurate mode waits for)."""
        try:
            self.tls.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
            pass
        self._flush()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawTLSClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
