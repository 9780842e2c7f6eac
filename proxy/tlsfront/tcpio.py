"""Per-connection TCP settings of the data path: TCP_NODELAY and write-through.

Both apply to the TCP transports tlsfront owns (client connections, under the
TLS layer, and backend connections); `tune(transport)` is called from their
`connectionMade`. Measured with `python -m bench.run` (docs/benchmarks.md).

- **TCP_NODELAY** (nginx's `tcp_nodelay on` default; HAProxy sets it too). With
  Nagle on, a response's last partial segment waits for the peer's delayed ACK
  (up to 40 ms on Linux) whenever an earlier segment is unacknowledged: bulk
  responses were latency-bound, not CPU-bound.
- **Write-through.** Twisted's `FileDescriptor.write` never sends at once: it
  queues, registers for EPOLLOUT (`epoll_ctl`), sends on the next loop turn and
  unregisters (`epoll_ctl` again): 4 `epoll_ctl` per proxied request (2 sockets).
  When nothing is queued, `write_through` sends at once and queues only what the
  kernel did not take, so the ordinary path (and back-pressure) handles the rest.

Grammar: `tune(transport)`; a transport without a socket (StringTransport in
tests, a TLS layer) is left alone, so unit tests run unchanged.
"""

from __future__ import annotations

from twisted.internet import tcp

_queue = tcp.Connection.write  # Twisted's own: queue, send on the next loop turn (startTLS aware)
_TUNED: dict[type, type] = {}  # Twisted transport class -> its write-through subclass


def tune(transport) -> None:
    """Set TCP_NODELAY and write-through on a real TCP transport; no-op on others.

    Write-through is the transport's class: `tcp.Server` becomes a subclass whose `write`
    is `write_through` (one subclass per Twisted class, made once). Not a bound method
    stored on the instance: that is a reference cycle (transport -> method -> transport),
    and every closed connection, a TLS one with its SSL object and buffers, waited for the
    cyclic collector (a worker grew from 48 to 72 MiB under full handshakes).
    """
    if not isinstance(transport, tcp.Connection):
        return
    transport.setTcpNoDelay(True)  # Twisted ignores the errors (a connection already reset)
    cls = type(transport)
    if cls.write is not write_through:
        tuned = _TUNED.get(cls)
        if tuned is None:
            tuned = _TUNED[cls] = type(cls.__name__, (cls,), {"write": write_through, "__module__": __name__})
        transport.__class__ = tuned


def write_through(self: tcp.Connection, data: bytes) -> None:
    """`FileDescriptor.write` that sends at once when nothing is queued.

    Relies on Twisted's private write buffer (twisted/internet/abstract.py,
    FileDescriptor.write/doWrite, Twisted 26.10): `dataBuffer` + `offset` (being
    sent) and `_tempDataBuffer`/`_tempDataLen` (queued after it); `doWrite` empties
    both before it calls `stopWriting`. `writeSomeData` (tcp.Connection) returns
    the bytes sent, 0 on EWOULDBLOCK, or an exception when the connection broke:
    then everything is queued and the next `doWrite` reports the loss as usual
    (never from inside `write`, where a protocol does not expect connectionLost).
    tests/proxy/test_tcpio.py checks these assumptions on a real socket pair.
    """
    if (not data or self._tempDataLen or self.offset != len(self.dataBuffer)
            or self.disconnecting or not self.connected or self._writeDisconnected or self.TLS):
        _queue(self, data)
        return
    sent = self.writeSomeData(data)
    if isinstance(sent, Exception) or sent <= 0:
        _queue(self, data)
    elif sent < len(data):
        _queue(self, data[sent:])
