"""`tlsfront cert convert | rehash`: certificate files and CA directories.

    convert     openssl x509 -in cert.pem -out cert.der -outform DER (and back; keys, CSRs, CRLs)
    rehash      openssl rehash DIR (the HASH.0 links SSLCACertificatePath needs)

`rehash` makes HASH.N links to certificates and HASH.rN links to CRLs, skipping duplicates
and files that do not hold exactly one certificate or CRL, with openssl rehash's warnings.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from .certtool_io import load_file, write_out
from .certtool_x509 import CertToolError, load_any, name_hash


def cmd_convert(args: argparse.Namespace) -> int:
    src = Path(args.input)
    loaded, phrase = load_file(src, args.passin)
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
