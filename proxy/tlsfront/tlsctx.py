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

from OpenSSL import SSL

from . import keys
from .errors import Collector
from .model import Config, TLSSettings, VHost
# The parts: tlsctx_protocols.py, tlsctx_certs.py, tlsctx_client.py (setup and the
# per-connection verify result), random_seed.py. Their public names stay importable here.
from .random_seed import last_seed_result, seed_random  # noqa: F401
from .tlsctx_certs import CertificatesMixin
from .tlsctx_client import (VERIFY_CATEGORY, VERIFY_MODES, ClientAuthMixin,  # noqa: F401
                            VerifyRecord, client_verify_record, client_verify_result,
                            verify_error_text)
from .tlsctx_protocols import ProtocolsMixin, openssl_version  # noqa: F401


# --------------------------------------------------------------------------- building


class _VHostBuild(ProtocolsMixin, CertificatesMixin, ClientAuthMixin):
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
