"""Backend connections: a keep-alive pool, round robin, mark-down, connect timeout.

Theory of operation
-------------------
`Pool` owns every connection to every backend (keyed by `host:port`, shared by
the vhosts that name the same backend) and the mark-down state. `Upstream` is
one vhost's view: its backends in round-robin order.

A request asks `Upstream.connect(sink)`. The upstream picks the next backend
that is not marked down (all of them when every one is down, as nginx does),
and the pool hands over an idle connection (most recently used first, the one
least likely to have been closed by the backend's keep-alive timer) or opens
a new one with the connect timeout. The answer comes back on the `sink` (the
frontend protocol, see `Sink`):

- `backend_connected(conn, backend, reused)`,
- or `backend_failed(backend, kind, detail)` with kind `refused` / `timeout`
  / `error`, after the refusing backends were marked down and the next ones
  tried: a refused connection means nothing was sent, so another backend may
  take the request (issue 2).

A `BackendConnection` carries one exchange at a time (no pipelining towards
backends: legacy servers are bad at it). It parses the response with
`http1.ResponseReader` and passes events to its sink: `backend_head(resp)`,
`backend_body(data)`, `backend_end()`, or `backend_lost(reason, started)` if
the connection dies first; `backend_flush()` after each read's events (the sink
may hold what one read produced and send it at once). After `backend_end` the sink gives the connection
back with `release(reusable)`.

Idle connections close after `backend_idle_seconds` (model.Timeouts).

Connections in use (tlsfront_backend_connections_in_use): a connection is
checked out when it is handed to a sink (`backend_connected`) and returned by
`release`, `detach` or its loss, whichever comes first; the pool counts them per
(vhost, backend) and reports each change through `on_in_use(vhost, backend, n)`.
"""

from __future__ import annotations

from typing import Protocol as _TypingProtocol

from twisted.internet import error as _neterror
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

from . import http1, tcpio
from .model import Backend, Timeouts

DOWN_SECONDS = 10.0  # how long a refusing backend is skipped (nginx's fail_timeout default)
MAX_IDLE_PER_BACKEND = 128


class Sink(_TypingProtocol):  # pragma: no cover - documentation of the callbacks
    def backend_connected(self, conn: "BackendConnection", backend: Backend, reused: bool) -> None: ...
    def backend_failed(self, backend: Backend, kind: str, detail: str) -> None: ...
    def backend_head(self, response: http1.Response) -> None: ...
    def backend_body(self, data: bytes) -> None: ...
    def backend_end(self) -> None: ...
    def backend_flush(self) -> None: ...
    def backend_lost(self, reason: Failure, started: bool) -> None: ...


class BackendConnection(Protocol):
    """One TCP connection to a backend."""

    def __init__(self, pool: "Pool", backend: Backend) -> None:
        self.pool = pool
        self.backend = backend
        self.reader = http1.ResponseReader()
        self.sink = None
        self.reusable = True
        self.requests = 0
        self.idle_call = None
        self.idle_until: float | None = None  # idle in the pool until then (None: in use)
        self.connected_sink = None  # who waits for connectionMade
        self.lost = False
        self._head_request = False
        self.in_use_key: tuple[str, Backend] | None = None  # (vhost, backend) while checked out

    # -- Twisted ----------------------------------------------------------

    def connectionMade(self) -> None:
        tcpio.tune(self.transport)  # TCP_NODELAY, write-through (tcpio.py)
        sink, self.connected_sink = self.connected_sink, None
        if sink is not None:
            sink._pool_connected(self)

    def dataReceived(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:
            # The backend spoke while idle (an early 408 before closing, say):
            # this connection cannot be trusted for another request.
            self.reusable = False
            self.transport.abortConnection()
            return
        try:
            events = self.reader.feed(data)
        except http1.ProtocolError as exc:
            self.sink = None
            self.reusable = False
            self.transport.abortConnection()
            sink.backend_failed(self.backend, "bad_response", exc.detail)
            return
        for event in events:
            if type(event) is bytes:
                sink.backend_body(event)
            elif event is http1.END:
                self.sink = None
                sink.backend_end()
                return  # nothing may follow an answer (no pipelining)
            else:
                if not event.keep_alive or event.until_close or self._head_request:
                    self.reusable = False
                sink.backend_head(event)
            if self.sink is not sink:  # the sink gave up (client gone): stop
                break
        sink.backend_flush()

    def connectionLost(self, reason: Failure = _neterror.ConnectionDone()) -> None:
        self.reader.close()  # and the parser's (ResponseReader.close)
        self.lost = True
        self.reusable = False
        if self.idle_call is not None and self.idle_call.active():
            self.idle_call.cancel()
        self.idle_call = None
        self.pool._forget(self)
        self.pool._checkin(self)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.backend_lost(reason, self.reader.started)

    # -- used by the frontend ------------------------------------------------

    def send_head(self, sink, method: bytes, head: bytes) -> None:
        """Start an exchange: `head` is the serialised request head."""
        self.sink = sink
        self.requests += 1
        self._head_request = method == b"HEAD"
        self.reader.expect(method)
        self.transport.write(head)

    def detach(self) -> None:
        """The sink gives up the exchange (client gone, timeout): close, never reuse."""
        self.sink = None
        self.reusable = False
        self.pool._checkin(self)
        if not self.lost:
            self.transport.abortConnection()

    def release(self, reusable: bool = True) -> None:
        """Give the connection back after `backend_end` (or close it)."""
        self.sink = None
        self.pool._checkin(self)
        if reusable and self.reusable and not self.lost:
            self.pool._put_idle(self)
        elif not self.lost:
            self.reusable = False
            self.transport.loseConnection()


class _ConnectFactory(ClientFactory):
    noisy = False

    def __init__(self, pool: "Pool", backend: Backend, sink, vhost: str = "") -> None:
        self.pool = pool
        self.backend = backend
        self.sink = sink
        self.vhost = vhost

    def buildProtocol(self, addr):
        conn = BackendConnection(self.pool, self.backend)
        conn.factory = self
        conn.connected_sink = self
        return conn

    def _pool_connected(self, conn: BackendConnection) -> None:
        self.pool._all.add(conn)
        self.pool._checkout(conn, self.vhost)
        self.sink.backend_connected(conn, self.backend, False)

    def clientConnectionFailed(self, connector, reason: Failure) -> None:
        self.pool._connect_failed(self.backend, self.sink, reason)


class Pool:
    """All backend connections of one worker process."""

    def __init__(self, reactor, timeouts: Timeouts, *, down_seconds: float = DOWN_SECONDS,
                 on_down=None, on_up=None, on_in_use=None) -> None:
        self.reactor = reactor
        self.timeouts = timeouts
        self.down_seconds = down_seconds
        self.idle: dict[Backend, list[BackendConnection]] = {}
        self.down_until: dict[Backend, float] = {}
        self._all: set[BackendConnection] = set()
        self.on_down = on_down  # callable(backend, seconds) for the error log / metrics
        self.on_up = on_up
        self.on_in_use = on_in_use  # callable(vhost, backend, n): connections carrying a request
        self.in_use: dict[tuple[str, Backend], int] = {}
        self.opened_total = 0
        self.reused_total = 0

    def is_down(self, backend: Backend, now: float) -> bool:
        until = self.down_until.get(backend)
        if until is None:
            return False
        if now >= until:
            del self.down_until[backend]
            if self.on_up is not None:
                self.on_up(backend)
            return False
        return True

    def mark_down(self, backend: Backend) -> None:
        already = backend in self.down_until
        self.down_until[backend] = self.reactor.seconds() + self.down_seconds
        if self.on_down is not None and not already:
            self.on_down(backend, self.down_seconds)

    def get(self, backend: Backend, sink, vhost: str = "") -> None:
        """An idle connection to `backend` now, or a new one when it connects.

        `vhost` (the vhost label) is whom the connection is in use for, for the
        in-use count (`on_in_use`)."""
        idle = self.idle.get(backend)
        while idle:
            conn = idle.pop()
            if conn.lost:
                continue
            conn.idle_until = None  # its idle call, if any, fires and finds it in use
            self.reused_total += 1
            self._checkout(conn, vhost)
            sink.backend_connected(conn, backend, True)
            return
        self.opened_total += 1
        self.reactor.connectTCP(backend.host, backend.port, _ConnectFactory(self, backend, sink, vhost),
                                timeout=self.timeouts.backend_connect_seconds)

    def _connect_failed(self, backend: Backend, sink, reason: Failure) -> None:
        if reason.check(_neterror.TimeoutError):
            self.mark_down(backend)
            sink.backend_failed(backend, "timeout", f"connect timed out after {self.timeouts.backend_connect_seconds:g}s")
            return
        kind = "refused" if reason.check(_neterror.ConnectionRefusedError) else "error"
        self.mark_down(backend)
        sink.backend_failed(backend, kind, reason.getErrorMessage())

    def _checkout(self, conn: BackendConnection, vhost: str) -> None:
        key = (vhost, conn.backend)
        conn.in_use_key = key
        n = self.in_use[key] = self.in_use.get(key, 0) + 1
        if self.on_in_use is not None:
            self.on_in_use(vhost, conn.backend, n)

    def _checkin(self, conn: BackendConnection) -> None:
        """`conn` no longer carries a request (released, detached or lost); idempotent."""
        key = conn.in_use_key
        if key is None:
            return
        conn.in_use_key = None
        n = self.in_use[key] = self.in_use.get(key, 1) - 1
        if self.on_in_use is not None:
            self.on_in_use(key[0], key[1], n)

    def _put_idle(self, conn: BackendConnection) -> None:
        idle = self.idle.setdefault(conn.backend, [])
        if len(idle) >= MAX_IDLE_PER_BACKEND:
            conn.reusable = False
            conn.transport.loseConnection()
            return
        idle.append(conn)
        # One lazy call per connection, not a callLater + cancel per request: the call fires
        # at the first idle deadline and re-arms while the connection was used since.
        conn.idle_until = self.reactor.seconds() + self.timeouts.backend_idle_seconds
        if conn.idle_call is None:
            conn.idle_call = self.reactor.callLater(self.timeouts.backend_idle_seconds, self._idle_expired, conn)

    def _idle_expired(self, conn: BackendConnection) -> None:
        conn.idle_call = None
        if conn.lost:
            return
        until = conn.idle_until
        wait = self.timeouts.backend_idle_seconds if until is None else until - self.reactor.seconds()
        if wait > 1e-6:  # in use, or used again since: check again when it may have expired
            conn.idle_call = self.reactor.callLater(wait, self._idle_expired, conn)
            return
        conn.reusable = False
        conn.transport.loseConnection()

    def _forget(self, conn: BackendConnection) -> None:
        self._all.discard(conn)
        idle = self.idle.get(conn.backend)
        if idle and conn in idle:
            idle.remove(conn)

    def idle_count(self, backend: Backend | None = None) -> int:
        if backend is not None:
            return len(self.idle.get(backend, ()))
        return sum(len(v) for v in self.idle.values())

    def close_idle(self) -> None:
        """Close every idle connection (graceful shutdown)."""
        for idle in list(self.idle.values()):
            for conn in list(idle):
                conn.reusable = False
                conn.transport.loseConnection()
        self.idle.clear()


class Upstream:
    """One vhost's backends, round robin, skipping those marked down."""

    def __init__(self, pool: Pool, backends: tuple[Backend, ...], label: str = "") -> None:
        # A vhost without backends (redirect_to_https: it answers every request itself)
        # still gets one, so that build_sites works; `order()` is never asked for it.
        self.pool = pool
        self.backends = backends
        self.label = label
        self._next = 0

    def order(self) -> list[Backend]:
        """The backends to try for one request, best first.

        The ring advances past the backend chosen, so the live backends
        alternate even when a dead one sits between them.
        """
        backends = self.backends
        n = len(backends)
        if n == 0:
            raise ValueError(f"vhost {self.label}: no backends to forward to")
        if n == 1:
            return [backends[0]]
        start = self._next
        ring = [(start + i) % n for i in range(n)]
        now = self.pool.reactor.seconds()
        up = [i for i in ring if not self.pool.is_down(backends[i], now)]
        chosen = up or ring
        self._next = (chosen[0] + 1) % n
        return [backends[i] for i in chosen] + ([backends[i] for i in ring if i not in up] if up else [])

    def advance_past(self, backend: Backend) -> None:
        """A request moved on to `backend` (the one before refused): the ring follows."""
        try:
            self._next = (self.backends.index(backend) + 1) % len(self.backends)
        except ValueError:
            pass

    def down_count(self) -> int:
        now = self.pool.reactor.seconds()
        return sum(1 for b in self.backends if self.pool.is_down(b, now))
