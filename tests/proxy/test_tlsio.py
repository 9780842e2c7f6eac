"""tlsio: TLS on the connection's own socket, driven step by step.

The server side is tlsio.TLSServer (a twisted tcp.Server) over a connected
127.0.0.1 socket, with a MemoryReactor standing in for the event loop: the
test calls doRead/doWrite when the real loop would (`reactor.readers` and
`reactor.writers` say which it would). The client is Python's ssl over memory
BIOs, pumped by hand over the peer socket, so every byte on the wire is seen.
The end-to-end tests (test_e2e*.py, test_quirks_wire.py, ...) cover the same
code under a running tlsfront.
"""

from __future__ import annotations

import socket
import ssl

import pytest
from OpenSSL import SSL
from twisted.internet import error, tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from helpers import tcp_pair
from tlsfront import certgen, shutdown, tlserrors, tlsio


class App(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.handshakes = 0
        self.lost = None

    def handshakeCompleted(self) -> None:
        self.handshakes += 1

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason=None) -> None:
        self.lost = reason
        self.transport._test_lost_reason = reason.value if reason is not None else None


class _Port:
    _realPortNumber = 0


@pytest.fixture(scope="module")
def server_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tlsio")
    ca = certgen.issue("tlsio test CA", is_ca=True)
    ca.write(d / "ca.crt", d / "ca.key")
    leaf = certgen.issue("localhost", issuer=ca, dns_names=("localhost",))
    leaf.write(d / "leaf.crt", d / "leaf.key")
    # A leaf whose first flight (~60 KB) is more than a small socket buffer takes at once.
    big = certgen.issue("localhost", issuer=ca, dns_names=("localhost",) + tuple(
        f"name-{i:05d}.a-long-subdomain-to-make-the-certificate-large.example" for i in range(800)))
    big.write(d / "big.crt", d / "big.key")
    return d


def server_context(d, leaf: str = "leaf") -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.use_certificate_file(str(d / f"{leaf}.crt"))
    ctx.use_privatekey_file(str(d / f"{leaf}.key"))
    ctx.set_cipher_list(b"ECDHE+AESGCM")
    return ctx


class Client:
    """Python ssl over memory BIOs on the peer socket."""

    def __init__(self, sock: socket.socket, d, **ctx_args) -> None:
        self.sock = sock
        ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
        for name, value in ctx_args.items():
            setattr(ctx, name, value) if name != "ciphers" else ctx.set_ciphers(value)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.fin = False

    def hello(self) -> bytes:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def pull(self, timeout: float = 0.2) -> bytes:
        """Everything the server has sent so far (raw)."""
        self.sock.settimeout(timeout)
        got = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.fin = True
                    break
                got += chunk
        except (socket.timeout, BlockingIOError):
            pass
        except ConnectionResetError:
            self.fin = True
        self.incoming.write(got)
        return got

    def push(self) -> None:
        out = self.outgoing.read()
        if out:
            self.sock.sendall(out)

    def step_handshake(self) -> bool:
        try:
            self.tls.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False
        finally:
            self.push()

    def read_plain(self) -> tuple[bytes, bool]:
        """(plaintext available, close_notify seen)."""
        out = b""
        try:
            while True:
                chunk = self.tls.read(65536)
                if not chunk:
                    return out, True
                out += chunk
        except ssl.SSLWantReadError:
            return out, False
        except ssl.SSLZeroReturnError:
            return out, True


@pytest.fixture
def pair():
    ours, peer, addr = tcp_pair()
    yield ours, peer, addr
    peer.close()
    try:
        ours.close()
    except OSError:
        pass


def make_server(ours, addr, app) -> tuple[tcp.Server, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    transport = tcp.Server(ours, Protocol(), addr, _Port(), 1, reactor)
    return transport, reactor


def handshake(transport, client: Client, app: App) -> None:
    for _ in range(20):
        client.pull()
        if client.step_handshake():
            break
    else:
        raise AssertionError("client handshake did not finish")
    server_finishes_handshake(transport, app)


def server_finishes_handshake(transport, app: App) -> None:
    """doRead (as the loop would) until the server side has read the client's last flight."""
    for _ in range(20):
        if app.handshakes:
            break
        transport.doRead()
    assert app.handshakes == 1


def send_to_server(transport, client: Client, app: App, data: bytes) -> None:
    """The client writes `data`; the server reads (doRead, as the loop would) until it arrives."""
    client.tls.write(data)
    client.push()
    for _ in range(20):
        transport.doRead()
        if app.data:
            break


def connect(pair, server_files, leaf="leaf", **client_args):
    ours, peer, addr = pair
    app = App()
    transport, reactor = make_server(ours, addr, app)
    client = Client(peer, server_files, **client_args)
    first = client.hello()
    tlsio.start(transport, app, SSL.Connection(server_context(server_files, leaf), None), first)
    return transport, reactor, client, app


def run_close(transport, reactor) -> object:
    """What the reactor does after loseConnection: doWrite until it returns a reason, or the
    connectionLost that TLSServer.loseConnection scheduled for the next turn. Returns the
    reason (None: still open)."""
    for _ in range(20):
        if transport.disconnected:
            return transport._test_lost_reason
        reactor.advance(0)
        if transport not in reactor.writers:
            continue
        why = transport.doWrite()
        if why is not None:
            transport.connectionLost(Failure(why))
    return None if not transport.disconnected else transport._test_lost_reason


def test_handshake_data_both_ways_and_standard_close(pair, server_files):
    transport, reactor, client, app = connect(pair, server_files)
    assert transport._tls_on_socket  # the switch to the socket happened after the first flight
    handshake(transport, client, app)
    assert isinstance(transport.getHandle(), SSL.Connection)
    assert transport.getHandle().get_protocol_version_name() == "TLSv1.3"
    send_to_server(transport, client, app, b"GET / HTTP/1.1\r\n\r\n")
    assert app.data == b"GET / HTTP/1.1\r\n\r\n"
    transport.write(b"HTTP/1.1 200 OK\r\n\r\nhi")  # write-through is tcpio's; here it queues
    transport.writeSequence([b" and", b" more"])
    shutdown.close(transport, shutdown.STANDARD)
    why = run_close(transport, reactor)
    assert isinstance(why, error.ConnectionDone)
    client.pull()
    plain, close_notify = client.read_plain()
    assert plain == b"HTTP/1.1 200 OK\r\n\r\nhi and more"
    assert close_notify and client.fin
    assert app.lost.check(error.ConnectionDone)


def test_unclean_shutdown_sends_no_close_notify(pair, server_files):
    transport, reactor, client, app = connect(pair, server_files)
    handshake(transport, client, app)
    transport.write(b"bye")
    shutdown.close(transport, shutdown.UNCLEAN)
    run_close(transport, reactor)
    client.pull()
    plain, close_notify = client.read_plain()
    assert plain == b"bye" and not close_notify and client.fin


def test_accurate_shutdown_waits_for_the_clients_close_notify(pair, server_files):
    transport, reactor, client, app = connect(pair, server_files)
    handshake(transport, client, app)
    shutdown.close(transport, shutdown.ACCURATE)
    assert run_close(transport, reactor) is None  # close_notify sent; still open
    assert transport in reactor.readers and app.lost is None
    client.pull()
    assert client.read_plain() == (b"", True) and not client.fin
    client.tls.unwrap() if False else None
    try:
        client.tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    client.push()  # the client's close_notify
    why = None
    for _ in range(20):
        why = transport.doRead()
        if why is not None:
            break
    assert isinstance(why, error.ConnectionDone)


def test_clients_close_notify_is_answered(pair, server_files):
    transport, reactor, client, app = connect(pair, server_files)
    handshake(transport, client, app)
    try:
        client.tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    client.push()
    for _ in range(20):
        if transport.doRead() is not None or transport.disconnecting:
            break
    assert transport.disconnecting  # loseConnection: queued data first, then our close_notify
    why = run_close(transport, reactor)
    assert isinstance(why, error.ConnectionDone)
    client.pull()
    assert client.read_plain() == (b"", True)


def test_data_written_before_the_handshake_waits_for_it(pair, server_files):
    transport, reactor, client, app = connect(pair, server_files)
    transport.write(b"early")
    assert transport.doWrite() is None and transport not in reactor.writers  # not spinning on EPOLLOUT
    handshake(transport, client, app)
    assert transport in reactor.writers  # restarted by the handshake
    assert transport.doWrite() is None
    client.pull()
    assert client.read_plain() == (b"early", False)


def test_first_flight_larger_than_the_socket_buffer(pair, server_files):
    ours, peer, addr = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    transport, reactor, client, app = connect(pair, server_files, leaf="big")
    assert transport._tls_raw_out, "the kernel took the whole first flight: the test proves nothing"
    assert transport in reactor.writers
    for _ in range(200):
        client.pull(timeout=0.05)
        if transport in reactor.writers:
            transport.doWrite()
        if not transport._tls_raw_out and client.step_handshake():
            break
    else:
        raise AssertionError("handshake did not finish")
    server_finishes_handshake(transport, app)


def test_handshake_failure_sends_the_alert_and_names_the_reason(pair, server_files):
    # The client offers only CBC suites under TLS 1.2; the server only AES-GCM.
    transport, reactor, client, app = connect(pair, server_files, maximum_version=ssl.TLSVersion.TLSv1_2,
                                              ciphers="ECDHE+AES128+SHA")
    why = run_close(transport, reactor)
    assert isinstance(why, SSL.Error)  # what the protocol sees, not the TCP close under it
    assert tlserrors.classify(app.lost).reason == "no_shared_cipher"
    client.pull()
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE|handshake failure"):
        client.tls.do_handshake()


def test_a_record_begun_with_the_hello_is_finished_from_the_socket(pair, server_files):
    """OpenSSL keeps a partly read record in its own buffer across SSL_set_fd: the first two
    bytes of a ChangeCipherSpec record come with the ClientHello, the rest over the socket.
    (TLS 1.3 servers drop one CCS before the client's Finished, RFC 8446 D.4; had the two bytes
    been lost, "\\x03\\x00\\x01\\x01" would be read as a record header and fail.)"""
    ours, peer, addr = pair
    app = App()
    transport, reactor = make_server(ours, addr, app)
    client = Client(peer, server_files)
    ccs = b"\x14\x03\x03\x00\x01\x01"
    tlsio.start(transport, app, SSL.Connection(server_context(server_files), None), client.hello() + ccs[:2])
    assert transport._tls_on_socket
    peer.sendall(ccs[2:])
    assert transport.doRead() is None and app.lost is None
    handshake(transport, client, app)


def test_bytes_after_the_client_hello_are_a_handshake_failure(pair, server_files):
    ours, peer, addr = pair
    app = App()
    transport, reactor = make_server(ours, addr, app)
    client = Client(peer, server_files)
    first = client.hello() + b"\x17\x03\x03\x00\x05hello"
    tlsio.start(transport, app, SSL.Connection(server_context(server_files), None), first)
    assert not transport._tls_on_socket
    run_close(transport, reactor)
    assert app.lost.check(SSL.Error)
    assert tlserrors.classify(app.lost).reason == "other"


def test_mode_reads_the_environment():
    assert tlsio.mode({}) == "socket"
    assert tlsio.mode({"TLSFRONT_TLS_IO": "Memory"}) == "memory"
    with pytest.raises(ValueError, match="TLSFRONT_TLS_IO='bio' is not one of socket, memory"):
        tlsio.mode({"TLSFRONT_TLS_IO": "bio"})


def test_unread_input_counts_what_openssl_has_not_read(server_files):
    # The guard before SSL_set_fd: bytes still in the memory BIO could not follow the switch.
    # OpenSSL 3/4 read the BIO dry before answering WANT_READ, so it never fires in the tests
    # above; this pins the helper it relies on.
    conn = SSL.Connection(server_context(server_files), None)
    assert tlsio._unread_input(conn) == 0
    conn.bio_write(b"\x16\x03\x01\x00\x05hello")
    assert tlsio._unread_input(conn) == 10


def test_big_writes_go_out_whole_and_in_order_then_close_notify(pair, server_files):
    """Writes of more than one record are encrypted into a memory BIO and sent at once; with
    a socket buffer too small for them, the encrypted tail waits and goes first: a small
    write after it and the close_notify come after it on the wire."""
    ours, peer, addr = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport, reactor, client, app = connect(pair, server_files)
    handshake(transport, client, app)
    big = bytes(range(256)) * 2048  # 512 KiB: more than one call's BIG_WRITE_LIMIT
    transport.write(big)
    transport.write(b"small after big")
    shutdown.close(transport, shutdown.STANDARD)
    got, close_notify, why, tail_waited = b"", False, None, False
    for _ in range(2000):
        if transport in reactor.writers:
            why = transport.doWrite()
            tail_waited = tail_waited or bool(transport._tls_raw_out)
            if why is not None:
                transport.connectionLost(Failure(why))
                break
        reactor.advance(0)
        if transport.disconnected:
            why = transport._test_lost_reason
            break
        client.pull(timeout=0.01)
        plain, close_notify = client.read_plain()
        got += plain
    for _ in range(200):  # the kernel still holds the end (a 4 KiB window drains slowly)
        client.pull(timeout=0.05)
        plain, close_notify = client.read_plain()
        got += plain
        if client.fin:
            break
    assert tail_waited, "the kernel took every big write at once: the test proves nothing"
    assert got == big + b"small after big"
    assert close_notify and isinstance(why, error.ConnectionDone)


def test_a_big_write_is_encrypted_once_and_sent_with_few_sends(pair, server_files):
    transport, reactor, client, app = connect(pair, server_files)
    handshake(transport, client, app)
    sends = []
    real_send = transport.socket.send

    class Counting:
        def __init__(self, sock):
            self._sock = sock

        def send(self, data):
            sends.append(len(data))
            return real_send(data)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    transport.socket = Counting(transport.socket)
    assert transport.writeSomeData(b"x" * 200_000) == 200_000
    assert len(sends) == 1 and sends[0] > 200_000  # 13 records, one send()
    got = b""
    for _ in range(50):
        client.pull(timeout=0.05)
        got += client.read_plain()[0]
        if len(got) >= 200_000:
            break
    assert got == b"x" * 200_000
    assert transport.getHandle().get_protocol_version_name() == "TLSv1.3"  # still on the socket
    send_to_server(transport, client, app, b"after")
    assert app.data == b"after"


def test_close_with_nothing_queued_sends_close_notify_at_once(pair, server_files):
    transport, reactor, client, app = connect(pair, server_files)
    handshake(transport, client, app)
    transport.write(b"done")  # write-through: sent at once
    assert transport.doWrite() is None  # (what the loop would do had it been queued: nothing left)
    shutdown.close(transport, shutdown.STANDARD)
    assert transport not in reactor.writers and transport not in reactor.readers  # no EPOLLOUT turn
    client.pull()
    assert client.read_plain() == (b"done", True)  # close_notify is already out
    assert app.lost is None  # the connection ends on the next loop turn, as abortConnection's does
    reactor.advance(0)
    assert app.lost.check(error.ConnectionDone)
    client.pull()
    assert client.fin


def test_a_closed_connection_is_freed_without_the_cyclic_collector(pair, server_files):
    """Write-through (tcpio.tune) is the transport's class, not a bound method stored on it (a
    reference cycle), so the SSL object and its buffers go at once. With the cycle, a worker
    under full handshakes grew from 48 to 72 MiB (docs/benchmarks.md, round 5)."""
    import gc
    import weakref

    from tlsfront import tcpio

    transport, reactor, client, app = connect(pair, server_files)
    tcpio.tune(transport)
    handshake(transport, client, app)
    handle = weakref.ref(transport.getHandle())
    shutdown.close(transport, shutdown.STANDARD)
    reactor.advance(0)
    assert app.lost.check(error.ConnectionDone)
    gc.disable()
    try:
        app.transport = None
        del transport, app
        reactor.__dict__.clear()  # the test reactor's records of the connection
        assert handle() is None, gc.get_referrers(handle())
    finally:
        gc.enable()
