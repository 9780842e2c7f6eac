"""One pyOpenSSL `Context` per TLS vhost, built in the master before workers fork.

What each Context gets (mod_ssl's directive in brackets):

- certificate(s), key(s) and chain [SSLCertificateFile/KeyFile/ChainFile]; an RSA and an
  ECDSA pair may sit side by side, OpenSSL picking per handshake by the client's ciphers,
  each sent with its own intermediates in issuing order;
- protocol range [SSLProtocol]: TLS 1.2 minimum unless `insecure_legacy_protocols`,
  which also appends `@SECLEVEL=0` (OpenSSL 3+ refuses TLS 1.0/1.1 at higher levels);
- ciphers [SSLCipherSuite], TLS 1.3 ciphersuites, groups, server order [SSLHonorCipherOrder];
- no compression (CRIME) and no client-initiated renegotiation (OP_NO_RENEGOTIATION:
  the CVE-2009-3555 lesson, and a CPU cost a client could impose at will);
- a server session cache [SSLSessionCache], a session-ID context, the session timeout
  [SSLSessionCacheTimeout], tickets on/off [SSLSessionTickets]; "off" means no cache and
  no tickets, so nothing resumes;
- client certificates [SSLVerifyClient/Depth, SSLCACertificateFile/Path, SSLCARevocationFile]
  with a verify callback that records the first error per connection: with a callback
  that returns True, OpenSSL's own verify result is reset to OK (facts file), so without
  the record `optional_no_ca` could not tell GENEROUS from SUCCESS, nor could the error
  log say "unknown CA / expired / revoked".

`client_verify_result(conn)` gives mod_ssl's SSL_CLIENT_VERIFY for a Connection.
Every problem is reported (all vhosts, all files) in one `ConfigErrors`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from . import keys, protocols
from .errors import Collector
from .model import Config, RandomSeed, TLSSettings, VHost

VERIFY_MODES = {
    "none": SSL.VERIFY_NONE,
    "optional": SSL.VERIFY_PEER,
    "require": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
    "optional_no_ca": SSL.VERIFY_PEER,
}

# X509_V_ERR_* -> the words the error log and metrics use (bounded set).
VERIFY_CATEGORY = {
    _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: "unknown CA",
    _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unknown CA",
    _lib.X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: "unknown CA",
    _lib.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: "unknown CA",
    _lib.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: "unknown CA",
    _lib.X509_V_ERR_CERT_UNTRUSTED: "unknown CA",
    _lib.X509_V_ERR_CERT_HAS_EXPIRED: "expired",
    _lib.X509_V_ERR_CERT_NOT_YET_VALID: "not yet valid",
    _lib.X509_V_ERR_CERT_REVOKED: "revoked",
    _lib.X509_V_ERR_UNABLE_TO_GET_CRL: "CRL missing",
    _lib.X509_V_ERR_CRL_HAS_EXPIRED: "CRL expired",
    _lib.X509_V_ERR_CRL_NOT_YET_VALID: "CRL not yet valid",
    _lib.X509_V_ERR_CERT_CHAIN_TOO_LONG: "chain too long",
    _lib.X509_V_ERR_PATH_LENGTH_EXCEEDED: "chain too long",
    _lib.X509_V_ERR_CERT_SIGNATURE_FAILURE: "bad signature",
    _lib.X509_V_ERR_INVALID_PURPOSE: "wrong purpose",
    _lib.X509_V_ERR_INVALID_CA: "invalid CA",
}


def verify_error_text(code: int) -> str:
    """OpenSSL's text for an X509_V_ERR code, e.g. 'certificate has expired'."""
    return _ffi.string(_lib.X509_verify_cert_error_string(code)).decode("ascii", "replace")


@dataclass
class VerifyRecord:
    """The first client-certificate verification error of a connection (or none)."""

    code: int = 0
    depth: int = 0
    subject: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def text(self) -> str:
        return verify_error_text(self.code) if self.code else "ok"

    @property
    def category(self) -> str:
        """'unknown CA', 'expired', 'revoked', ... (bounded; 'other' otherwise)."""
        return "ok" if self.ok else VERIFY_CATEGORY.get(self.code, "other")


_RECORDS: "weakref.WeakKeyDictionary[SSL.Connection, VerifyRecord]" = weakref.WeakKeyDictionary()
_MODES: "weakref.WeakKeyDictionary[SSL.Context, str]" = weakref.WeakKeyDictionary()


def _make_verify_callback(generous: bool):
    def verify(conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
        record = _RECORDS.get(conn)
        if record is None:
            record = _RECORDS[conn] = VerifyRecord()
        if not ok and record.ok:
            try:
                subject = cert.to_cryptography().subject.rfc4514_string()
            except Exception:  # noqa: BLE001 - a broken cert must not break the handshake path
                subject = ""
            record.code, record.depth, record.subject = errnum, depth, subject
        # optional_no_ca: accept whatever the client sent (mod_ssl's "GENEROUS"); the record
        # keeps what was wrong. Otherwise OpenSSL's verdict stands.
        return True if generous else bool(ok)

    return verify


def client_verify_record(conn: SSL.Connection) -> VerifyRecord | None:
    """The verification record of a connection (None when no client certificate was checked)."""
    return _RECORDS.get(conn)


def client_verify_result(conn: SSL.Connection) -> tuple[str, str | None]:
    """mod_ssl's SSL_CLIENT_VERIFY for a connection, and the OpenSSL error text if any.

    ("NONE", None): no client certificate; ("SUCCESS", None): verified;
    ("GENEROUS", "certificate has expired"): optional_no_ca accepted an unverified one;
    ("FAILED:certificate has expired", "certificate has expired"): verification failed
    (the handshake failed too, except with optional_no_ca). Works after a failed handshake.
    """
    record = _RECORDS.get(conn)
    try:
        peer = conn.get_peer_certificate(as_cryptography=True)
    except SSL.Error:  # pragma: no cover - defensive
        peer = None
    if record is None:
        return ("NONE", None) if peer is None else ("SUCCESS", None)
    if record.ok:
        return ("SUCCESS", None) if peer is not None else ("NONE", None)
    mode = _MODES.get(conn.get_context(), "none")
    if mode == "optional_no_ca":
        return "GENEROUS", record.text
    return f"FAILED:{record.text}", record.text


# --------------------------------------------------------------------------- building


class _VHostBuild:
    """Builds one Context, reporting problems with key paths under the right section."""

    def __init__(self, config: Config, vhost: VHost, c: Collector, loader: keys.KeyLoader) -> None:
        self.config, self.vhost, self.c, self.loader = config, vhost, c, loader
        assert vhost.tls is not None
        self.tls: TLSSettings = vhost.tls

    def line(self, name: str) -> int | None:
        from .config_lines import line_of

        return line_of(self.config.path, self.where(name).split(": ", 1)[1])

    def where(self, name: str) -> str:
        """`tls.X` when the value is inherited unchanged from [tls], else `vhost[i].tls.X`."""
        defaults = self.config.tls_defaults
        base = name.split("[")[0]
        attr = {"certificate": "certs", "key": "certs", "chain": "certs",
                "verify_client": "client", "ca_certificate_file": "client",
                "ca_certificate_path": "client", "crl_file": "client"}.get(base, base)
        inherited = getattr(self.tls, attr, None) == getattr(defaults, attr, object())
        prefix = "tls" if inherited else f"vhost[{self.vhost.index}].tls"
        return f"{self.config.path}: {prefix}.{name}"

    def _warn(self, name: str, message: str, fix: str = "") -> None:
        self.c.warn(self.where(name), message, fix, self.line(name))

    def error(self, name: str, message: str, fix: str = "") -> None:
        where = self.where(name)
        if not any(p.where == where and p.message == message for p in self.c.problems):
            self.c.error(where, message, fix, self.line(name))

    def build(self) -> SSL.Context | None:
        before = len(self.c.problems)
        ctx = SSL.Context(SSL.TLS_METHOD)
        self._protocols_and_ciphers(ctx)
        self._sessions(ctx)
        self._certificates(ctx)
        self._client_auth(ctx)
        return ctx if len(self.c.problems) == before else None

    def _protocols_and_ciphers(self, ctx: SSL.Context) -> None:
        tls = self.tls
        options = SSL.OP_ALL | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION
        if tls.honor_cipher_order:
            options |= SSL.OP_CIPHER_SERVER_PREFERENCE
        ctx.set_options(options)
        try:
            rng = protocols.parse(tls.protocols, openssl_name=openssl_version())
        except protocols.ProtocolError as exc:
            self.error("protocols", str(exc), exc.fix)
            rng = protocols.parse("+TLSv1.2 +TLSv1.3")
        if rng.legacy and not tls.insecure_legacy_protocols:
            self.error("protocols", f"protocols {tls.protocols!r} enables TLS 1.0/1.1 (insecure)",
                       "remove them, or set insecure_legacy_protocols = true for legacy clients")
        minimum = rng.minimum if tls.insecure_legacy_protocols else max(
            rng.minimum, "TLSv1.2", key=protocols.ORDER.index)
        ctx.set_min_proto_version(protocols.openssl_version_constant(minimum))
        ctx.set_max_proto_version(protocols.openssl_version_constant(rng.maximum))
        ciphers = tls.ciphers
        if tls.insecure_legacy_protocols and rng.legacy and "@SECLEVEL" not in ciphers:
            ciphers += ":@SECLEVEL=0"  # OpenSSL 3+: TLS 1.0/1.1 (SHA-1 signatures) need level 0
        if rng.minimum != "TLSv1.3" or rng.maximum != "TLSv1.3":
            try:
                ctx.set_cipher_list(ciphers.encode("ascii"))
            except (SSL.Error, UnicodeEncodeError):
                self.error("ciphers", f"the cipher string {tls.ciphers!r} selects no cipher "
                                      f"that {openssl_version()} knows",
                           "check it with `tlsfront cert ciphers 'SPEC'`; e.g. "
                           "\"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL\"")
        try:
            ctx.set_tls13_ciphersuites(tls.ciphersuites.encode("ascii"))
            if not tls.ciphersuites.strip() and rng.maximum == "TLSv1.3":
                raise SSL.Error("empty")
        except (SSL.Error, UnicodeEncodeError):
            self.error("ciphersuites", f"the TLS 1.3 ciphersuites {tls.ciphersuites!r} select "
                                       "nothing (names are separated by ':')",
                       "use names from TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, "
                       "TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256")
        if not tls.groups.strip() or not _lib.SSL_CTX_set1_curves_list(ctx._context, tls.groups.encode("ascii", "replace")):
            _clear_openssl_errors()
            self.error("groups", f"the groups {tls.groups!r} include a name OpenSSL does not know",
                       "use names such as X25519, P-256, P-384, P-521, X448, separated by ':'")

    def _sessions(self, ctx: SSL.Context) -> None:
        tls = self.tls
        if tls.session_cache == "off":
            ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            ctx.set_options(SSL.OP_NO_TICKET)
        else:
            ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
            if not tls.session_tickets:
                ctx.set_options(SSL.OP_NO_TICKET)
        # The session-ID context ties sessions to this vhost (at most 32 bytes): a session
        # from another vhost (another certificate, other client-auth settings) never resumes.
        label = f"{self.vhost.index}:{self.vhost.label}".encode()
        ctx.set_session_id(b"tlsf" + hashlib.sha256(label).digest()[:28])
        ctx.set_timeout(max(1, int(tls.session_timeout_seconds)))

    def _certificates(self, ctx: SSL.Context) -> None:
        """Each certificate with its key and its own chain.

        The chain of a certificate is what its file holds after the leaf, else the path from
        its issuer up through the `chain` file. Chains are per certificate
        (use_certificate_chain_file -> SSL_CTX_add0_chain_cert): an RSA and an ECDSA
        certificate from different intermediates (Let's Encrypt's R1x and E5) each go out
        with their own, which add_extra_chain_cert (one list per Context) could not do.
        """
        tls = self.tls
        seen_types: dict[str, Path] = {}
        many = len(tls.certs) > 1
        chain_file = next((p.chain_file for p in tls.certs if p.chain_file is not None), None)
        pool: list[x509.Certificate] = []
        if chain_file is not None:
            try:
                pool = keys.load_certificates(chain_file, "certificate chain")
            except keys.KeyProblem as exc:
                self.error("chain", exc.message, exc.fix)
        for i, pair in enumerate(tls.certs):
            suffix = f"[{i}]" if many else ""
            try:
                certs = keys.load_certificates(pair.cert_file)
            except keys.KeyProblem as exc:
                self.error("certificate" + suffix, exc.message, exc.fix)
                continue
            leaf = certs[0]
            kind = keys.key_type_name(leaf.public_key())
            if kind in seen_types:
                self.error("certificate" + suffix,
                           f"{pair.cert_file} and {seen_types[kind]} both hold {kind} certificates; "
                           "OpenSSL keeps one certificate per key type",
                           "keep one RSA and one ECDSA certificate at most")
                continue
            seen_types[kind] = pair.cert_file
            self._check_validity(leaf, pair.cert_file, "certificate" + suffix)
            server = f"{self.vhost.server_name}:{self.vhost.listen.port}"
            try:
                key = self.loader.load(pair.key_file, dialog=tls.passphrase_dialog, server=server,
                                       key_type=kind)
            except keys.KeyProblem as exc:
                self.error("key" + suffix, exc.message, exc.fix)
                continue
            try:
                keys.check_match(leaf, pair.cert_file, key, pair.key_file)
            except keys.KeyProblem as exc:
                self.error("key" + suffix, exc.message, exc.fix)
                continue
            if len(certs) > 1:
                chain = certs[1:]
                self._check_chain_order(leaf, chain, pair.cert_file, "certificate" + suffix)
            else:
                chain = _issuer_path(leaf, pool)
                if pool and not chain:
                    self._warn("chain",
                                f"{chain_file} holds no issuer of {pair.cert_file} (issued by "
                                f"{leaf.issuer.rfc4514_string()}): it goes out without intermediates",
                                "add that certificate's intermediate CA certificates to the chain file")
            try:
                _use_certificate_and_chain(ctx, leaf, chain)
                ctx.use_privatekey(key)
                ctx.check_privatekey()
            except (SSL.Error, OSError) as exc:
                text = _ssl_error_text(exc) if isinstance(exc, SSL.Error) else str(exc)
                self.error("certificate" + suffix, f"OpenSSL refused {pair.cert_file} with "
                                                   f"{pair.key_file}: {text}",
                           "check both files with `tlsfront cert show` and `tlsfront cert match`")
                continue
        # Apache sends the chain file as written: say so when a certificate's issuers are out
        # of order in it (tlsfront itself sends them in issuing order). Other certificates in the
        # file (the other key type's intermediates) are not a problem.
        for pair in tls.certs:
            try:
                leaf = keys.load_certificates(pair.cert_file)[0]
            except keys.KeyProblem:
                continue
            path = _issuer_path(leaf, pool)
            positions = [pool.index(c) for c in path]
            if positions != sorted(positions):
                self._check_chain_order(leaf, [pool[i] for i in sorted(positions)], chain_file, "chain")
                break

    def _check_validity(self, cert: x509.Certificate, path: Path, name: str) -> None:
        import datetime as dt

        now = dt.datetime.now(dt.timezone.utc)
        if cert.not_valid_after_utc < now:
            self._warn(name, f"the certificate {path} expired on "
                                          f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; clients will refuse it",
                        "renew it")
        elif cert.not_valid_before_utc > now:
            self._warn(name, f"the certificate {path} is not valid before "
                                          f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                        "check the clock, or wait")

    def _check_chain_order(self, leaf: x509.Certificate, chain: list[x509.Certificate], path: Path | None,
                           name: str) -> None:
        """Warn when a chain is not in issuing order (Apache sends it as written)."""
        expected = leaf.issuer
        for n, cert in enumerate(chain):
            if cert.subject != expected:
                self._warn(name,
                            f"{path}: certificate #{n + 1} ({cert.subject.rfc4514_string()}) is not the "
                            f"issuer of the one before it (expected {expected.rfc4514_string()})",
                            "order the chain: the leaf's issuer first, then its issuer, and so on")
                return
            if cert.subject == cert.issuer:
                return
            expected = cert.issuer

    def _client_auth(self, ctx: SSL.Context) -> None:
        client = self.tls.client
        _MODES[ctx] = client.verify
        if client.verify == "none":
            return
        generous = client.verify == "optional_no_ca"
        ctx.set_verify(VERIFY_MODES[client.verify], _make_verify_callback(generous))
        ctx.set_verify_depth(client.depth)
        if client.ca_file is not None or client.ca_path is not None:
            try:
                ctx.load_verify_locations(
                    str(client.ca_file) if client.ca_file else None,
                    str(client.ca_path) if client.ca_path else None,
                )
            except SSL.Error as exc:
                self.error("ca_certificate_file", f"cannot load the client CA certificates "
                                                  f"({client.ca_file or client.ca_path}): {_ssl_error_text(exc)}",
                           "give a PEM file of CA certificates (or a directory made by tlsfront cert rehash)")
        if client.ca_file is not None:
            # The CA names sent in the CertificateRequest (mod_ssl sends those of
            # SSLCACertificateFile/Path), so browsers offer only matching certificates.
            try:
                cas = keys.load_certificates(client.ca_file, "CA certificate file")
                if cas:  # (load_client_ca: set_client_ca_list needs deprecated X509Name objects)
                    ctx.load_client_ca(str(client.ca_file).encode())
            except keys.KeyProblem as exc:
                self.error("ca_certificate_file", exc.message, exc.fix)
        if client.crl_file is not None:
            try:
                data = Path(client.crl_file).read_bytes()
                crls = _load_crls(data)
                store = ctx.get_cert_store()
                assert store is not None
                for crl in crls:
                    store.add_crl(crl)
                store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
            except (OSError, ValueError) as exc:
                self.error("crl_file", f"cannot load the CRL {client.crl_file}: {exc}",
                           f"check it with `openssl crl -noout -text -in {client.crl_file}`")
                return
            self._check_crls(crls, client.crl_file, client.ca_file)

    def _check_crls(self, crls: list[x509.CertificateRevocationList], path: Path, ca_file: Path | None) -> None:
        """Warnings for CRLs that would fail every client certificate ("CRL has expired",
        "unable to get certificate CRL"): better said at start-up than per handshake."""
        import datetime as dt

        now = dt.datetime.now(dt.timezone.utc)
        cas: list[x509.Certificate] = []
        if ca_file is not None:
            try:
                cas = keys.load_certificates(ca_file, "CA certificate file")
            except keys.KeyProblem:
                cas = []
        for crl in crls:
            issuer = crl.issuer.rfc4514_string()
            if crl.next_update_utc is not None and crl.next_update_utc < now:
                self._warn("crl_file",
                            f"the CRL of {issuer} in {path} expired on {crl.next_update_utc:%Y-%m-%d %H:%M} UTC: "
                            "every client certificate it covers will fail with 'CRL has expired'",
                            "fetch a fresh CRL from the CA (and reload)")
        if cas:
            covered = {crl.issuer for crl in crls}
            for ca in cas:
                if ca.subject not in covered:
                    self._warn("crl_file",
                                f"{path} has no CRL of {ca.subject.rfc4514_string()}: client certificates "
                                "it issues directly will fail with 'unable to get certificate CRL' "
                                "(the CRL of the issuer of each client certificate is checked)",
                                "add that CA's CRL to crl_file (not needed if it issues only CA certificates)")


def _issuer_path(leaf: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    """The certificates of `pool` from the leaf's issuer upwards, in issuing order."""
    path: list[x509.Certificate] = []
    current = leaf
    while current.subject != current.issuer or current is leaf:
        nxt = next((c for c in pool if c.subject == current.issuer and c not in path and c != current), None)
        if nxt is None:
            break
        path.append(nxt)
        current = nxt
    return path


def _use_certificate_and_chain(ctx: SSL.Context, leaf: x509.Certificate, chain: list[x509.Certificate]) -> None:
    """Set `leaf` as a current certificate with its own chain (SSL_CTX_use_certificate_chain_file:
    the only per-certificate chain call pyOpenSSL binds; it reads a file, so a private temp file)."""
    if not chain:
        ctx.use_certificate(leaf)
        return
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, *chain))
    fd, name = tempfile.mkstemp(prefix="tlsfront-chain-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        ctx.use_certificate_chain_file(name)
    finally:
        os.unlink(name)


def _load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    if b"-----BEGIN X509 CRL-----" in data:
        out = []
        for block in data.split(b"-----END X509 CRL-----")[:-1]:
            out.append(x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n"))
        return out
    return [x509.load_der_x509_crl(data)]


def _clear_openssl_errors() -> None:
    _lib.ERR_clear_error()


def _ssl_error_text(exc: SSL.Error) -> str:
    try:
        return "; ".join(e[2] for e in exc.args[0]) or str(exc)
    except (IndexError, TypeError):
        return str(exc)


def openssl_version() -> str:
    """The OpenSSL pyOpenSSL uses (cryptography's bundled one), e.g. 'OpenSSL 4.0.3 29 Sep 2026'."""
    return SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()


def build_contexts(config: Config, *, dialog: keys.Dialog | None = None,
                   loader: keys.KeyLoader | None = None) -> dict[int, SSL.Context]:
    """A Context per TLS vhost, keyed by `VHost.index`; ConfigErrors lists every problem.

    `dialog` replaces the configured pass-phrase dialogs (tests; see keys.Dialog).
    Warnings (expired certificate, chain order) are added to the exception when
    there are errors, and otherwise available from `build_contexts_with_warnings`.
    """
    contexts, _warnings = build_contexts_with_warnings(config, dialog=dialog, loader=loader)
    return contexts


def build_contexts_with_warnings(config: Config, *, dialog: keys.Dialog | None = None,
                                 loader: keys.KeyLoader | None = None
                                 ) -> tuple[dict[int, SSL.Context], list[str]]:
    """As `build_contexts`; `loader` lets the master reuse decrypted keys (ticket-key
    rotation rebuilds the Contexts without asking pass phrases again)."""
    c = Collector()
    # SSLRandomSeed startup: before any key is used; a PRNG failure is a clear error, never a hang.
    try:
        seed_random(config.server.random_seed, "startup")
    except RuntimeError as exc:
        c.error(f"{config.path}: server.random_seed", str(exc),
                "check that /dev/urandom exists and is readable")
    loader = loader if loader is not None else keys.KeyLoader(override=dialog)
    contexts: dict[int, SSL.Context] = {}
    for vhost in config.vhosts:
        if vhost.tls is None:
            continue
        ctx = _VHostBuild(config, vhost, c, loader).build()
        if ctx is not None:
            contexts[vhost.index] = ctx
    c.raise_if_any()
    return contexts, [str(w) for w in c.warnings]


# --------------------------------------------------------------------------- random seed


SEED_EXEC_TIMEOUT_SECONDS = 10.0
_last_seed_result: str | None = None


def last_seed_result() -> str | None:
    """The line the last successful `seed_random` of this process returned (None before):
    the PRNG is process state, and build_contexts() seeds it, so the master logs this
    line (TLSF0014) after building the Contexts instead of seeding a second time."""
    return _last_seed_result


def seed_random(seeds: tuple[RandomSeed, ...], context: str = "startup") -> str:
    """Apply `random_seed` entries of `context` and check the PRNG; return a log line.

    `builtin` adds nothing (OpenSSL 1.1.1+ seeds itself from the OS); `file:` reads at most
    the byte count (non-blocking: /dev/random must not hang start-up); `exec:` runs the
    program and takes its standard output. Raises RuntimeError when OpenSSL says the
    generator is not seeded: a clear error, never a hang.

    `connect` entries are validated and accepted for compatibility; OpenSSL's DRBG reseeds
    itself, so nothing is read per connection (that would cost a syscall per handshake).
    build_contexts() calls this for "startup"; serve may log the returned line.
    """
    added = 0
    sources = []
    for seed in seeds:
        if seed.context != context:
            continue
        count = seed.bytes or 256
        data = b""
        if seed.kind == "file" and seed.path is not None:
            data = _read_nonblocking(seed.path, count)
        elif seed.kind == "exec" and seed.path is not None:
            try:
                done = subprocess.run([str(seed.path), str(count)], capture_output=True,
                                      stdin=subprocess.DEVNULL, timeout=SEED_EXEC_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"random_seed {seed.source}: the program did not finish within "
                                   f"{SEED_EXEC_TIMEOUT_SECONDS:g} seconds") from None
            except OSError as exc:
                raise RuntimeError(f"random_seed {seed.source}: the program cannot run: "
                                   f"{exc.strerror or exc}") from None
            if done.returncode != 0:
                raise RuntimeError(f"random_seed {seed.source}: the program failed with exit status "
                                   f"{done.returncode}")
            data = done.stdout[:count]
        if data:
            _lib.RAND_add(data, len(data), float(len(data)))
            added += len(data)
        sources.append(seed.source if not data else f"{seed.source} ({len(data)} bytes)")
    if _lib.RAND_status() != 1:
        raise RuntimeError(
            "OpenSSL's random number generator is not seeded (RAND_status() = 0): check that "
            "/dev/urandom is readable, or add random_seed = [\"startup file:/dev/urandom 512\"]")
    used = ", ".join(sources) if sources else "builtin"
    global _last_seed_result
    _last_seed_result = f"PRNG seeded ({context}: {used}; {added} bytes added, RAND_status OK)"
    return _last_seed_result


def _read_nonblocking(path: Path, count: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise RuntimeError(f"random_seed file:{path}: {exc.strerror}") from None
    try:
        return os.read(fd, count)
    except BlockingIOError:
        return b""
    finally:
        os.close(fd)
