"""Certificates, keys and chains of one Context [SSLCertificateFile/KeyFile/ChainFile].

An RSA and an ECDSA pair may sit side by side, OpenSSL picking per handshake by the
client's ciphers, each sent with its own intermediates in issuing order: the chain of a
certificate is what its file holds after the leaf, else the path from its issuer up
through the `chain` file. Warnings: expired or not yet valid certificates, chains out of
issuing order (Apache sends the chain file as written), a chain file without the issuer.

Mixed into tlsctx._VHostBuild, which reports problems under the right key.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from . import keys


class CertificatesMixin:
    """Certificates and chains of one Context; see the module docstring."""

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


def _ssl_error_text(exc: SSL.Error) -> str:
    try:
        return "; ".join(e[2] for e in exc.args[0]) or str(exc)
    except (IndexError, TypeError):
        return str(exc)
