"""`tlsfront cert`: the mod_ssl FAQ's openssl recipes as one tool.

    genkey      openssl genrsa / ecparam -genkey          (-des3: --encrypt)
    csr         openssl req -new -key server.key
    selfsign    openssl req -new -x509 -key server.key
    passphrase  openssl rsa -in k -out k.unsecure (--remove), openssl rsa -des3 (--change)
    match       openssl x509 -noout -modulus | openssl md5 (and rsa, req): do they belong together?
    convert     openssl x509 -in cert.pem -out cert.der -outform DER (and back; keys, CSRs, CRLs)
    rehash      openssl rehash DIR (the HASH.0 links SSLCACertificatePath needs)
    ciphers     openssl ciphers -V SPEC, as this proxy's OpenSSL reads SPEC
    show        openssl x509 -noout -subject -issuer -dates ..., and chain order problems

Pass phrases (`--passin`, `--passout`) take openssl's forms: `pass:TEXT`, `env:VAR`,
`file:PATH`; without them tlsfront asks on the terminal. New keys are written mode 0600.
Exit status: 0 on success, 1 on error (and `match`: 1 when the files do not belong together).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import hashlib
import os
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import certgen, keys
from .certtool_x509 import (CertToolError, cipher_list, is_encrypted_key, load_any, name_hash, openssl_date,
                            openssl_name, parse_san, parse_subject, san_text, sans_of)

KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "ec256", "ec384")


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


# --------------------------------------------------------------------------- commands


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


def cmd_convert(args: argparse.Namespace) -> int:
    src = Path(args.input)
    phrase = None
    if src.exists() and is_encrypted_key(src):
        phrase = read_passphrase(args.passin, prompt=f"Enter pass phrase for {src}:")
    loaded = load_any(src, phrase)
    to = args.to or ("der" if loaded.pem else "pem")
    encoding = serialization.Encoding.DER if to == "der" else serialization.Encoding.PEM
    if loaded.kind == "certificate":
        if encoding == serialization.Encoding.DER and len(loaded.objects) != 1:
            raise CertToolError(f"{src} holds {len(loaded.objects)} certificates; DER holds one",
                                "split the bundle first, or keep it PEM")
        data = b"".join(c.public_bytes(encoding) for c in loaded.objects)
    elif loaded.kind == "key":
        enc = serialization.BestAvailableEncryption(phrase) if phrase else serialization.NoEncryption()
        # As `openssl pkey -outform DER`: the type-specific form (PKCS#1, SEC1) in DER, PKCS#8 in
        # PEM; an encrypted key stays PKCS#8 (the traditional DER form cannot be encrypted).
        fmt = (serialization.PrivateFormat.TraditionalOpenSSL
               if encoding == serialization.Encoding.DER and not phrase else serialization.PrivateFormat.PKCS8)
        data = loaded.objects[0].private_bytes(encoding, fmt, enc)
    else:
        data = loaded.objects[0].public_bytes(encoding)
    write_out(Path(args.out), data, force=args.force, secret=loaded.kind == "key")
    print(f"{args.out}: {loaded.kind} in {to.upper()} (from {'PEM' if loaded.pem else 'DER'} {src})")
    return 0


_HASH_LINK = re.compile(r"^[0-9a-f]{8}\.r?[0-9]+$")
_REHASH_SUFFIXES = (".pem", ".crt", ".cer", ".crl")


def cmd_rehash(args: argparse.Namespace) -> int:
    """`openssl rehash DIR`: HASH.N -> cert, HASH.rN -> CRL, duplicates skipped."""
    d = Path(args.dir)
    if not d.is_dir():
        raise CertToolError(f"{d} is not a directory", "name the directory of ca_certificate_path")
    for entry in d.iterdir():
        if entry.is_symlink() and _HASH_LINK.match(entry.name):
            entry.unlink()
    seen: dict[str, set[bytes]] = {}
    made = 0
    for entry in sorted(d.iterdir(), key=lambda p: p.name):
        if entry.is_symlink() or not entry.is_file() or entry.suffix.lower() not in _REHASH_SUFFIXES:
            continue
        try:
            loaded = load_any(entry)
        except CertToolError:
            loaded = None
        if loaded is None or loaded.kind not in ("certificate", "crl") or len(loaded.objects) != 1:
            # openssl rehash's words, so both tools read alike.
            print(f"warning: skipping {entry.name}, it does not contain exactly one certificate or CRL",
                  file=sys.stderr)
            continue
        obj = loaded.objects[0]
        is_crl = loaded.kind == "crl"
        name = obj.issuer if is_crl else obj.subject
        digest = hashlib.sha256(obj.public_bytes(serialization.Encoding.DER)).digest()
        h = f"{name_hash(name):08x}"
        bucket = seen.setdefault(("r" if is_crl else "") + h, set())
        if digest in bucket:
            print(f"warning: skipping duplicate {'CRL' if is_crl else 'certificate'} in {entry.name}",
                  file=sys.stderr)
            continue
        link = d / f"{h}.{'r' if is_crl else ''}{len(bucket)}"
        bucket.add(digest)
        link.symlink_to(entry.name)
        made += 1
        if args.verbose:
            print(f"link {link.name} -> {entry.name}")
    print(f"{d}: {made} link(s) made")
    return 0


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
    phrase = None
    if path.exists() and is_encrypted_key(path):
        phrase = read_passphrase(args.passin, prompt=f"Enter pass phrase for {path}:")
    loaded = load_any(path, phrase)
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


# --------------------------------------------------------------------------- parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cert", help="certificates and keys: the mod_ssl FAQ's openssl recipes",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cs = p.add_subparsers(dest="cert_command", metavar="SUBCOMMAND", required=True)

    def out(q: argparse.ArgumentParser, required: bool = True) -> None:
        q.add_argument("-o", "--out", required=required, metavar="FILE", help="output file")
        q.add_argument("--force", action="store_true", help="overwrite an existing output file")

    def subject(q: argparse.ArgumentParser) -> None:
        q.add_argument("--cn", help="Common Name (the server's name); also copied to the SANs when none given")
        q.add_argument("--subject", help="full subject, openssl -subj style: /C=DE/O=Example/CN=www.example.test")
        q.add_argument("--san", action="append", metavar="DNS:name|IP:addr", help="subject alternative name (repeat)")

    q = cs.add_parser("genkey", help="a new private key (RSA 2048/3072/4096, EC P-256/P-384)")
    q.add_argument("--type", choices=KEY_TYPES, default="ec256", help="key type (default ec256)")
    q.add_argument("--encrypt", action="store_true", help="encrypt it with a pass phrase (AES-256)")
    q.add_argument("--passout", metavar="SPEC", help="pass:TEXT, env:VAR or file:PATH (default: ask)")
    out(q)
    q.set_defaults(cert_func=cmd_genkey)

    q = cs.add_parser("csr", help="a certificate signing request for a key")
    q.add_argument("--key", required=True)
    q.add_argument("--passin", metavar="SPEC")
    subject(q)
    out(q)
    q.set_defaults(cert_func=cmd_csr)

    q = cs.add_parser("selfsign", help="a self-signed certificate (from a CSR or a subject)")
    q.add_argument("--key", required=True)
    q.add_argument("--passin", metavar="SPEC")
    q.add_argument("--csr", help="take subject and SANs from this CSR")
    q.add_argument("--days", type=int, default=365)
    subject(q)
    out(q)
    q.set_defaults(cert_func=cmd_selfsign)

    q = cs.add_parser("passphrase", help="remove, change or add a key's pass phrase")
    g = q.add_mutually_exclusive_group(required=True)
    g.add_argument("--remove", action="store_true")
    g.add_argument("--change", action="store_true")
    g.add_argument("--add", action="store_true")
    q.add_argument("key")
    q.add_argument("--passin", metavar="SPEC")
    q.add_argument("--passout", metavar="SPEC")
    out(q, required=False)
    q.set_defaults(cert_func=cmd_passphrase)

    q = cs.add_parser("match", help="do a certificate, a key (and a CSR) belong together? exit 0 yes, 1 no")
    q.add_argument("cert")
    q.add_argument("key")
    q.add_argument("csr", nargs="?")
    q.add_argument("--passin", metavar="SPEC")
    q.set_defaults(cert_func=cmd_match)

    q = cs.add_parser("convert", help="PEM to DER and back (certificate, key, CSR, CRL)")
    q.add_argument("input")
    q.add_argument("--to", choices=("pem", "der"), help="default: the other format")
    q.add_argument("--passin", metavar="SPEC")
    out(q)
    q.set_defaults(cert_func=cmd_convert)

    q = cs.add_parser("rehash", help="HASH.0 links in a CA directory (ca_certificate_path), as openssl rehash")
    q.add_argument("dir")
    q.add_argument("-v", "--verbose", action="store_true")
    q.set_defaults(cert_func=cmd_rehash)

    q = cs.add_parser("ciphers", help="the ciphers a cipher string selects, as the proxy will use it")
    q.add_argument("spec", nargs="?", default="ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!RC4:!3DES")
    q.add_argument("--ciphersuites", help="TLS 1.3 suites (default: OpenSSL's)")
    q.add_argument("--legacy", action="store_true", help="as with insecure_legacy_protocols (TLS 1.0+, level 0)")
    q.add_argument("-v", "--verbose", action="store_true", help="code, name, protocol, bits (openssl ciphers -V)")
    q.set_defaults(cert_func=cmd_ciphers)

    q = cs.add_parser("show", help="what a certificate, bundle, key, CSR or CRL holds; chain order problems")
    q.add_argument("file")
    q.add_argument("--passin", metavar="SPEC")
    q.set_defaults(cert_func=cmd_show)

    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run a `tlsfront cert` subcommand; CertToolError becomes a message and exit 1."""
    try:
        return args.cert_func(args)
    except CertToolError as exc:
        print(f"tlsfront cert {args.cert_command}: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"    fix: {exc.fix}", file=sys.stderr)
        return 1
