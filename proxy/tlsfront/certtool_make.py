"""`tlsfront cert genkey | csr | selfsign | passphrase`: making keys and certificates.

    genkey      openssl genrsa / ecparam -genkey          (-des3: --encrypt)
    csr         openssl req -new -key server.key
    selfsign    openssl req -new -x509 -key server.key
    passphrase  openssl rsa -in k -out k.unsecure (--remove), openssl rsa -des3 (--change)

Each `cmd_*` takes the parsed arguments (certtool.add_parser) and returns the exit status.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import certgen, keys
from .certtool_io import key_pem, load_key, read_passphrase, subject_and_sans, write_out
from .certtool_x509 import CertToolError, is_encrypted_key, load_any, openssl_date, openssl_name, san_text, sans_of


def cmd_genkey(args: argparse.Namespace) -> int:
    key = certgen.generate_key(args.type)
    phrase = read_passphrase(args.passout, prompt="Enter PEM pass phrase:", confirm=True) if args.encrypt else None
    write_out(Path(args.out), key_pem(key, phrase), force=args.force, secret=True)
    print(f"{args.out}: {keys.key_description(key)} private key{' (encrypted, AES-256)' if phrase else ''}, mode 0600")
    return 0


def cmd_csr(args: argparse.Namespace) -> int:
    key = load_key(Path(args.key), args.passin)
    name, sans = subject_and_sans(args)
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    write_out(Path(args.out), csr.public_bytes(serialization.Encoding.PEM), force=args.force)
    print(f"{args.out}: CSR for {openssl_name(name)}" + (f" ({san_text(sans)})" if sans else ""))
    return 0


def cmd_selfsign(args: argparse.Namespace) -> int:
    key = load_key(Path(args.key), args.passin)
    if args.csr:
        loaded = load_any(Path(args.csr))
        if loaded.kind != "csr":
            raise CertToolError(f"{args.csr} holds a {loaded.kind}, not a CSR", "")
        csr = loaded.objects[0]
        if keys.spki_der(csr.public_key()) != keys.spki_der(key.public_key()):
            raise CertToolError(f"the CSR {args.csr} was not made with the key {args.key}",
                                f"tlsfront cert match shows the fingerprints; use the CSR's own key")
        name, sans = csr.subject, sans_of(csr)
    else:
        name, sans = subject_and_sans(args)
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=args.days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    write_out(Path(args.out), cert.public_bytes(serialization.Encoding.PEM), force=args.force)
    print(f"{args.out}: self-signed certificate for {openssl_name(name)}, valid {args.days} days "
          f"(until {openssl_date(cert.not_valid_after_utc)})")
    return 0


def cmd_passphrase(args: argparse.Namespace) -> int:
    path = Path(args.key)
    if not is_encrypted_key(path) and args.remove:
        raise CertToolError(f"{path} has no pass phrase to remove", "")
    key = load_key(path, args.passin)
    phrase = None
    if args.change or args.add:
        phrase = read_passphrase(args.passout, prompt="Enter new PEM pass phrase:", confirm=True)
    data = key_pem(key, phrase)
    if args.out:
        write_out(Path(args.out), data, force=args.force, secret=True)
        target = args.out
    else:
        # In place, keeping the original as the FAQ does (cp server.key server.key.org).
        backup = path.with_name(path.name + ".org")
        write_out(backup, path.read_bytes(), force=args.force, secret=True)
        certgen.write_file(path, data, mode=0o600)
        target = f"{path} (original kept as {backup})"
    if phrase is None:
        print(f"{target}: pass phrase removed. Anyone who can read this file can impersonate the server: "
              "keep it mode 0400, readable by root only (the FAQ's chmod 400).")
    else:
        print(f"{target}: pass phrase {'changed' if args.change else 'set'}")
    return 0
