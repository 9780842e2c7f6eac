"""Protocol range, ciphers, groups and the session cache of one Context.

[SSLProtocol]: TLS 1.2 minimum unless `insecure_legacy_protocols`, which also appends
`@SECLEVEL=0` (OpenSSL 3+ refuses TLS 1.0/1.1 at higher levels); [SSLCipherSuite], TLS 1.3
ciphersuites, groups, server order [SSLHonorCipherOrder]; no compression (CRIME) and no
client-initiated renegotiation (OP_NO_RENEGOTIATION: the CVE-2009-3555 lesson, and a CPU
cost a client could impose at will). [SSLSessionCache] "shared"/"per-worker": a server
cache and a session-ID context per vhost; "off": no cache and no tickets, so nothing
resumes; [SSLSessionCacheTimeout], [SSLSessionTickets]. Example (conf/tlsfront.toml)::

    protocols = "TLSv1.2+"
    ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"
    groups = "X25519:P-256"

Mixed into tlsctx._VHostBuild, which reports problems under the right key.
"""

from __future__ import annotations

import hashlib

from OpenSSL import SSL
from OpenSSL._util import lib as _lib

from . import protocols


class ProtocolsMixin:
    """Protocols, ciphers and sessions of one Context; see the module docstring."""

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


def _clear_openssl_errors() -> None:
    _lib.ERR_clear_error()


def openssl_version() -> str:
    """The OpenSSL pyOpenSSL uses (cryptography's bundled one), e.g. 'OpenSSL 4.0.3 29 Sep 2026'."""
    return SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
