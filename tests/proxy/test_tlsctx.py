"""tlsctx.build_contexts(): real handshakes against each Context with `openssl s_client` and Python ssl.

The server side is a tiny pyOpenSSL server on 127.0.0.1 (a thread per test, one
connection at a time); end-to-end proxy tests belong to the data path's test files.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import shutil
import socket
import ssl
import struct
import subprocess
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL

from tlsfront import certgen, config, random_seed, tlsctx
from tlsfront.errors import ConfigErrors

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="LOUD SKIP: the openssl command is not installed")


@dataclass
class Outcome:
    ok: bool
    error: str = ""
    version: str = ""
    cipher: str = ""
    verify: tuple[str, str | None] = ("NONE", None)
    record: tlsctx.VerifyRecord | None = None
    reused: bool = False


class Server:
    """Accept connections on 127.0.0.1:0, handshake with `ctx`, answer one line, record outcomes."""

    def __init__(self, ctx: SSL.Context) -> None:
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.outcomes: "queue.Queue[Outcome]" = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from OpenSSL._util import lib

        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            # pyOpenSSL needs a blocking socket (a Python timeout makes it non-blocking):
            # bound the wait with kernel timeouts instead, so a silent client cannot hang the test.
            raw.settimeout(None)
            tv = struct.pack("ll", 5, 0)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
            conn = SSL.Connection(self.ctx, raw)
            conn.set_accept_state()
            try:
                conn.do_handshake()
            except (SSL.Error, OSError) as exc:
                self.outcomes.put(Outcome(False, repr(exc), verify=tlsctx.client_verify_result(conn),
                                          record=tlsctx.client_verify_record(conn)))
                raw.close()
                continue
            out = Outcome(True, version=conn.get_protocol_version_name(), cipher=conn.get_cipher_name() or "",
                          verify=tlsctx.client_verify_result(conn), record=tlsctx.client_verify_record(conn),
                          reused=bool(lib.SSL_session_reused(conn._ssl)))
            try:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                conn.shutdown()
            except (SSL.Error, OSError):
                pass
            raw.close()
            self.outcomes.put(out)

    def outcome(self) -> Outcome:
        return self.outcomes.get(timeout=10)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(ctx: SSL.Context) -> Server:
        s = Server(ctx)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def make_config(tmp_path: Path, tls_block: str, extra: str = "") -> Path:
    p = tmp_path / "t.toml"
    p.write_text(textwrap.dedent(extra) + "\n[[vhost]]\nlisten = \"127.0.0.1:8443\"\n"
                 "backends = [\"http://127.0.0.1:8081\"]\n[vhost.tls]\n" + textwrap.dedent(tls_block))
    return p


def context_for(tmp_path: Path, tls_block: str, **kw) -> SSL.Context:
    cfg = config.load(make_config(tmp_path, tls_block))
    return tlsctx.build_contexts(cfg, **kw)[0]


def base_tls(pki, **extra: str) -> str:
    lines = [f'certificate = "{pki.server_cert}"', f'key = "{pki.server_key}"',
             f'chain = "{pki.intermediate_cert}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def s_client(port: int, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                           *args], input=stdin, capture_output=True, timeout=20)


def py_client(port: int, ctx: ssl.SSLContext, session=None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    except BaseException:
        raw.close()
        raise
    try:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while s.recv(1024):
            pass
    except BaseException:
        s.close()
        raise
    return s


def client_ctx(pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.load_verify_locations(pki.ca_cert)
    if cert:
        c.load_cert_chain(cert, key)
    return c


# --------------------------------------------------------------------------- protocols, chain, pairs


@needs_openssl
@pytest.mark.parametrize(
    "flag, accepted",
    [("-tls1_3", True), ("-tls1_2", True), ("-tls1_1", False), ("-tls1", False)],
)
def test_default_protocols_are_tls12_and_tls13(tmp_path, pki, serve, flag, accepted):
    srv = serve(context_for(tmp_path, base_tls(pki)))
    r = s_client(srv.port, flag, "-cipher", "DEFAULT:@SECLEVEL=0", stdin=b"GET / HTTP/1.0\r\n\r\n")
    out = srv.outcome()
    assert out.ok is accepted, (r.stdout[-600:], out)
    if accepted:
        assert out.version == {"-tls1_3": "TLSv1.3", "-tls1_2": "TLSv1.2"}[flag]


@needs_openssl
def test_insecure_legacy_protocols_enable_tls10(tmp_path, pki, serve):
    srv = serve(context_for(tmp_path, base_tls(pki, protocols='"all -SSLv3"', insecure_legacy_protocols="true",
                                               ciphers='"ECDHE+AESGCM:ECDHE+AES"')))
    r = s_client(srv.port, "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0", stdin=b"GET / HTTP/1.0\r\n\r\n")
    out = srv.outcome()
    assert out.ok and out.version == "TLSv1", r.stdout[-600:]


@needs_openssl
def test_tls13_only_refuses_tls12(tmp_path, pki, serve):
    srv = serve(context_for(tmp_path, base_tls(pki, protocols='"TLSv1.3"')))
    s_client(srv.port, "-tls1_2")
    assert not srv.outcome().ok


@needs_openssl
def test_chain_is_sent_and_verifies(tmp_path, pki, serve):
    """SSLCertificateChainFile: the intermediate goes out with the leaf (s_client -showcerts)."""
    srv = serve(context_for(tmp_path, base_tls(pki)))
    r = s_client(srv.port, "-showcerts", "-CAfile", str(pki.ca_cert), "-verify_return_error",
                 stdin=b"GET / HTTP/1.0\r\n\r\n")
    text = r.stdout.decode()
    assert text.count("-----BEGIN CERTIFICATE-----") == 2
    assert "s:CN = localhost" in text and "s:CN = tlsfront test intermediate CA" in text
    assert "Verify return code: 0 (ok)" in text
    assert srv.outcome().ok


def test_without_chain_the_client_cannot_verify(tmp_path, pki, serve):
    block = f'certificate = "{pki.server_cert}"\nkey = "{pki.server_key}"\n'
    srv = serve(context_for(tmp_path, block))
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        py_client(srv.port, client_ctx(pki))
    srv.outcome()


def test_rsa_and_ecdsa_pair_client_cipher_picks(tmp_path, pki, serve):
    block = (f'certificate = ["{pki.server_cert}", "{pki.server_rsa_cert}"]\n'
             f'key = ["{pki.server_key}", "{pki.server_rsa_key}"]\n'
             f'chain = "{pki.intermediate_cert}"\n')
    srv = serve(context_for(tmp_path, block))
    seen = {}
    for cipher in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"):
        c = client_ctx(pki)
        c.maximum_version = ssl.TLSVersion.TLSv1_2
        c.set_ciphers(cipher)
        s = py_client(srv.port, c)
        cert = x509.load_der_x509_certificate(s.getpeercert(binary_form=True))
        seen[cipher] = type(cert.public_key()).__name__
        s.close()
        assert srv.outcome().cipher == cipher
    assert "RSA" in seen["ECDHE-RSA-AES128-GCM-SHA256"]
    assert "EC" in seen["ECDHE-ECDSA-AES128-GCM-SHA256"] and "RSA" not in seen["ECDHE-ECDSA-AES128-GCM-SHA256"]


# --------------------------------------------------------------------------- sessions


@pytest.mark.parametrize(
    "settings, resumes",
    [({}, True), ({"session_tickets": "false"}, True), ({"session_cache": '"off"'}, False)],
    ids=["cache+tickets", "cache-no-tickets", "off"],
)
def test_session_resumption_per_session_cache(tmp_path, pki, serve, settings, resumes):
    srv = serve(context_for(tmp_path, base_tls(pki, **settings)))
    c = client_ctx(pki)
    c.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2: the session is ready after the handshake
    first = py_client(srv.port, c)
    session = first.session
    first.close()
    assert not srv.outcome().reused
    second = py_client(srv.port, c, session=session)
    assert second.session_reused is resumes
    second.close()
    assert srv.outcome().reused is resumes


def test_context_options(tmp_path, pki):
    ctx = context_for(tmp_path, base_tls(pki, honor_cipher_order="true", session_timeout_seconds="600"))
    from OpenSSL._util import lib

    options = lib.SSL_CTX_get_options(ctx._context)
    for flag in (SSL.OP_NO_COMPRESSION, SSL.OP_NO_RENEGOTIATION, SSL.OP_CIPHER_SERVER_PREFERENCE):
        assert options & flag
    assert not options & SSL.OP_NO_TICKET
    assert ctx.get_timeout() == 600
    assert ctx.get_session_cache_mode() == SSL.SESS_CACHE_SERVER
    off = context_for(tmp_path, base_tls(pki, session_cache='"off"', honor_cipher_order="false"))
    options = lib.SSL_CTX_get_options(off._context)
    assert options & SSL.OP_NO_TICKET and not options & SSL.OP_CIPHER_SERVER_PREFERENCE
    assert off.get_session_cache_mode() == SSL.SESS_CACHE_OFF


def _pump(a: SSL.Connection, b: SSL.Connection) -> None:
    for src, dst in ((a, b), (b, a)):
        try:
            dst.bio_write(src.bio_read(65536))
        except SSL.WantReadError:
            pass


def _step(conn: SSL.Connection, action=None) -> bool:
    try:
        (action or conn.do_handshake)()
        return True
    except SSL.WantReadError:
        return False


def _renegotiate(server_ctx: SSL.Context) -> str:
    """Handshake in memory at TLS 1.2, then the client asks to renegotiate; the client's outcome."""
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    cctx = SSL.Context(SSL.TLS_METHOD)
    cctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    client = SSL.Connection(cctx, None)
    client.set_connect_state()
    for _ in range(10):
        done = _step(client) & _step(server)
        _pump(client, server)
        if done:
            break
    assert client.get_protocol_version_name() == "TLSv1.2"
    assert client.renegotiate()
    for _ in range(10):
        try:
            if _step(client):
                return "renegotiated"
        except SSL.Error as exc:
            return str(exc)
        _pump(client, server)
        _step(server, lambda: server.recv(10))
        _pump(client, server)
    return "stuck"


def test_client_initiated_renegotiation_is_refused(tmp_path, pki):
    """OP_NO_RENEGOTIATION: a TLS 1.2 client asking to renegotiate gets a no_renegotiation alert."""
    assert "no renegotiation" in _renegotiate(context_for(tmp_path, base_tls(pki)))
    # Control (the test can fail): OpenSSL 3+ refuses client renegotiation by default too;
    # a Context that allows it (SSL_OP_ALLOW_CLIENT_RENEGOTIATION, 0x100) does renegotiate.
    plain = SSL.Context(SSL.TLS_METHOD)
    plain.use_certificate_file(str(pki.server_cert))
    plain.use_privatekey_file(str(pki.server_key))
    plain.set_options(0x100)
    assert _renegotiate(plain) == "renegotiated"


# --------------------------------------------------------------------------- client certificates


def client_tls(pki, mode: str, crl: Path | None = None) -> str:
    extra = {"verify_client": f'"{mode}"', "ca_certificate_file": f'"{pki.client_ca_cert}"'}
    if crl:
        extra["crl_file"] = f'"{crl}"'
    return base_tls(pki, **extra)


@pytest.fixture(scope="module")
def revoked(pki, tmp_path_factory):
    """A client certificate 'carol' and a CRL of the client CA that revokes it."""
    d = tmp_path_factory.mktemp("crl")
    ca_key = serialization.load_pem_private_key((pki.dir / "client-ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(pki.client_ca_cert.read_bytes())
    ca = certgen.Issued(ca_cert, ca_key)
    carol = certgen.issue("carol-revoked", issuer=ca, client=True)
    carol.write(d / "carol.crt", d / "carol.key")
    now = dt.datetime.now(dt.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(ca_cert.subject).last_update(now - dt.timedelta(minutes=5))
           .next_update(now + dt.timedelta(days=1))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(carol.cert.serial_number)
                                    .revocation_date(now - dt.timedelta(minutes=1)).build())
           .sign(ca_key, hashes.SHA256()))
    (d / "client-ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return d / "carol.crt", d / "carol.key", d / "client-ca.crl"


@pytest.mark.parametrize(
    "mode, who, handshake_ok, status, category",
    [
        ("require", "client", True, "SUCCESS", "ok"),
        ("require", None, False, "NONE", None),
        ("require", "stranger", False, "FAILED:unable to get local issuer certificate", "unknown CA"),
        ("require", "expired", False, "FAILED:certificate has expired", "expired"),
        ("require", "revoked", False, "FAILED:certificate revoked", "revoked"),
        ("optional", None, True, "NONE", None),
        ("optional", "client", True, "SUCCESS", "ok"),
        ("optional", "stranger", False, "FAILED:unable to get local issuer certificate", "unknown CA"),
        ("optional_no_ca", "stranger", True, "GENEROUS", "unknown CA"),
        ("optional_no_ca", "expired", True, "GENEROUS", "expired"),
        ("optional_no_ca", "client", True, "SUCCESS", "ok"),
        ("none", "client", True, "NONE", None),
    ],
)
def test_client_verification(tmp_path, pki, serve, revoked, mode, who, handshake_ok, status, category):
    srv = serve(context_for(tmp_path, client_tls(pki, mode, crl=revoked[2])))
    files = {"client": (pki.client_cert, pki.client_key), "stranger": (pki.stranger_cert, pki.stranger_key),
             "expired": (pki.client_expired_cert, pki.client_expired_key), "revoked": revoked[:2],
             None: (None, None)}[who]
    c = client_ctx(pki, *files)
    try:
        py_client(srv.port, c).close()
    except (ssl.SSLError, OSError):
        pass
    out = srv.outcome()
    assert out.ok is handshake_ok, out
    assert out.verify[0] == status
    if category is None:
        assert out.record is None or out.record.ok
    else:
        assert out.record is not None and out.record.category == category


def test_client_ca_names_are_sent(tmp_path, pki, serve):
    srv = serve(context_for(tmp_path, client_tls(pki, "optional")))
    if OPENSSL is None:
        pytest.skip("LOUD SKIP: the openssl command is not installed")
    r = s_client(srv.port, "-tls1_2", stdin=b"GET / HTTP/1.0\r\n\r\n")
    srv.outcome()
    text = r.stdout.decode()
    assert "Acceptable client certificate CA names" in text
    assert "CN = tlsfront test client CA" in text.split("Acceptable client certificate CA names", 1)[1]


# --------------------------------------------------------------------------- errors, keys, fork


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("ciphers", '"RC4:!RC4"', "selects no cipher"),
        ("ciphers", '"NOPE"', "selects no cipher"),
        ("ciphersuites", '"TLS_BOGUS"', "select nothing"),
        ("groups", '"X25519:P-999"', "does not know"),
    ],
)
def test_bad_cipher_settings_are_config_errors(tmp_path, pki, key, value, fragment):
    cfg = config.load(make_config(tmp_path, base_tls(pki, **{key: value})))
    with pytest.raises(ConfigErrors) as info:
        tlsctx.build_contexts(cfg)
    (p,) = info.value.problems
    assert p.where.endswith(f"vhost[0].tls.{key}")
    assert fragment in p.message and value.strip('"') in p.message


def test_inherited_problem_is_reported_once_under_tls(tmp_path, pki):
    p = tmp_path / "two.toml"
    p.write_text(textwrap.dedent(f"""
        [tls]
        certificate = "{pki.server_cert}"
        key = "{pki.server_key}"
        ciphers = "NOPE"
        [[vhost]]
        listen = "127.0.0.1:1"
        tls = true
        backends = ["http://127.0.0.1:2"]
        [[vhost]]
        listen = "127.0.0.2:1"
        tls = true
        backends = ["http://127.0.0.1:2"]
    """))
    with pytest.raises(ConfigErrors) as info:
        tlsctx.build_contexts(config.load(p))
    assert [x.where for x in info.value.problems] == [f"{p}: tls.ciphers"]


def test_mismatched_key_names_both_files_and_fingerprints(tmp_path, pki):
    block = f'certificate = "{pki.server_cert}"\nkey = "{pki.other_key}"\n'
    with pytest.raises(ConfigErrors) as info:
        tlsctx.build_contexts(config.load(make_config(tmp_path, block)))
    (p,) = info.value.problems
    assert p.where.endswith("vhost[0].tls.key")
    assert str(pki.server_cert) in p.message and str(pki.other_key) in p.message
    fingerprints = [w for w in p.message.split() if w.count(":") == 31]
    assert len(fingerprints) == 2 and fingerprints[0] != fingerprints[1].rstrip(",")


def test_certificate_and_key_swapped(tmp_path, pki):
    block = f'certificate = "{pki.server_key}"\nkey = "{pki.server_cert}"\n'
    with pytest.raises(ConfigErrors) as info:
        tlsctx.build_contexts(config.load(make_config(tmp_path, block)))
    messages = " ".join(p.message for p in info.value.problems)
    assert "holds a private key, not a certificate" in messages


def test_encrypted_key_with_dialog_override(tmp_path, pki):
    enc = tmp_path / "enc.key"
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"s3cret")))
    os.chmod(enc, 0o600)
    block = f'certificate = "{pki.server_cert}"\nkey = "{enc}"\n'
    asked = []
    ctx = context_for(tmp_path, block, dialog=lambda req: asked.append(req) or b"s3cret")
    assert isinstance(ctx, SSL.Context)
    assert [(r.server, r.key_type, r.attempt) for r in asked] == [("127.0.0.1:8443", "EC", 1)]


def test_context_made_before_fork_serves_in_the_child(tmp_path, pki):
    """Contexts are built in the master; a forked worker handshakes with them."""
    ctx = context_for(tmp_path, base_tls(pki))
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            a.close()
            conn = SSL.Connection(ctx, b)
            conn.set_accept_state()
            conn.do_handshake()
            conn.sendall(b"from child " + conn.get_protocol_version_name().encode())
            conn.shutdown()
            code = 0
        finally:
            os._exit(code)
    b.close()
    c = client_ctx(pki)
    s = c.wrap_socket(a, server_hostname="localhost")
    assert s.recv(100) == b"from child TLSv1.3"
    s.close()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_seed_random(tmp_path):
    from tlsfront.model import RandomSeed

    line = tlsctx.seed_random((RandomSeed("startup", "builtin"), RandomSeed("startup", "file:/dev/urandom", 64),
                               RandomSeed("connect", "file:/dev/urandom", 32)))
    assert "64 bytes added" in line and "RAND_status OK" in line


def test_ca_certificate_path_made_by_cert_rehash(tmp_path, pki, serve, capsys):
    """SSLCACertificatePath: a hashed directory (tlsfront cert rehash) instead of a CA file."""
    from tlsfront import cli

    cadir = tmp_path / "cas"
    cadir.mkdir()
    shutil.copy(pki.client_ca_cert, cadir / "client-ca.pem")
    assert cli.main(["cert", "rehash", str(cadir)]) == 0
    capsys.readouterr()
    srv = serve(context_for(tmp_path, base_tls(pki, verify_client='"require"', ca_certificate_path=f'"{cadir}"')))
    py_client(srv.port, client_ctx(pki, pki.client_cert, pki.client_key)).close()
    assert srv.outcome().verify == ("SUCCESS", None)
    with pytest.raises((ssl.SSLError, OSError)):
        py_client(srv.port, client_ctx(pki, pki.stranger_cert, pki.stranger_key)).close()
    out = srv.outcome()
    assert not out.ok and out.record.category == "unknown CA"


@pytest.mark.parametrize("depth, ok", [(0, False), (1, True)])
def test_verify_depth_counts_intermediates(tmp_path, pki, serve, depth, ok):
    """SSLVerifyDepth: OpenSSL counts the CAs between the client certificate and the trust anchor."""
    ca_key = serialization.load_pem_private_key((pki.dir / "client-ca.key").read_bytes(), None)
    ca = certgen.Issued(x509.load_pem_x509_certificate(pki.client_ca_cert.read_bytes()), ca_key)
    inter = certgen.issue("client intermediate", issuer=ca, is_ca=True)
    dave = certgen.issue("dave", issuer=inter, client=True)
    bundle, key = tmp_path / "dave-chain.pem", tmp_path / "dave.key"
    certgen.write_file(bundle, dave.cert_pem() + inter.cert_pem())
    certgen.write_file(key, dave.key_pem(), mode=0o600)
    block = client_tls(pki, "require").replace("chain = ", f"verify_depth = {depth}\nchain = ")
    srv = serve(context_for(tmp_path, block))
    try:
        py_client(srv.port, client_ctx(pki, bundle, key)).close()
    except (ssl.SSLError, OSError):
        pass
    out = srv.outcome()
    assert out.ok is ok, out
    if ok:
        assert out.verify == ("SUCCESS", None)
    else:
        assert out.record.category == "chain too long" and out.verify[0] == "FAILED:certificate chain too long"


@needs_openssl
@pytest.mark.parametrize(
    "args, accepted",
    [
        (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], True),
        (["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"], True),
        (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"], False),  # CBC: not in the default list
        (["-tls1_2", "-cipher", "AES128-GCM-SHA256"], False),  # no forward secrecy
        (["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"], True),
        (["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"], False),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_handshakes_limited_to_each_cipher(tmp_path, pki, serve, args, accepted):
    srv = serve(context_for(tmp_path, base_tls(pki)))
    s_client(srv.port, *args, stdin=b"GET / HTTP/1.0\r\n\r\n")
    out = srv.outcome()
    assert out.ok is accepted, out
    if accepted:
        assert out.cipher == args[-1]


@pytest.mark.parametrize("honor, expected", [("true", "ECDHE-ECDSA-AES256-GCM-SHA384"),
                                             ("false", "ECDHE-ECDSA-AES128-GCM-SHA256")])
def test_honor_cipher_order(tmp_path, pki, serve, honor, expected):
    """SSLHonorCipherOrder: the server's order (AES-256 first in its list) or the client's."""
    srv = serve(context_for(tmp_path, base_tls(pki, honor_cipher_order=honor,
                                               ciphers='"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"')))
    c = client_ctx(pki)
    c.maximum_version = ssl.TLSVersion.TLSv1_2
    c.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
    py_client(srv.port, c).close()
    assert srv.outcome().cipher == expected


@needs_openssl
@pytest.mark.parametrize("client_groups, accepted", [("P-384", True), ("X25519", False)])
def test_groups(tmp_path, pki, serve, client_groups, accepted):
    srv = serve(context_for(tmp_path, base_tls(pki, groups='"P-384"')))
    s_client(srv.port, "-groups", client_groups, stdin=b"GET / HTTP/1.0\r\n\r\n")
    assert srv.outcome().ok is accepted


def test_expired_certificate_and_chain_order_are_warnings(tmp_path, pki):
    bad_chain = tmp_path / "chain.pem"
    bad_chain.write_bytes(pki.ca_cert.read_bytes() + pki.intermediate_cert.read_bytes())
    block = f'certificate = "{pki.server_cert}"\nkey = "{pki.server_key}"\nchain = "{bad_chain}"\n'
    cfg = config.load(make_config(tmp_path, block))
    contexts, warnings = tlsctx.build_contexts_with_warnings(cfg)
    assert list(contexts) == [0]
    (w,) = warnings
    assert "vhost[0].tls.chain" in w and "certificate #1 (CN=tlsfront test root CA) is not the issuer" in w
    block = f'certificate = "{pki.client_expired_cert}"\nkey = "{pki.client_expired_key}"\n'
    _, warnings = tlsctx.build_contexts_with_warnings(config.load(make_config(tmp_path, block)))
    assert len(warnings) == 1 and "expired on" in warnings[0] and "renew it" in warnings[0]


def test_seed_random_never_hangs_and_fails_clearly(tmp_path, monkeypatch):
    from tlsfront.model import RandomSeed

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: a blocking read would hang start-up forever
    line = tlsctx.seed_random((RandomSeed("startup", f"file:{fifo}", 64),))
    assert "RAND_status OK" in line
    prog = tmp_path / "seed"
    prog.write_text("#!/bin/sh\nhead -c \"$1\" /dev/urandom\n")
    prog.chmod(0o755)
    assert "32 bytes added" in tlsctx.seed_random((RandomSeed("startup", f"exec:{prog}", 32),))
    prog.write_text("#!/bin/sh\nexit 4\n")
    with pytest.raises(RuntimeError, match="failed with exit status 4"):
        tlsctx.seed_random((RandomSeed("startup", f"exec:{prog}", 32),))
    monkeypatch.setattr(random_seed, "SEED_EXEC_TIMEOUT_SECONDS", 0.3)  # moved from tlsctx
    prog.write_text("#!/bin/sh\nsleep 5\n")
    with pytest.raises(RuntimeError, match="did not finish within 0.3 seconds"):
        tlsctx.seed_random((RandomSeed("startup", f"exec:{prog}", 32),))


@needs_openssl
def test_rsa_and_ecdsa_each_sent_with_their_own_intermediate(tmp_path, pki, serve):
    """Dual certificates from different intermediates (as Let's Encrypt's RSA and ECDSA ones are):
    one chain file holds both intermediates; each certificate goes out with its own issuer only."""
    root = certgen.Issued(x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()),
                          serialization.load_pem_private_key((pki.dir / "root.key").read_bytes(), None))
    rsa_inter = certgen.issue("RSA intermediate", issuer=root, is_ca=True)
    rsa_leaf = certgen.issue("localhost", issuer=rsa_inter, key_kind="rsa2048", dns_names=("localhost",))
    rsa_leaf.write(tmp_path / "rsa.crt", tmp_path / "rsa.key")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(rsa_inter.cert_pem() + pki.intermediate_cert.read_bytes())
    block = (f'certificate = ["{pki.server_cert}", "{tmp_path}/rsa.crt"]\n'
             f'key = ["{pki.server_key}", "{tmp_path}/rsa.key"]\nchain = "{chain}"\n')
    cfg = config.load(make_config(tmp_path, block))
    contexts, warnings = tlsctx.build_contexts_with_warnings(cfg)
    srv = serve(contexts[0])
    for cipher, issuer in (("ECDHE-RSA-AES128-GCM-SHA256", "RSA intermediate"),
                           ("ECDHE-ECDSA-AES128-GCM-SHA256", "tlsfront test intermediate CA")):
        r = s_client(srv.port, "-tls1_2", "-cipher", cipher, "-showcerts", "-CAfile", str(pki.ca_cert),
                     "-verify_return_error", stdin=b"GET / HTTP/1.0\r\n\r\n")
        text = r.stdout.decode()
        assert srv.outcome().cipher == cipher
        assert text.count("-----BEGIN CERTIFICATE-----") == 2, text
        assert f"s:CN = {issuer}" in text and "Verify return code: 0 (ok)" in text
    # one file holding both intermediates, each in order for its certificate: nothing to warn about
    assert warnings == []


def test_crl_warnings_expired_and_missing_issuer(tmp_path, pki):
    ca_key = serialization.load_pem_private_key((pki.dir / "client-ca.key").read_bytes(), None)
    now = dt.datetime.now(dt.timezone.utc)
    stale = (x509.CertificateRevocationListBuilder().issuer_name(
        x509.load_pem_x509_certificate(pki.client_ca_cert.read_bytes()).subject)
        .last_update(now - dt.timedelta(days=10)).next_update(now - dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256()))
    crl = tmp_path / "stale.crl"
    crl.write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    both = tmp_path / "cas.pem"
    both.write_bytes(pki.client_ca_cert.read_bytes() + pki.ca_cert.read_bytes())
    block = base_tls(pki, verify_client='"require"', ca_certificate_file=f'"{both}"', crl_file=f'"{crl}"')
    _, warnings = tlsctx.build_contexts_with_warnings(config.load(make_config(tmp_path, block)))
    assert len(warnings) == 2
    assert "expired on" in warnings[0] and "CRL has expired" in warnings[0]
    assert "no CRL of CN=tlsfront test root CA" in warnings[1]
