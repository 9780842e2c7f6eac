"""`tlsfront cert match | ciphers | show`: looking at certificates, keys and cipher strings.

    match       openssl x509 -noout -modulus | openssl md5 (and rsa, req): do they belong together?
    ciphers     openssl ciphers -V SPEC, as this proxy's OpenSSL reads SPEC
    show        openssl x509 -noout -subject -issuer -dates ..., and chain order problems

`match` exits 1 when the files do not belong together; `show` exits 1 when a bundle's
chain is out of order (each certificate must issue the one before it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from . import keys
from .certtool_io import load_file, load_key
from .certtool_x509 import CertToolError, cipher_list, load_any, openssl_date, openssl_name, san_text, sans_of


def cmd_match(args: argparse.Namespace) -> int:
    rows = []
    cert_loaded = load_any(Path(args.cert))
    if cert_loaded.kind != "certificate":
        raise CertToolError(f"{args.cert} holds a {cert_loaded.kind}, not a certificate", "")
    rows.append(("certificate", args.cert, cert_loaded.objects[0].public_key()))
    rows.append(("private key", args.key, load_key(Path(args.key), args.passin).public_key()))
    if args.csr:
        csr_loaded = load_any(Path(args.csr))
        if csr_loaded.kind != "csr":
            raise CertToolError(f"{args.csr} holds a {csr_loaded.kind}, not a CSR", "")
        rows.append(("CSR", args.csr, csr_loaded.objects[0].public_key()))
    for what, path, pub in rows:
        print(f"{what:<12} {path}")
        print(f"             {keys.key_description(pub)}, public key SHA-256 {keys.fingerprint(pub)}")
        md5 = keys.modulus_md5(pub)
        if md5:
            print(f"             modulus MD5 {md5}  (= openssl ... -noout -modulus | openssl md5)")
    first = keys.spki_der(rows[0][2])
    if all(keys.spki_der(pub) == first for _, _, pub in rows[1:]):
        print("MATCH: they belong together")
        return 0
    print("DO NOT MATCH: the public keys differ", file=sys.stdout)
    return 1


def cmd_ciphers(args: argparse.Namespace) -> int:
    infos = cipher_list(args.spec, ciphersuites=args.ciphersuites, legacy=args.legacy)
    if not infos:
        raise CertToolError(f"the cipher string {args.spec!r} selects nothing usable at TLS 1.2+",
                            "use --legacy to see TLS 1.0/1.1-era ciphers")
    if args.verbose:
        for c in infos:
            print(f"{c.code_text} - {c.name:<32} {c.version:<7} {c.bits} bits")
    else:
        print(":".join(c.name for c in infos))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    path = Path(args.file)
    loaded, phrase = load_file(path, args.passin)
    problems = 0
    if loaded.kind == "certificate":
        certs = loaded.objects
        for n, cert in enumerate(certs):
            if len(certs) > 1:
                print(f"--- certificate #{n + 1} of {len(certs)}")
            _show_cert(cert)
        problems += _chain_problems(certs)
    elif loaded.kind == "key":
        key = loaded.objects[0]
        print(f"private key: {keys.key_description(key)}{' (encrypted)' if phrase else ''}")
        print(f"public key SHA-256: {keys.fingerprint(key.public_key())}")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            print(f"warning: {path} is readable by group or others (mode {mode:04o}): chmod 400 {path}")
    elif loaded.kind == "csr":
        csr = loaded.objects[0]
        print(f"subject={openssl_name(csr.subject)}")
        sans = sans_of(csr)
        if sans:
            print(f"X509v3 Subject Alternative Name: {san_text(sans)}")
        print(f"key: {keys.key_description(csr.public_key())}, public key SHA-256 {keys.fingerprint(csr.public_key())}")
        print(f"signature: {'OK' if csr.is_signature_valid else 'BAD'}")
    else:
        crl = loaded.objects[0]
        print(f"issuer={openssl_name(crl.issuer)}")
        print(f"lastUpdate={openssl_date(crl.last_update_utc)}")
        if crl.next_update_utc is not None:
            print(f"nextUpdate={openssl_date(crl.next_update_utc)}")
        print(f"revoked: {len(crl)}")
        for r in crl:
            print(f"  serial={_serial_hex(r.serial_number)} revoked {openssl_date(r.revocation_date_utc)}")
    return 1 if problems else 0


def _serial_hex(serial: int) -> str:
    raw = serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")
    return raw.hex().upper()


def _show_cert(cert: x509.Certificate) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    print(f"subject={openssl_name(cert.subject)}")
    print(f"issuer={openssl_name(cert.issuer)}")
    print(f"serial={_serial_hex(cert.serial_number)}")
    print(f"notBefore={openssl_date(cert.not_valid_before_utc)}")
    print(f"notAfter={openssl_date(cert.not_valid_after_utc)}")
    sans = sans_of(cert)
    if sans:
        print(f"X509v3 Subject Alternative Name: {san_text(sans)}")
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    print(f"key: {keys.key_description(cert.public_key())}, public key SHA-256 {keys.fingerprint(cert.public_key())}")
    fp = cert.fingerprint(hashes.SHA256()).hex().upper()
    print(f"sha256 Fingerprint={':'.join(fp[i:i + 2] for i in range(0, len(fp), 2))}")
    status = ("EXPIRED" if cert.not_valid_after_utc < now else
              "NOT YET VALID" if cert.not_valid_before_utc > now else
              f"valid, {(cert.not_valid_after_utc - now).days} days left")
    kind = "CA" if ca else "end entity"
    if cert.subject == cert.issuer:
        kind += ", self-signed"
    print(f"status: {status} ({kind})")


def _chain_problems(certs: list[x509.Certificate]) -> int:
    """Chain order as SSLCertificateChainFile / a bundle should have it: each issues the one before."""
    problems = 0
    for n in range(1, len(certs)):
        prev, cert = certs[n - 1], certs[n]
        if prev.issuer != cert.subject:
            issuer_at = next((i for i, c in enumerate(certs) if c.subject == prev.issuer and i != n - 1), None)
            where = f" (it is certificate #{issuer_at + 1})" if issuer_at is not None else " (not in this file)"
            print(f"chain order problem: certificate #{n + 1} ({openssl_name(cert.subject)}) did not issue "
                  f"#{n} ({openssl_name(prev.subject)}); its issuer is {openssl_name(prev.issuer)}{where}")
            problems += 1
    if len(certs) > 1 and certs[-1].subject == certs[-1].issuer:
        print("note: the file ends with a self-signed root; clients have it already, it need not be sent")
    return problems
