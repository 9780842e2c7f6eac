"""TLS facts for the application: mod_ssl's `SSLOptions +StdEnvVars +ExportCertData`
as request headers.

| header                | mod_ssl variable          | example                      |
|-----------------------|---------------------------|------------------------------|
| X-SSL-Protocol        | SSL_PROTOCOL              | TLSv1.3                      |
| X-SSL-Cipher          | SSL_CIPHER                | TLS_AES_128_GCM_SHA256       |
| X-SSL-Cipher-Bits     | SSL_CIPHER_USEKEYSIZE     | 128                          |
| X-SSL-Session-Reused  | SSL_SESSION_RESUMED       | Initial / Resumed            |
| X-SSL-Client-Verify   | SSL_CLIENT_VERIFY         | NONE, SUCCESS, GENEROUS, FAILED:reason |
| X-SSL-Client-S-DN     | SSL_CLIENT_S_DN           | CN=alice (RFC 4514)          |
| X-SSL-Client-I-DN     | SSL_CLIENT_I_DN           | CN=tlsfront test client CA   |
| X-SSL-Client-Serial   | SSL_CLIENT_M_SERIAL       | 1A2B... (upper-case hex)     |
| Client-Cert           | SSL_CLIENT_CERT (RFC 9440)| :MIIB...=: (base64 DER, sf-binary) |

The facts of a connection do not change between its requests (no
renegotiation), so they are computed once per connection (`facts_from`) and
turned into header tuples once (`headers_for`).

Values from the client certificate are the peer's text: every control
character is escaped as `\\xHH` so that a DN can never inject a header line
(cryptography's RFC 4514 escaping leaves CR and LF alone).
"""

from __future__ import annotations

import base64

from OpenSSL import SSL
from OpenSSL._util import lib as _lib

Header = tuple[bytes, bytes]


def _safe(text: str) -> bytes:
    """Header-safe bytes: controls and DEL escaped as \\xHH; UTF-8 otherwise."""
    data = text.encode("utf-8", "backslashreplace")
    if any(b < 0x20 or b == 0x7F for b in data):
        data = b"".join(b"\\x%02X" % b if (b < 0x20 or b == 0x7F) else bytes((b,)) for b in data)
    return data


def session_reused(conn: SSL.Connection) -> bool:
    """Whether the handshake resumed a session (SSL_session_reused; pyOpenSSL has no getter)."""
    return bool(_lib.SSL_session_reused(conn._ssl))  # noqa: SLF001 - see twisted-pyopenssl-facts


def _verify_result(conn: SSL.Connection, has_cert: bool) -> str:
    # tlsctx's verdict knows optional_no_ca (GENEROUS) and the errors its verify
    # callback recorded (OpenSSL's stored result is reset when the callback says OK).
    from .tlsctx import client_verify_result
    return client_verify_result(conn)[0]


class TLSFacts:
    """What a TLS connection negotiated, as mod_ssl names it."""

    __slots__ = ("protocol", "cipher", "cipher_bits", "reused", "verify", "subject_dn",
                 "issuer_dn", "serial", "cert_der")

    def __init__(self, protocol: str | None, cipher: str | None, cipher_bits: int | None,
                 reused: bool, verify: str, subject_dn: str | None = None,
                 issuer_dn: str | None = None, serial: str | None = None,
                 cert_der: bytes | None = None) -> None:
        self.protocol = protocol
        self.cipher = cipher
        self.cipher_bits = cipher_bits
        self.reused = reused
        self.verify = verify
        self.subject_dn = subject_dn
        self.issuer_dn = issuer_dn
        self.serial = serial
        self.cert_der = cert_der


def facts_from(conn: SSL.Connection) -> TLSFacts:
    """Read the facts of an established connection (once per connection)."""
    cert = conn.get_peer_certificate(as_cryptography=True)
    facts = TLSFacts(
        conn.get_protocol_version_name(), conn.get_cipher_name(), conn.get_cipher_bits(),
        session_reused(conn), _verify_result(conn, cert is not None),
    )
    if cert is not None:
        from cryptography.hazmat.primitives.serialization import Encoding
        facts.subject_dn = cert.subject.rfc4514_string()
        facts.issuer_dn = cert.issuer.rfc4514_string()
        facts.serial = f"{cert.serial_number:X}"
        facts.cert_der = cert.public_bytes(Encoding.DER)
    return facts


_COMMON: dict[tuple, tuple[Header, ...]] = {}  # headers of connections without a client certificate
_COMMON_MAX = 256  # distinct (protocol, cipher, bits, reused, verify): a handful in practice


def headers_for(facts: TLSFacts, *, client_cert: bool) -> tuple[Header, ...]:
    """The X-SSL-* (and, when asked, Client-Cert) headers for `facts` (read-only).

    Without a client certificate they depend on five values that few combinations take:
    built once per combination (a bounded cache), not once per connection.
    """
    if facts.subject_dn is None:
        key = (facts.protocol, facts.cipher, facts.cipher_bits, facts.reused, facts.verify)
        cached = _COMMON.get(key)
        if cached is None:
            cached = tuple(_build(facts, client_cert=False))
            if len(_COMMON) >= _COMMON_MAX:
                _COMMON.clear()
            _COMMON[key] = cached
        return cached
    return tuple(_build(facts, client_cert=client_cert))


def _build(facts: TLSFacts, *, client_cert: bool) -> list[Header]:
    out: list[Header] = [
        (b"X-SSL-Protocol", _safe(facts.protocol or "-")),
        (b"X-SSL-Cipher", _safe(facts.cipher or "-")),
        (b"X-SSL-Cipher-Bits", b"%d" % (facts.cipher_bits or 0)),
        (b"X-SSL-Session-Reused", b"Resumed" if facts.reused else b"Initial"),
        (b"X-SSL-Client-Verify", _safe(facts.verify)),
    ]
    if facts.subject_dn is not None:
        out += [
            (b"X-SSL-Client-S-DN", _safe(facts.subject_dn)),
            (b"X-SSL-Client-I-DN", _safe(facts.issuer_dn or "")),
            (b"X-SSL-Client-Serial", _safe(facts.serial or "")),
        ]
        if client_cert and facts.cert_der is not None:
            # RFC 9440 section 2.2: a Structured Field Byte Sequence of the DER.
            out.append((b"Client-Cert", b":" + base64.b64encode(facts.cert_der) + b":"))
    return out
