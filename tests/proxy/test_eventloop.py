"""eventloop.Reactor: Twisted's epoll reactor without the per-event logging context.

A real reactor instance (not installed as the global one) runs real sockets:
reads and writes are dispatched, a handler that raises costs only its own
connection, and a descriptor closed by an earlier handler in the same poll
result is skipped.
"""

from __future__ import annotations

import socket

from twisted.internet import epollreactor
from twisted.internet.protocol import Factory, Protocol

from tlsfront import eventloop


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("a handler bug")
        self.transport.write(data.upper())


def run_clients(reactor, port: int, payloads: list[bytes]) -> list[bytes]:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in payloads]
    for s, p in zip(socks, payloads):
        s.sendall(p)
        s.setblocking(False)
    answers = [b""] * len(payloads)
    closed = [False] * len(payloads)

    def poll_clients() -> None:
        for i, s in enumerate(socks):
            try:
                chunk = s.recv(100)
                answers[i] += chunk
                closed[i] = closed[i] or chunk == b""
            except BlockingIOError:
                pass
        if all(a or c for a, c in zip(answers, closed)):
            reactor.stop()
        else:
            reactor.callLater(0.01, poll_clients)

    reactor.callLater(0.01, poll_clients)
    reactor.callLater(10, reactor.stop)  # a bound, should the dispatch be broken
    reactor.run(installSignalHandlers=False)
    for s in socks:
        s.close()
    return answers


def test_reactor_is_epoll_and_dispatches_reads_and_writes():
    reactor = eventloop.Reactor()
    assert isinstance(reactor, epollreactor.EPollReactor)
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    answers = run_clients(reactor, port.getHost().port, [b"one", b"boom", b"three"])
    # the raising handler's connection is closed (b""), the others are answered
    assert answers == [b"ONE", b"", b"THREE"]


def test_descriptor_gone_before_its_event_is_skipped():
    reactor = eventloop.Reactor()
    a, b = socket.socketpair()
    calls = []

    class Reader:
        def __init__(self, sock) -> None:
            self.sock = sock

        def fileno(self) -> int:
            return self.sock.fileno()

        def logPrefix(self) -> str:
            return "reader"

        def doRead(self):
            calls.append(self.sock)
            # the first handler removes the other reader before its turn
            for r in readers:
                if r is not self:
                    reactor.removeReader(r)
            return None

        def connectionLost(self, reason) -> None:
            pass

    readers = [Reader(a), Reader(b)]
    for r in readers:
        reactor.addReader(r)
    a.send(b"x")
    b.send(b"y")  # both readable: one poll result holds both
    reactor.doPoll(1)
    assert len(calls) == 1
    for s in (a, b):
        s.close()
