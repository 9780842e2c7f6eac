"""tlserrors: real failed handshakes -> the fixed reason set.

The errors come from real handshakes: a pyOpenSSL server (the proxy's TLS
stack) against Python's ssl client in memory, and against `openssl s_client`
over a socket. The table is also checked against OpenSSL 1.1 spellings, which
this machine cannot produce (taken from Apache/mod_ssl bug reports).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL
from twisted.internet import error as terror
from twisted.python.failure import Failure

from tlsfront import certgen, tlserrors
from tlsfront.logformat import MESSAGES, ErrorLogFormatter
from tlsfront.tlserrors import HandshakeFailure

OPENSSL = shutil.which("openssl")


# -- the table, spelled the 1.1 and 3.x ways ----------------------------------------------------

@pytest.mark.parametrize("errors, reason, alert", [
    ([("SSL routines", "", "no shared cipher")], "no_shared_cipher", None),
    ([("SSL routines", "tls_post_process_client_hello", "no shared cipher")], "no_shared_cipher", None),
    ([("SSL routines", "", "unsupported protocol")], "unsupported_protocol", None),
    ([("SSL routines", "tls_early_post_process_client_hello", "unsupported protocol")], "unsupported_protocol", None),
    ([("SSL routines", "", "version too low")], "unsupported_protocol", None),
    ([("SSL routines", "ssl3_read_bytes", "sslv3 alert bad certificate")], "client_rejected_cert", "bad_certificate"),
    ([("SSL routines", "", "ssl/tls alert bad certificate")], "client_rejected_cert", "bad_certificate"),
    ([("SSL routines", "", "tls alert bad certificate")], "client_rejected_cert", "bad_certificate"),  # OpenSSL 4
    ([("SSL routines", "", "tlsv1 alert unknown ca")], "client_rejected_cert", "unknown_ca"),
    ([("SSL routines", "", "sslv3 alert certificate unknown")], "client_rejected_cert", "certificate_unknown"),
    ([("SSL routines", "", "ssl/tls alert certificate expired")], "client_rejected_cert", "certificate_expired"),
    ([("SSL routines", "", "sslv3 alert certificate revoked")], "client_rejected_cert", "certificate_revoked"),
    ([("SSL routines", "", "tlsv1 alert protocol version")], "unsupported_protocol", "protocol_version"),
    ([("SSL routines", "", "sslv3 alert handshake failure")], "other", "handshake_failure"),
    ([("SSL routines", "", "tlsv1 alert decrypt error")], "other", "decrypt_error"),
    ([("SSL routines", "", "tlsv1 unrecognized name")], "other", "unrecognized_name"),
    ([("SSL routines", "", "peer did not return a certificate")], "client_cert_missing", None),
    ([("SSL routines", "tls_process_client_certificate", "peer did not return a certificate")], "client_cert_missing", None),
    ([("SSL routines", "", "certificate verify failed")], "client_cert_invalid", None),
    ([("SSL routines", "", "http request")], "plain_http", None),
    ([("SSL routines", "ssl23_get_client_hello", "http request")], "plain_http", None),
    ([("SSL routines", "", "wrong version number")], "not_tls", None),
    ([("SSL routines", "ssl23_get_client_hello", "unknown protocol")], "not_tls", None),
    ([("SSL routines", "", "unexpected eof while reading")], "eof", None),
    ([], "eof", None),  # OpenSSL 4: EOF with an empty queue
    ([("SSL routines", "", "some reason from the future")], "other", None),
    ([("BIO routines", "", "x"), ("SSL routines", "", "no shared cipher")], "no_shared_cipher", None),
], ids=lambda v: v if isinstance(v, str) else None)
def test_table(errors, reason: str, alert: str | None) -> None:
    f = tlserrors.classify(SSL.Error(errors))
    assert (f.reason, f.alert) == (reason, alert)
    assert f.reason in tlserrors.REASONS
    assert f.message_id == MESSAGES[f.log_key].id


def test_openssl_text_keeps_every_error() -> None:
    f = tlserrors.classify_errors([("SSL routines", "tls_post_process_client_hello", "no shared cipher"),
                                   ("SSL routines", "", "extra")])
    assert f.openssl_text == "SSL routines:tls_post_process_client_hello:no shared cipher / SSL routines::extra"


@pytest.mark.parametrize("exc, reason", [
    (SSL.SysCallError(-1, "Unexpected EOF"), "eof"),
    (SSL.SysCallError(104, "ECONNRESET"), "eof"),
    (Failure(terror.ConnectionLost()), "eof"),
    (Failure(terror.ConnectionDone()), "eof"),
    (ConnectionResetError(104, "reset"), "eof"),
    (terror.TimeoutError(), "timeout"),
    (TimeoutError(), "timeout"),
    (ValueError("odd"), "other"),
    (None, "other"),
    (object(), "other"),
    ("not an error", "other"),
], ids=repr)
def test_non_ssl_endings(exc, reason: str) -> None:
    assert tlserrors.classify(exc).reason == reason


@pytest.mark.parametrize("weird", [
    SSL.Error(), SSL.Error("text"), SSL.Error([("only-one",)]), SSL.Error([1, 2, 3]),
    SSL.Error([(b"SSL routines", b"", b"no shared cipher")]), SSL.SysCallError(),
], ids=repr)
def test_never_raises_on_odd_shapes(weird) -> None:
    assert tlserrors.classify(weird).reason in tlserrors.REASONS


def test_constructors_and_log_fields() -> None:
    assert tlserrors.timeout(10.0).reason == "timeout"
    assert tlserrors.plain_http().log_key == "plain_http"
    assert tlserrors.not_tls().log_key == "not_tls"
    assert tlserrors.eof().message_id == "TLSF0202"
    with pytest.raises(ValueError, match="not one of"):
        HandshakeFailure("nonsense", None, "", "TLSF0201")
    # Every failure formats into its error-log line with the documented fields.
    fmt = ErrorLogFormatter(pid=1)
    extra = {"vhost": "a:443", "seconds": 10.0, "request_line": "GET / HTTP/1.1", "first_bytes": "\\x00"}
    for f in (tlserrors.timeout(10), tlserrors.plain_http(), tlserrors.not_tls(), tlserrors.eof(),
              tlserrors.classify_errors([("SSL routines", "", "tlsv1 alert unknown ca")])):
        line = fmt.format(f.log_key, 0.0, ("127.0.0.1", 1), **f.log_fields(), **extra)
        assert f" {f.message_id}: " in line and f"reason={f.reason}" in line
        assert f"alert={f.alert or '-'}" in line


# -- real handshakes in memory: pyOpenSSL server vs Python ssl ----------------------------------

@pytest.fixture(scope="module")
def chain_file(pki, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("chain") / "server-chain.pem"
    p.write_bytes(pki.server_cert.read_bytes() + pki.intermediate_cert.read_bytes())
    return p


def _server_ctx(pki, chain_file: Path, *, min_version=None, ciphers=None, client_ca=False) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate_chain_file(str(chain_file))
    ctx.use_privatekey_file(str(pki.server_key))
    if min_version:
        ctx.set_min_proto_version(min_version)
    if ciphers:
        ctx.set_cipher_list(ciphers.encode())
    if client_ca:
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                       lambda conn, cert, errnum, depth, ok: bool(ok))
        ctx.load_verify_locations(str(pki.client_ca_cert))
    return ctx


def _client_ctx(pki, *, max_version=None, ciphers=None, trust=True, cert=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trust:
        ctx.load_verify_locations(pki.ca_cert)
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def _handshake(server: SSL.Context, client: ssl.SSLContext, hostname: str = "localhost"):
    """Run the handshake in memory; return (server exception or None, client exception or None)."""
    srv = SSL.Connection(server, None)
    srv.set_accept_state()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = client.wrap_bio(incoming, outgoing, server_hostname=hostname)
    s_err = c_err = None
    for _ in range(10):
        if c_err is None:
            try:
                cli.do_handshake()
                cli.write(b"x")  # TLS 1.3: the server checks the client certificate after its Finished
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                c_err = exc
        data = outgoing.read()
        if data:
            srv.bio_write(data)
        if s_err is None:
            try:
                srv.do_handshake()
                srv.recv(1)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
            except SSL.Error as exc:
                s_err = exc
        try:
            incoming.write(srv.bio_read(65536))
        except SSL.WantReadError:
            pass
        if s_err is not None and (c_err is not None or not data):
            break
    return s_err, c_err


TLS12 = ssl.TLSVersion.TLSv1_2


def test_real_success_has_no_error(pki, chain_file) -> None:
    s_err, c_err = _handshake(_server_ctx(pki, chain_file), _client_ctx(pki))
    assert s_err is None and c_err is None


@pytest.mark.parametrize("case, reason, alert", [
    ("refused protocol", "unsupported_protocol", None),
    ("no shared cipher", "no_shared_cipher", None),
    ("client does not trust our CA", "client_rejected_cert", "unknown_ca"),
    ("client does not trust our CA (TLS 1.2)", "client_rejected_cert", "unknown_ca"),
    ("client checks the wrong name", "client_rejected_cert", "bad_certificate"),
    ("no client certificate", "client_cert_missing", None),
    ("no client certificate (TLS 1.2)", "client_cert_missing", None),
    ("client certificate from an unknown CA", "client_cert_invalid", None),
    ("expired client certificate", "client_cert_invalid", None),
    ("expired client certificate (TLS 1.2)", "client_cert_invalid", None),
])
def test_real_failures(pki, chain_file, case: str, reason: str, alert: str | None) -> None:
    server_kw: dict = {}
    client_kw: dict = {}
    hostname = "localhost"
    if case == "refused protocol":
        server_kw["min_version"] = SSL.TLS1_3_VERSION
        client_kw["max_version"] = TLS12
    elif case == "no shared cipher":
        server_kw["ciphers"] = "ECDHE-ECDSA-AES256-GCM-SHA384"
        client_kw.update(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", max_version=TLS12)
    elif case.startswith("client does not trust"):
        client_kw["trust"] = False
        if "1.2" in case:
            client_kw["max_version"] = TLS12
    elif case == "client checks the wrong name":
        hostname = "not-our-name.test"
    else:
        server_kw["client_ca"] = True
        if "1.2" in case:
            client_kw["max_version"] = TLS12
        if "unknown CA" in case:
            client_kw["cert"] = (pki.stranger_cert, pki.stranger_key)
        elif "expired" in case:
            client_kw["cert"] = (pki.client_expired_cert, pki.client_expired_key)
    s_err, _ = _handshake(_server_ctx(pki, chain_file, **server_kw), _client_ctx(pki, **client_kw), hostname)
    assert s_err is not None, case
    f = tlserrors.classify(s_err)
    assert f.reason == reason, (case, s_err.args)
    if alert is not None:
        assert f.alert == alert
    if reason == "client_rejected_cert":
        assert f.alert in tlserrors.CERT_ALERTS


def test_real_plain_http_and_junk_reaching_openssl(pki, chain_file) -> None:
    # The sniffer normally catches these first; if bytes reach OpenSSL anyway,
    # its own errors still land in the right reason.
    for data, reason in ((b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "plain_http"),
                         (b"\x16\x01\x00\x00\x10" + b"a" * 16, "not_tls")):
        conn = SSL.Connection(_server_ctx(pki, chain_file), None)
        conn.set_accept_state()
        conn.bio_write(data)
        with pytest.raises(SSL.Error) as info:
            conn.do_handshake()
        assert tlserrors.classify(info.value).reason == reason


def test_real_eof_mid_handshake(pki, chain_file) -> None:
    cli = _client_ctx(pki).wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        cli.do_handshake()
    conn = SSL.Connection(_server_ctx(pki, chain_file), None)
    conn.set_accept_state()
    conn.bio_write(out.read()[:40])  # half a ClientHello, then the client is gone
    conn.bio_shutdown()
    with pytest.raises(SSL.Error) as info:
        conn.do_handshake()
    assert tlserrors.classify(info.value).reason == "eof"


# -- real handshakes over a socket: pyOpenSSL server vs openssl s_client --------------------------

def _serve_once(ctx: SSL.Context) -> tuple[int, threading.Thread, list]:
    """One blocking pyOpenSSL handshake on 127.0.0.1 (no socket timeout: pyOpenSSL
    would turn it into WantReadError). Returns (port, thread, [error or None])."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    result: list = []

    def run() -> None:
        conn, _ = srv.accept()
        tls = SSL.Connection(ctx, conn)
        tls.set_accept_state()
        try:
            tls.do_handshake()
            tls.recv(1)
            result.append(None)
        except SSL.Error as exc:
            result.append(exc)
        finally:
            conn.close()
            srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv.getsockname()[1], t, result


@pytest.mark.skipif(OPENSSL is None, reason="LOUD: the openssl command is not installed")
@pytest.mark.parametrize("args, server_kw, reason, alert", [
    (["-tls1_1"], {}, "unsupported_protocol", None),
    (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
     {"ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384"}, "no_shared_cipher", None),
    (["-verify_return_error", "-verify", "2"], {}, "client_rejected_cert", "unknown_ca"),
    (["-tls1_2"], {"client_ca": True}, "client_cert_missing", None),
    (["-tls1_2", "-cert", "STRANGER_CERT", "-key", "STRANGER_KEY"], {"client_ca": True}, "client_cert_invalid", None),
], ids=["protocol", "cipher", "unknown-ca", "no-client-cert", "stranger-client-cert"])
def test_real_failures_with_s_client(pki, chain_file, args, server_kw, reason, alert) -> None:
    args = [str(pki.stranger_cert) if a == "STRANGER_CERT" else str(pki.stranger_key) if a == "STRANGER_KEY" else a
            for a in args]
    port, thread, result = _serve_once(_server_ctx(pki, chain_file, **server_kw))
    subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args],
                   input=b"x", capture_output=True, timeout=20)
    thread.join(10)
    err = result[0]
    assert isinstance(err, SSL.Error), err
    f = tlserrors.classify(err)
    assert (f.reason, f.alert) == (reason, alert), err.args


def test_expired_server_cert_is_rejected_with_its_alert(pki, tmp_path) -> None:
    """A client rejecting an expired server certificate: OpenSSL sends certificate_expired."""
    import datetime as dt
    now = dt.datetime.now(dt.timezone.utc)
    root = certgen.issue("expiry root", is_ca=True)
    old = certgen.issue("localhost", issuer=root, dns_names=("localhost",),
                        not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1))
    old.write(tmp_path / "old.crt", tmp_path / "old.key")
    root.write(tmp_path / "root.crt", tmp_path / "root.key")
    server = SSL.Context(SSL.TLS_SERVER_METHOD)
    server.use_certificate_file(str(tmp_path / "old.crt"))
    server.use_privatekey_file(str(tmp_path / "old.key"))
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(tmp_path / "root.crt")
    s_err, c_err = _handshake(server, client)
    assert c_err is not None
    f = tlserrors.classify(s_err)
    assert (f.reason, f.alert) == ("client_rejected_cert", "certificate_expired")


_words = st.sampled_from(["SSL routines", "", "tlsv1 alert", "sslv3 alert bad certificate", "no shared cipher",
                          "ssl/tls alert unknown ca", "tls alert", "alert", "x", "tlsv13 alert certificate required"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(_words, _words, _words | st.text(max_size=30)),
                          st.text(max_size=20), st.binary(max_size=10), st.integers(), st.none(),
                          st.tuples(st.text(max_size=5))), max_size=4))
def test_classify_never_raises(errors) -> None:
    f = tlserrors.classify(SSL.Error(errors))
    assert f.reason in tlserrors.REASONS
    assert f.alert is None or f.alert in tlserrors.KNOWN_ALERTS
    assert f.message_id == MESSAGES[f.log_key].id
