"""Throwaway certificates: the demo's self-signed one and the tests' CA chains.

Nothing made here is meant for production; keys are written with mode 0600.
EC P-256 by default: fast to make (Twisted's helper uses RSA-4096, seconds each).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_key(kind: str = "ec256") -> PrivateKey:
    """`kind`: ec256, ec384, rsa2048, rsa3072, rsa4096."""
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind.startswith("rsa") and kind[3:] in ("1024", "2048", "3072", "4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise ValueError(f"unknown key kind {kind!r}: use ec256, ec384, rsa2048, rsa3072 or rsa4096")


@dataclass
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, passphrase: bytes | None = None) -> bytes:
        enc = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
        )

    def write(self, cert_path: Path, key_path: Path, passphrase: bytes | None = None) -> None:
        write_file(cert_path, self.cert_pem())
        write_file(key_path, self.key_pem(passphrase), mode=0o600)


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(
    cn: str,
    *,
    issuer: Issued | None = None,
    is_ca: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    key_kind: str = "ec256",
    key: PrivateKey | None = None,
    days: int = 30,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
    client: bool = False,
    serial: int | None = None,
) -> Issued:
    """Issue a certificate signed by `issuer` (self-signed when None)."""
    key = key or generate_key(key_kind)
    now = _dt.datetime.now(_dt.timezone.utc)
    not_before = not_before or now - _dt.timedelta(minutes=5)
    not_after = not_after or now + _dt.timedelta(days=days)
    subject = _name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = issuer.key if issuer else key
    cert = builder.sign(signer, hashes.SHA256())
    return Issued(cert=cert, key=key)


def ensure_demo_certificate(directory: Path) -> tuple[Path, Path]:
    """The demo's self-signed certificate for localhost/127.0.0.1, made once and reused."""
    directory = Path(directory)
    cert_path, key_path = directory / "demo.crt", directory / "demo.key"
    if not (cert_path.exists() and key_path.exists()):
        leaf = issue(
            "localhost",
            dns_names=("localhost",),
            ip_addresses=("127.0.0.1", "127.0.0.2", "::1"),
            days=365,
        )
        leaf.write(cert_path, key_path)
    return cert_path, key_path
