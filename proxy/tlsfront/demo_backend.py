"""The demo backend: a small HTTP/1.1 app that shows what the proxy forwarded.

Routes (any method):

- `/bytes/N`    N bytes of 'x' with Content-Length, streamed with back-pressure;
- `/chunked/N`  the same, chunked (no Content-Length);
- `/close/N`    the same, HTTP/1.0-style: no length, the end is the close;
- `/slow/S`     answers after S seconds (for 504 tests);
- anything else: `200 text/plain`: the request line, then each header line as
  received, then `backend: IP:PORT` (which backend answered),
  `connection-requests: N` (requests seen on this TCP connection: keep-alive
  reuse), `body-bytes: N` and `body-sha256: HEX` of the request body (streamed:
  the body is never held in memory).

Keep-alive and chunked request bodies are supported. It reuses tlsfront's own
sans-IO parser (http1.RequestReader), so it is small and strict; run it alone
with `python -m tlsfront.demo_backend [PORT [HOST [RECORD_FILE]]]`. With a
RECORD_FILE, every complete request it receives is appended there as one line,
`METHOD TARGET body=N sha256=HEX`: the tests' "what did the backend get".
"""

from __future__ import annotations

import hashlib
import sys

from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from . import http1

BLOCK = 64 * 1024
_BLOCK_DATA = b"x" * BLOCK


@implementer(IPullProducer)
class _Bytes:
    """Writes `remaining` bytes of 'x' as the transport asks for them."""

    def __init__(self, proto: "EchoProtocol", remaining: int, chunked: bool, then) -> None:
        self.proto = proto
        self.remaining = remaining
        self.chunked = chunked
        self.then = then

    def resumeProducing(self) -> None:
        transport = self.proto.transport
        n = min(BLOCK, self.remaining)
        if n:
            data = _BLOCK_DATA if n == BLOCK else _BLOCK_DATA[:n]
            if self.chunked:
                transport.writeSequence(http1.chunk(data))
            else:
                transport.write(data)
            self.remaining -= n
        if not self.remaining:
            transport.unregisterProducer()
            if self.chunked:
                transport.write(http1.LAST_CHUNK)
            self.then()

    def stopProducing(self) -> None:
        self.remaining = 0


class EchoProtocol(Protocol):
    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.reader = http1.RequestReader(http1.ReaderLimits(max_body_bytes=1 << 62))
        self.req = None
        self.hash = None
        self.body_bytes = 0
        self.busy = False
        self.backlog: list[bytes] = []
        self.requests_seen = 0

    def dataReceived(self, data: bytes) -> None:
        if self.busy:
            self.backlog.append(data)
            return
        try:
            events = self.reader.feed(data)
        except http1.ProtocolError as exc:
            self.transport.write(http1.simple_response(exc.status, exc.detail.encode() + b"\n"))
            self.transport.loseConnection()
            return
        for i, event in enumerate(events):
            if type(event) is bytes:
                self.hash.update(event)
                self.body_bytes += len(event)
            elif event is http1.END:
                rest = events[i + 1:]
                self._record()
                self.busy = True
                self._respond()
                if rest:  # pipelined: replay later (rare in a demo)
                    self._pending = rest
                return
            else:
                self.req = event
                self.hash = hashlib.sha256()
                self.body_bytes = 0
                self.requests_seen += 1

    _pending: list | None = None

    def _record(self) -> None:
        record = self.factory.record
        if record is not None:
            req = self.req
            record.write(b"%s %s body=%d sha256=%s\n" % (
                req.method, req.target, self.body_bytes, self.hash.hexdigest().encode()))
            record.flush()

    def _done(self) -> None:
        keep = self.req.keep_alive
        self.busy = False
        self.req = None
        if not keep:
            self.transport.loseConnection()
            return
        pending, self._pending = self._pending, None
        if pending:
            # Re-run the already parsed events.
            for i, event in enumerate(pending):
                if type(event) is bytes:
                    self.hash.update(event)
                    self.body_bytes += len(event)
                elif event is http1.END:
                    self._record()
                    self.busy = True
                    self._pending = pending[i + 1:] or None
                    self._respond()
                    return
                else:
                    self.req, self.hash, self.body_bytes = event, hashlib.sha256(), 0
        backlog, self.backlog = self.backlog, []
        for data in backlog:
            self.dataReceived(data)

    def _head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        keep = self.req.keep_alive
        version = self.req.version
        if not keep:
            headers.append((b"Connection", b"close"))
        elif version == b"1.0":
            headers.append((b"Connection", b"keep-alive"))
        self.transport.write(http1.response_head_bytes(b"1.1", status, http1.REASONS.get(status, b"OK"), headers))

    def _respond(self) -> None:
        req = self.req
        path = req.target.split(b"?", 1)[0]
        parts = path.strip(b"/").split(b"/")
        route = parts[0] if parts else b""
        arg = parts[1] if len(parts) > 1 else b""
        if route in (b"bytes", b"chunked", b"close") and arg.isdigit():
            n = int(arg)
            chunked = route == b"chunked" and req.version == b"1.1"
            headers = [(b"Content-Type", b"application/octet-stream")]
            if route == b"bytes":
                headers.append((b"Content-Length", b"%d" % n))
            elif chunked:
                headers.append((b"Transfer-Encoding", b"chunked"))
            else:
                req.keep_alive = False  # the end of the body is the close
            self._head(200, headers)
            if req.method == b"HEAD":
                self._done()
                return
            self.transport.registerProducer(_Bytes(self, n, chunked, self._done), False)
            return
        if route == b"slow":
            try:
                seconds = float(arg.decode())
            except ValueError:
                seconds = 1.0
            self.reactor.callLater(seconds, self._echo)
            return
        self._echo()

    def _echo(self) -> None:
        if self.transport is None or not self.transport.connected:
            return
        req = self.req
        lines = [b"%s %s HTTP/%s" % (req.method, req.target, req.version)]
        lines += [n + b": " + v for n, v in req.headers]
        host = self.transport.getHost()
        lines += [b"backend: %s:%d" % (host.host.encode(), host.port),
                  b"connection-requests: %d" % self.requests_seen,
                  b"body-bytes: %d" % self.body_bytes,
                  b"body-sha256: " + self.hash.hexdigest().encode()]
        body = b"\n".join(lines) + b"\n"
        self._head(200, [(b"Content-Type", b"text/plain; charset=utf-8"),
                         (b"Content-Length", b"%d" % len(body))])
        if req.method != b"HEAD":
            self.transport.write(body)
        self._done()


class EchoFactory(Factory):
    noisy = False

    def __init__(self, reactor, record_path: str | None = None) -> None:
        self.reactor = reactor
        self.connections = 0
        self.record = open(record_path, "ab") if record_path else None

    def buildProtocol(self, addr):
        self.connections += 1
        p = EchoProtocol(self.reactor)
        p.factory = self
        return p


def listen(reactor, port: int = 8081, interface: str = "127.0.0.1", record_path: str | None = None):
    """Start the echo app in `reactor`; returns the IListeningPort."""
    return reactor.listenTCP(port, EchoFactory(reactor, record_path), interface=interface)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    port = int(argv[0]) if argv else 8081
    interface = argv[1] if len(argv) > 1 else "127.0.0.1"
    record_path = argv[2] if len(argv) > 2 else None
    from twisted.internet import reactor

    p = listen(reactor, port, interface, record_path)
    print(f"demo backend on http://{interface}:{p.getHost().port}/", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
