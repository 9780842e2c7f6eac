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
import sys

# The subcommands: certtool_make.py (genkey, csr, selfsign, passphrase), certtool_files.py
# (convert, rehash), certtool_inspect.py (match, ciphers, show); shared helpers in
# certtool_io.py, X.509 helpers in certtool_x509.py.
from .certtool_files import cmd_convert, cmd_rehash
from .certtool_inspect import cmd_ciphers, cmd_match, cmd_show
from .certtool_make import cmd_csr, cmd_genkey, cmd_passphrase, cmd_selfsign
from .certtool_x509 import CertToolError

KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "ec256", "ec384")


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
