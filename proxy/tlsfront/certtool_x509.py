"""Pure helpers of `tlsfront cert`: reading PEM/DER objects, OpenSSL-style text, name hashes,
the cipher list a cipher string selects.

Names are printed as `openssl x509 -noout -subject` prints them with OpenSSL 3's default
`-nameopt` (`C = DE, O = Example, CN = www.example.test`), so an operator can compare
the two outputs line by line.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from . import keys

# OID -> the short name OpenSSL prints.
SHORT_NAMES = {
    NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST", NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DOMAIN_COMPONENT: "DC", NameOID.USER_ID: "UID", NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN", NameOID.TITLE: "title", NameOID.STREET_ADDRESS: "street",
    NameOID.POSTAL_CODE: "postalCode",
}
LONG_TO_OID = {v: k for k, v in SHORT_NAMES.items()}


class CertToolError(Exception):
    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def openssl_name(name: x509.Name) -> str:
    """`C = DE, O = Example, CN = www.example.test` (OpenSSL 3's default -nameopt)."""
    parts = []
    for rdn in name.rdns:
        parts.append(" + ".join(f"{SHORT_NAMES.get(a.oid, a.oid.dotted_string)} = {a.value}"
                                for a in rdn))
    return ", ".join(parts)


def parse_subject(text: str) -> x509.Name:
    """`/C=DE/O=Example/CN=www.example.test` (openssl req -subj) -> Name."""
    if not text.startswith("/"):
        raise CertToolError(f"subject {text!r} must look like /C=DE/O=Example/CN=www.example.test",
                            "start with / and separate the parts with /")
    attrs = []
    for part in text.strip("/").split("/"):
        key, sep, value = part.partition("=")
        if not sep or key not in LONG_TO_OID or not value:
            raise CertToolError(f"subject {text!r}: {part!r} is not KEY=VALUE with a known KEY",
                                f"use {', '.join(sorted(LONG_TO_OID))}")
        attrs.append(x509.NameAttribute(LONG_TO_OID[key], value))
    return x509.Name(attrs)


def parse_san(text: str) -> x509.GeneralName:
    """`DNS:www.example.test`, `IP:127.0.0.1` or `email:a@b` -> GeneralName; a bare name is DNS."""
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = "DNS", text
    kind = kind.upper()
    try:
        if kind == "DNS":
            return x509.DNSName(value)
        if kind == "IP":
            return x509.IPAddress(ipaddress.ip_address(value))
        if kind == "EMAIL":
            return x509.RFC822Name(value)
    except ValueError as exc:
        raise CertToolError(f"--san {text!r}: {exc}", "write DNS:name or IP:address") from None
    raise CertToolError(f"--san {text!r}: unknown kind {kind!r}", "write DNS:name, IP:address or email:addr")


def san_text(names: list[x509.GeneralName]) -> str:
    """`DNS:localhost, IP Address:127.0.0.1` as `openssl x509 -ext subjectAltName` prints it."""
    out = []
    for n in names:
        if isinstance(n, x509.DNSName):
            out.append(f"DNS:{n.value}")
        elif isinstance(n, x509.IPAddress):
            out.append(f"IP Address:{_openssl_ip(n.value)}")
        elif isinstance(n, x509.RFC822Name):
            out.append(f"email:{n.value}")
        elif isinstance(n, x509.UniformResourceIdentifier):
            out.append(f"URI:{n.value}")
        else:
            out.append(str(n.value))
    return ", ".join(out)


def _openssl_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | object) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        # OpenSSL prints IPv6 SANs in full, upper-case groups without zero compression.
        return ":".join(f"{int(g, 16):X}" for g in ip.exploded.split(":"))
    return str(ip)


def sans_of(cert_or_csr: x509.Certificate | x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        ext = cert_or_csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


def openssl_date(when: dt.datetime) -> str:
    """`Nov 27 10:00:00 2026 GMT`, as `openssl x509 -dates` prints it."""
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S %Y} GMT"


# --------------------------------------------------------------------------- files


@dataclass
class Loaded:
    """What a PEM or DER file holds."""

    kind: str  # certificate | key | csr | crl
    objects: list  # the parsed objects (certificates: several in a PEM bundle)
    pem: bool


def load_any(path: Path, passphrase: bytes | None = None) -> Loaded:
    """Certificates, a private key, a CSR or a CRL from a PEM or DER file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        from .errors import explain_os_error

        message, fix = explain_os_error(path, exc, purpose="read")
        raise CertToolError(message, fix) from None
    if b"-----BEGIN" in data:
        if b"CERTIFICATE REQUEST-----" in data:
            return Loaded("csr", [x509.load_pem_x509_csr(data)], True)
        if b"X509 CRL-----" in data:
            return Loaded("crl", [x509.load_pem_x509_crl(data)], True)
        if b"CERTIFICATE-----" in data:
            return Loaded("certificate", x509.load_pem_x509_certificates(data), True)
        if b"PRIVATE KEY-----" in data:
            return Loaded("key", [_load_key(data, passphrase, path)], True)
        raise CertToolError(f"{path}: no certificate, key, CSR or CRL in this PEM file",
                            f"look at it with `openssl asn1parse -in {path}`")
    for kind, loader in (("certificate", x509.load_der_x509_certificate), ("csr", x509.load_der_x509_csr),
                         ("crl", x509.load_der_x509_crl)):
        try:
            return Loaded(kind, [loader(data)], False)
        except ValueError:
            continue
    try:
        return Loaded("key", [_load_key(data, passphrase, path)], False)
    except CertToolError:
        raise CertToolError(f"{path} is neither PEM nor a DER certificate, key, CSR or CRL",
                            f"look at it with `openssl asn1parse -inform DER -in {path}`") from None


def _load_key(data: bytes, passphrase: bytes | None, path: Path) -> keys.PrivateKey:
    load = serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
    try:
        return load(data, passphrase)  # type: ignore[return-value]
    except TypeError:
        if passphrase is None:
            raise CertToolError(f"{path} is encrypted: a pass phrase is needed",
                                "give --passin env:VAR, file:PATH or pass:TEXT, or run on a terminal") from None
        raise CertToolError(f"{path} is not encrypted, but a pass phrase was given",
                            "leave out --passin") from None
    except ValueError as exc:
        if passphrase is not None:
            raise CertToolError(f"wrong pass phrase for {path}", "give the right pass phrase") from None
        raise CertToolError(f"{path} is not a readable private key: {exc}",
                            f"check it with `openssl pkey -noout -in {path}`") from None


def is_encrypted_key(path: Path) -> bool:
    data = Path(path).read_bytes()
    return b"ENCRYPTED" in data.split(b"\n", 2)[0] or b"Proc-Type: 4,ENCRYPTED" in data


# --------------------------------------------------------------------------- name hashes (rehash)


def name_hash(name: x509.Name) -> int:
    """OpenSSL's X509_NAME_hash (the `openssl x509 -hash` value), computed by OpenSSL itself."""
    from OpenSSL._util import ffi, lib

    der = name.public_bytes()
    buf = ffi.new("unsigned char[]", der)
    ptr = ffi.new("unsigned char **", buf)
    xname = lib.d2i_X509_NAME(ffi.NULL, ptr, len(der))
    if xname == ffi.NULL:
        raise CertToolError("OpenSSL could not parse a name", "")
    try:
        return int(lib.X509_NAME_hash(xname)) & 0xFFFFFFFF
    finally:
        lib.X509_NAME_free(xname)


# --------------------------------------------------------------------------- cipher lists


@dataclass(frozen=True)
class CipherInfo:
    code: int  # the two-byte IANA code
    name: str  # OpenSSL's name
    version: str  # the protocol that introduced it (TLSv1.2, TLSv1.3, SSLv3...)
    bits: int

    @property
    def code_text(self) -> str:
        return f"0x{self.code >> 8:02X},0x{self.code & 0xFF:02X}"


def cipher_list(spec: str, *, ciphersuites: str | None = None, legacy: bool = False) -> list[CipherInfo]:
    """The ciphers the proxy's OpenSSL selects for `spec`, in preference order.

    Taken from a ClientHello that a Context configured like the proxy's writes into a
    memory BIO (pyOpenSSL exposes no cipher stack), then looked up with SSL_CIPHER_find.
    TLS 1.3 suites (`ciphersuites`) come first, as `openssl ciphers` lists them.
    """
    from OpenSSL import SSL
    from OpenSSL._util import ffi, lib

    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_VERSION if legacy else SSL.TLS1_2_VERSION)
    try:
        ctx.set_cipher_list((spec + (":@SECLEVEL=0" if legacy else "")).encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        raise CertToolError(f"the cipher string {spec!r} selects no cipher this OpenSSL knows",
                            "see `openssl ciphers -v ALL` for the names; e.g. 'ECDHE+AESGCM:ECDHE+CHACHA20'") from None
    if ciphersuites is not None:
        try:
            ctx.set_tls13_ciphersuites(ciphersuites.encode("ascii"))
        except (SSL.Error, UnicodeEncodeError):
            raise CertToolError(f"the TLS 1.3 ciphersuites {ciphersuites!r} select nothing", "") from None
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    hello = conn.bio_read(65536)
    codes = _client_hello_ciphers(hello)
    out = []
    for code in codes:
        if code in _SIGNALLING:
            continue
        cipher = lib.SSL_CIPHER_find(conn._ssl, bytes([code >> 8, code & 0xFF]))
        if cipher == ffi.NULL:
            continue
        out.append(CipherInfo(
            code, ffi.string(lib.SSL_CIPHER_get_name(cipher)).decode(),
            ffi.string(lib.SSL_CIPHER_get_version(cipher)).decode(),
            int(lib.SSL_CIPHER_get_bits(cipher, ffi.NULL)),
        ))
    return out


# Signalling cipher suite values, not ciphers: TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746),
# TLS_FALLBACK_SCSV (RFC 7507). OpenSSL 4 knows the first by name; `openssl ciphers` omits both.
_SIGNALLING = frozenset({0x00FF, 0x5600})


def _client_hello_ciphers(record: bytes) -> list[int]:
    """Cipher suite codes of a TLS ClientHello (RFC 8446 4.1.2), from the first record."""
    body = record[5 + 4:]  # record header, handshake header
    pos = 2 + 32  # legacy_version, random
    sid_len = body[pos]
    pos += 1 + sid_len
    n = int.from_bytes(body[pos:pos + 2], "big")
    pos += 2
    return [int.from_bytes(body[i:i + 2], "big") for i in range(pos, pos + n, 2)]
