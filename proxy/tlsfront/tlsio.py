"""TLS on the connection's own socket: OpenSSL reads and writes the file descriptor.

Why not Twisted's `TLSMemoryBIOProtocol`: with memory BIOs every TLS event is
a Python `recv`, a `bio_write`, the TLS call, a loop of `bio_read` and a Python
`send`, through two protocol layers and a producer membrane per connection.
Measured on this machine (docs/benchmarks.md, "The TLS layer"), per connection
with a full RSA-2048 handshake and a 2-byte answer: TLSMemoryBIOProtocol 487 µs,
a lean memory-BIO protocol of our own 476 µs, OpenSSL on the socket 432 µs.

How: `listeners.PortProtocol` has already read the ClientHello (to tell TLS
from plain HTTP). `start()` feeds it to a memory-BIO `SSL.Connection`, runs the
first handshake step, sends the server's first flight itself, and then points
the SSL object at the socket (`SSL_set_fd`, bound by pyOpenSSL). From then on
`TLSServer` (the connection's class from here on, as Twisted's own startTLS
did before 13.0) calls `SSL_read`/`SSL_write`/`SSL_do_handshake` on the
socket. The SSL object's internal record buffer survives the switch: a record
begun in the memory BIO is finished from the socket.

What the application protocol sees is an ordinary `tcp.Server` transport
(producers, `getPeer`/`getHost`, `abortConnection`), plus:
- `getHandle()`: the `OpenSSL.SSL.Connection` (as with TLSMemoryBIOProtocol);
- `protocol.handshakeCompleted()` when the handshake is done;
- `connectionLost(reason)`: `Failure(SSL.Error)` when the handshake or a record
  failed, `SSL.SysCallError` for an EOF or reset, `ConnectionDone` after a
  close_notify: the reasons `tlserrors.classify` reads.

Closing follows shutdown.py: `loseConnection()` flushes the queued data and
then calls `SSL_shutdown` with the flags the caller set (standard: close_notify
and FIN; unclean: FIN only; accurate: close_notify, then read until the
peer's arrives).

The environment variable TLSFRONT_TLS_IO=memory makes listeners.py use
TLSMemoryBIOProtocol instead (`mode()`; `tlsfront serve` and `demo` refuse a bad value).

Grammar: `start(transport, protocol, conn, first_bytes)`, where `transport` is
a `twisted.internet.tcp.Server` nobody has written to and `conn` a fresh
server-side `SSL.Connection(context, None)`.
"""

from __future__ import annotations

import os

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib
from twisted.internet import main, tcp
from twisted.python.failure import Failure

from . import tcpio

FIRST_FLIGHT_READ = 16384  # bio_read size: one call for any ordinary first flight
# A write of more than one TLS record's plaintext is encrypted into a memory BIO and sent with
# one send(): on the socket BIO, SSL_write (partial-write mode) writes one 16 KiB record per
# call and per syscall. Measured: bulk 1 MiB responses 1.34 ms/MiB on the socket BIO,
# 1.12 ms/MiB on TLSMemoryBIOProtocol (docs/benchmarks.md, "The TLS layer").
BIG_WRITE = 16384
BIG_WRITE_LIMIT = 262144  # plaintext encrypted per call (Twisted's own SEND_LIMIT is 128 KiB)
OUT_READ = 65536
MODES = ("socket", "memory")


def mode(environ=os.environ) -> str:
    """TLSFRONT_TLS_IO: "socket" (default: this module) or "memory" (Twisted's
    TLSMemoryBIOProtocol, for comparison and as a fallback). ValueError names a bad value."""
    value = environ.get("TLSFRONT_TLS_IO", "").strip().lower() or "socket"
    if value not in MODES:
        raise ValueError(f"environment variable TLSFRONT_TLS_IO={value!r} is not one of "
                         f"{', '.join(MODES)}: unset it for the default (socket)")
    return value


class HandshakeAborted(SSL.Error):
    """The client sent more than its ClientHello before our first flight (not TLS)."""


def start(transport: tcp.Server, protocol, conn: SSL.Connection, first_bytes: bytes) -> None:
    """Make `transport` a TLS connection for `protocol`, the ClientHello in `first_bytes`.

    `protocol.makeConnection(transport)` is called first (the connection is
    counted and its handshake deadline set whatever happens next).
    """
    transport.__class__ = TLSServer
    transport._tls_init(conn)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    transport._first_step(first_bytes)


class TLSServer(tcp.Server):
    """A `tcp.Server` whose bytes pass through OpenSSL on the socket (see the module doc)."""

    write = tcpio.write_through  # the client side's write-through (tcpio.tune) survives the class change

    def _tls_init(self, conn: SSL.Connection) -> None:
        self._tls = conn
        self._tls_done = False          # handshake completed
        self._tls_failure = None        # the SSL.Error that ended the handshake, for connectionLost
        self._tls_on_socket = False     # SSL_set_fd done
        self._tls_raw_out = b""         # first-flight bytes the socket did not take yet
        self._tls_hs_want_write = False  # SSL_do_handshake waits for the socket to drain
        self._tls_closing = False       # our close_notify is out; reading until the peer's
        self._tls_shutdown_flags = 0    # set on the SSL object once the queued data is out

    # -- the first flight, over memory BIOs ---------------------------------------------

    def _first_step(self, data: bytes) -> None:
        conn = self._tls
        conn.set_accept_state()
        conn.bio_write(data)
        failure = None
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error as e:
            # Exceptions kept, or returned as a disconnect reason, lose their traceback here and
            # below: its frames hold the connection, a cycle for the garbage collector.
            failure = e.with_traceback(None)
        out = []
        while True:
            try:
                out.append(conn.bio_read(FIRST_FLIGHT_READ))
            except SSL.WantReadError:
                break
        if failure is None and _unread_input(conn):
            # OpenSSL reads until its memory BIO is empty before it answers WANT_READ, so
            # bytes left there were sent after a complete ClientHello and before our answer:
            # no TLS client does that (we accept no 0-RTT data). They cannot follow the switch.
            failure = HandshakeAborted([("SSL routines", "", "unexpected data after the ClientHello")])
        if failure is None:
            # From here on OpenSSL uses the socket; the memory BIOs are freed by SSL_set_fd.
            _lib.SSL_set_fd(conn._ssl, self.socket.fileno())
            conn._into_ssl = conn._from_ssl = None  # pyOpenSSL's bio_* now raise, not touch freed memory
            self._tls_on_socket = True
        if out:
            self._send_raw(b"".join(out))  # a failure shows on the next read (reading is on)
        if failure is not None:
            self._tls_failure = failure
            self.loseConnection()  # after the alert, if any, went out

    def _send_raw(self, data: bytes) -> bool:
        """Send TLS records the socket BIO did not write; queue what the kernel did not
        take (doWrite sends it before anything else). False when the connection broke."""
        try:
            sent = self.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        if sent < len(data):
            self._tls_raw_out = data[sent:]
            self.startWriting()
        return True

    # -- reading ------------------------------------------------------------------------

    def doRead(self):
        if not self._tls_on_socket:
            return None  # the handshake failed on the ClientHello; closing
        conn = self._tls
        if not self._tls_done:
            result = self._handshake()
            if not self._tls_done or result is not None:
                return result
        try:
            data = conn.recv(self.bufferSize)
        except SSL.WantReadError:
            return None
        except SSL.WantWriteError:
            return None  # a TLS 1.3 KeyUpdate answer waits for the socket; epoll calls again
        except SSL.ZeroReturnError:
            return self._peer_closed()
        except SSL.Error as e:  # SysCallError (EOF, reset) included
            if self._tls_closing:
                return main.CONNECTION_DONE
            return e.with_traceback(None)
        if self._tls_closing:
            return None  # data after our close_notify: discarded, as SSL_shutdown would
        return self._dataReceived(data)

    def _handshake(self):
        """One SSL_do_handshake step; a reason to disconnect, or None."""
        try:
            self._tls.do_handshake()
        except SSL.WantReadError:
            return None
        except SSL.WantWriteError:
            self._tls_hs_want_write = True
            self.startWriting()
            return None
        except SSL.Error as e:
            self._tls_failure = e = e.with_traceback(None)
            return e
        self._tls_done = True
        if self._tempDataLen or self.offset != len(self.dataBuffer):
            self.startWriting()  # written before the handshake was done
        self.protocol.handshakeCompleted()
        return None

    def _peer_closed(self):
        """The client's close_notify: answer it after what is queued, as Twisted's TLS did."""
        if self._tls_closing:
            return main.CONNECTION_DONE
        self.close_tls(SSL.RECEIVED_SHUTDOWN)
        return None

    # -- writing ------------------------------------------------------------------------

    def writeSomeData(self, data) -> int | BaseException:
        if not self._tls_done or not data or self._tls_raw_out:
            # Before the handshake: kept queued until it is done (doWrite stops writing
            # meanwhile). Empty (FileDescriptor.doWrite's last call): SSL_write(0) is an error.
            # Encrypted bytes still waiting (a big write's tail): they go first (doWrite).
            return 0
        if len(data) > BIG_WRITE:
            return self._write_big(data)
        try:
            return self._tls.send(data)
        except (SSL.WantWriteError, SSL.WantReadError):
            return 0
        except SSL.SysCallError:
            return main.CONNECTION_LOST
        except SSL.Error as e:
            return e.with_traceback(None)

    def _write_big(self, data) -> int | BaseException:
        """Encrypt up to BIG_WRITE_LIMIT bytes of `data` into a memory BIO, send the records
        with one send(), keep what the socket did not take in _tls_raw_out; the plaintext
        is consumed either way (the return value)."""
        conn = self._tls
        view = memoryview(data)[:BIG_WRITE_LIMIT]
        mem = _lib.BIO_new(_lib.BIO_s_mem())
        _lib.SSL_set_bio(conn._ssl, mem, mem)  # frees the socket BIO; SSL owns `mem`
        conn._from_ssl = mem  # what pyOpenSSL's bio_read reads
        out = []
        try:
            done, n = 0, len(view)
            while done < n:
                done += conn.send(view[done:])  # one record per call (partial-write mode)
            while True:
                try:
                    out.append(conn.bio_read(OUT_READ))
                except SSL.WantReadError:
                    break
        except SSL.Error as e:
            return e.with_traceback(None)
        finally:
            conn._from_ssl = None
            _lib.SSL_set_fd(conn._ssl, self.socket.fileno())  # frees `mem`: back on the socket
        if not self._send_raw(b"".join(out)):
            return main.CONNECTION_LOST
        return n

    def writeSequence(self, iovec) -> None:
        # One TLS record for a response head and its body (and write-through, tcpio.py).
        self.write(b"".join(iovec))

    def doWrite(self):
        if self._tls_raw_out:
            raw, self._tls_raw_out = self._tls_raw_out, b""
            if not self._send_raw(raw):  # keeps what the socket does not take
                return main.CONNECTION_LOST
            if self._tls_raw_out:
                return None
        if self._tls_hs_want_write:
            self._tls_hs_want_write = False
            result = self._handshake()
            if result is not None:
                return result
        if not self._tls_done:
            if self.disconnecting:
                # Closing before the handshake finished: what was queued cannot be encrypted.
                self.dataBuffer, self.offset, self._tempDataBuffer, self._tempDataLen = b"", 0, [], 0
            else:
                self.stopWriting()  # nothing can be encrypted yet; _handshake restarts writing
                return None
        result = tcp.Server.doWrite(self)
        if self._tls_raw_out and result is None:
            self.startWriting()  # a big write's encrypted tail is still to go
        return result

    # -- closing ------------------------------------------------------------------------

    def close_tls(self, flags: int) -> None:
        """`loseConnection()` with OpenSSL shutdown `flags` (shutdown.FLAGS) applied after the
        queued data is encrypted and sent: SSL_write refuses data once SENT_SHUTDOWN is set."""
        self._tls_shutdown_flags |= flags
        self.loseConnection()

    def loseConnection(self) -> None:
        """FileDescriptor.loseConnection, with a short cut: when nothing waits to be written,
        close_notify goes out at once and the connection ends on the next loop turn, as
        abortConnection does (one epoll_ctl instead of an EPOLLOUT round trip: three)."""
        if (self._tls_done and self.connected and not self.disconnecting and self.producer is None
                and not self._tls_raw_out and not self._tempDataLen and self.offset == len(self.dataBuffer)):
            self.disconnecting = 1
            self.stopReading()
            result = self._postLoseConnection()
            if result is not None:
                self.reactor.callLater(0, self._lost_now, result)
            return  # accurate mode: _postLoseConnection went back to reading
        tcp.Server.loseConnection(self)

    def _lost_now(self, reason) -> None:
        if not self.disconnected:
            self.connectionLost(Failure(reason))

    def _postLoseConnection(self):
        """Everything queued is out: send close_notify as shutdown.py's flags say."""
        tls = self._tls
        if not self._tls_done or self._tls_closing:
            return main.CONNECTION_DONE
        if self._tls_raw_out:
            self.startWriting()  # close_notify must follow the last records, not pass them
            return None
        if self._tls_shutdown_flags:
            tls.set_shutdown(tls.get_shutdown() | self._tls_shutdown_flags)
        try:
            done = tls.shutdown()
        except SSL.Error:
            return main.CONNECTION_DONE
        if done or tls.get_shutdown() & SSL.RECEIVED_SHUTDOWN:
            return main.CONNECTION_DONE
        # shutdown.ACCURATE: wait for the client's close_notify (the frontend's deadline aborts).
        self._tls_closing = True
        self.startReading()
        return None

    def getHandle(self) -> SSL.Connection:
        return self._tls

    def connectionLost(self, reason: Failure) -> None:
        if self._tls_failure is not None and not reason.check(SSL.Error):
            reason = Failure(self._tls_failure)
        tcp.Server.connectionLost(self, reason)


_MEM_DATA = _ffi.new("char **")  # BIO_get_mem_data's out-pointer, ignored (one per process)


def _unread_input(conn: SSL.Connection) -> int:
    """Bytes written to the memory BIO that OpenSSL has not read (BIO_get_mem_data)."""
    return _lib.BIO_get_mem_data(conn._into_ssl, _MEM_DATA)
