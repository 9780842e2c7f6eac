"""What the `tlsfront cert` subcommands share: pass phrases, keys, output files, subjects.

- `read_passphrase(spec)`: openssl's forms ``pass:TEXT``, ``env:VAR``, ``file:PATH`` (first
  line), or asked on the terminal (twice with `confirm`, at least 4 characters).
- `load_key(path, passin)`: a private key, asking for its pass phrase when encrypted;
  `load_file(path, passin)`: whatever the file holds, likewise.
- `write_out(path, data, force=, secret=)`: refuses to overwrite without --force; keys 0600.
- `subject_and_sans(args)`: from --subject (``/C=DE/O=Example/CN=www.example.test``),
  --cn and --san (``DNS:name``, ``IP:addr``), or the FAQ's `openssl req` dialog; the CN is
  copied to the SANs when none are given (browsers read only the SAN).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from . import certgen, keys
from .certtool_x509 import CertToolError, Loaded, is_encrypted_key, load_any, parse_san, parse_subject


# --------------------------------------------------------------------------- pass phrases


def read_passphrase(spec: str | None, *, prompt: str, confirm: bool = False) -> bytes:
    """openssl's pass-phrase argument forms, or the terminal when `spec` is None."""
    if spec is not None:
        kind, sep, arg = spec.partition(":")
        if kind == "pass" and sep:
            return arg.encode()
        if kind == "env" and arg:
            value = os.environb.get(arg.encode())
            if value is None:
                raise CertToolError(f"environment variable {arg} is not set", f"export {arg}=...")
            return value
        if kind == "file" and arg:
            try:
                lines = Path(arg).read_bytes().splitlines()
            except OSError as exc:
                raise CertToolError(f"cannot read the pass-phrase file {arg}: {exc.strerror}", "") from None
            return lines[0] if lines else b""
        raise CertToolError(f"pass-phrase source {spec!r} is not pass:TEXT, env:VAR or file:PATH", "")
    if not sys.stdin.isatty():
        raise CertToolError(f"{prompt.rstrip(': ')}: no terminal to ask on",
                            "give the pass phrase with --passin/--passout env:VAR, file:PATH or pass:TEXT")
    phrase = getpass.getpass(prompt)
    if confirm:
        if len(phrase) < 4:
            raise CertToolError("the pass phrase must be at least 4 characters (as openssl requires)", "")
        if getpass.getpass("Verifying - " + prompt) != phrase:
            raise CertToolError("the pass phrases do not match", "type the same pass phrase twice")
    return phrase.encode()


def load_key(path: Path, passin: str | None) -> keys.PrivateKey:
    phrase = None
    if is_encrypted_key(path):
        phrase = read_passphrase(passin, prompt=f"Enter pass phrase for {path}:")
    loaded = load_any(path, phrase)
    if loaded.kind != "key":
        raise CertToolError(f"{path} holds a {loaded.kind}, not a private key", "name the key file")
    return loaded.objects[0]


def load_file(path: Path, passin: str | None) -> tuple[Loaded, bytes | None]:
    """Whatever `path` holds (certificates, key, CSR, CRL), asking for the pass phrase of an
    encrypted key; returns it with the pass phrase (None when there was none)."""
    phrase = None
    if path.exists() and is_encrypted_key(path):
        phrase = read_passphrase(passin, prompt=f"Enter pass phrase for {path}:")
    return load_any(path, phrase), phrase


def write_out(path: Path, data: bytes, *, force: bool, secret: bool = False) -> None:
    if path.exists() and not force:
        raise CertToolError(f"{path} exists: not overwritten", "choose another -o, or add --force")
    certgen.write_file(path, data, mode=0o600 if secret else 0o644)


def key_pem(key: keys.PrivateKey, phrase: bytes | None) -> bytes:
    enc = serialization.BestAvailableEncryption(phrase) if phrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


# --------------------------------------------------------------------------- subjects


def subject_and_sans(args: argparse.Namespace) -> tuple[x509.Name, list[x509.GeneralName]]:
    """From --subject/--cn/--san, or asked on the terminal (the FAQ's `openssl req` dialog)."""
    sans = [parse_san(s) for s in (args.san or [])]
    if args.subject:
        name = parse_subject(args.subject)
    elif args.cn:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, args.cn)])
    else:
        if not sys.stdin.isatty():
            raise CertToolError("no subject given and no terminal to ask for one",
                                "give --cn www.example.test (and --san DNS:...) or --subject /O=.../CN=...")
        cn = input("Common Name (the server's name, e.g. www.example.test): ").strip()
        if not cn:
            raise CertToolError("an empty Common Name", "type the server's name")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        more = input("Other names (comma-separated DNS:name or IP:addr; Enter for none): ").strip()
        sans += [parse_san(s.strip()) for s in more.split(",") if s.strip()]
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not sans and cns:
        # Browsers read only the SAN since 2017 (RFC 6125 6.4.4): copy the CN there.
        sans = [parse_san(f"IP:{cns[0].value}") if _is_ip(str(cns[0].value)) else x509.DNSName(str(cns[0].value))]
    return name, sans


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
