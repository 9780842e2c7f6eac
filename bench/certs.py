"""One throwaway certificate set per bench run, shared by every front.

root CA -> intermediate -> two leaves for 127.0.0.1/localhost: ECDSA P-256 and
RSA-2048. Every front sends leaf + intermediate (the usual production chain),
so handshake sizes are the same for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tlsfront import certgen

KINDS = {"ecdsa": "ec256", "rsa": "rsa2048"}  # scenario word -> certgen key kind


@dataclass(frozen=True)
class CertFiles:
    cert: Path  # leaf only
    key: Path
    chain: Path  # intermediate only
    fullchain: Path  # leaf + intermediate (nginx ssl_certificate)
    combined: Path  # leaf + intermediate + key (HAProxy `crt`)


def make_cert_set(directory: Path) -> dict[str, CertFiles]:
    """{"ecdsa": CertFiles, "rsa": CertFiles} written under `directory` (keys mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    root = certgen.issue("tlsfront bench root CA", is_ca=True, days=7)
    inter = certgen.issue("tlsfront bench intermediate CA", is_ca=True, issuer=root, days=7)
    certgen.write_file(directory / "root.crt", root.cert_pem())
    out = {}
    for word, kind in KINDS.items():
        leaf = certgen.issue(
            "localhost", issuer=inter, key_kind=kind, days=7,
            dns_names=("localhost",), ip_addresses=("127.0.0.1",),
        )
        files = CertFiles(
            cert=directory / f"{word}.crt",
            key=directory / f"{word}.key",
            chain=directory / "intermediate.crt",
            fullchain=directory / f"{word}.fullchain.crt",
            combined=directory / f"{word}.haproxy.pem",
        )
        leaf.write(files.cert, files.key)
        certgen.write_file(files.chain, inter.cert_pem())
        certgen.write_file(files.fullchain, leaf.cert_pem() + inter.cert_pem())
        certgen.write_file(files.combined, leaf.cert_pem() + inter.cert_pem() + leaf.key_pem(), mode=0o600)
        out[word] = files
    return out
