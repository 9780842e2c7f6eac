"""Client certificates [SSLVerifyClient/Depth, SSLCACertificateFile/Path,
SSLCARevocationFile]: setting them up on a Context, and the verification result of a
connection.

`ClientAuthMixin._client_auth(ctx)` sets the verify mode, depth, CA locations, the CA names
of the CertificateRequest and the CRLs, and warns about CRLs that would fail every client
(expired, or missing for a CA). Mixed into tlsctx._VHostBuild.

At handshake time a verify callback records the first error per connection: with a
callback that returns True, OpenSSL's own verify result is reset to OK (facts file), so
without the record `optional_no_ca` could not tell GENEROUS from SUCCESS, nor could the
error log say "unknown CA / expired / revoked". `client_verify_result(conn)` gives
mod_ssl's SSL_CLIENT_VERIFY, e.g. ("GENEROUS", "certificate has expired").
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from . import keys
from .tlsctx_certs import _ssl_error_text

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



class ClientAuthMixin:
    """Client-certificate setup of one Context; mixed into tlsctx._VHostBuild."""

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


def _load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    if b"-----BEGIN X509 CRL-----" in data:
        out = []
        for block in data.split(b"-----END X509 CRL-----")[:-1]:
            out.append(x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n"))
        return out
    return [x509.load_der_x509_crl(data)]
