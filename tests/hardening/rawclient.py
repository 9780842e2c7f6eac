"""A raw HTTP/1.1 client side for the hardening tests: send bytes as they are, read the
answers with a small parser of its own (not tlsfront's: the parser is under test).

    status-line = "HTTP/1." DIGIT SP 3DIGIT SP reason CRLF; body by Content-Length or chunked.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


class Reader:
    """Reads answers from one socket, keeping what arrives early for the next one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _more(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError):
            data = b""
        if not data:
            self.eof = True
            raise ConnectionError(f"connection closed; unparsed bytes: {self.buf[:200]!r}")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def answer(self, head_only: bool = False) -> Answer:
        """One response; 1xx interim answers are returned too (the caller decides)."""
        line = self._line()
        parts = line.split(b" ", 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
            raise AssertionError(f"bad status line {line!r}")
        status = int(parts[1])
        headers = []
        while True:
            h = self._line()
            if not h:
                break
            name, _, value = h.partition(b":")
            headers.append((name, value.strip()))
        ans = Answer(status, headers, b"")
        if head_only or status < 200 or status in (204, 304):
            return ans
        te = ans.header(b"transfer-encoding")
        cl = ans.header(b"content-length")
        if te is not None:
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exactly(size)
                assert self._exactly(2) == b"\r\n"
            ans.body = bytes(body)
        elif cl is not None:
            ans.body = self._exactly(int(cl))
        else:  # until close
            while True:
                try:
                    self._more()
                except ConnectionError:
                    break
            ans.body, self.buf = self.buf, b""
        return ans

    def closed(self, timeout: float = 3.0) -> bool:
        """True when the peer closes (EOF, close_notify, reset) within `timeout` with no
        further bytes; False when the connection stays open; bytes that arrive are an error."""
        if self.eof:
            return True
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
            return True
        except (TimeoutError, socket.timeout):
            return False
        if data:
            raise AssertionError(f"unexpected bytes after the answers: {self.buf + data!r}")
        return True


def wait_until(predicate, what: str, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
