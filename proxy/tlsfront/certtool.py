"""`tlsfront cert`: the mod_ssl FAQ's openssl recipes as one tool (work in progress)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cert", help="certificates and keys: genkey, csr, selfsign, passphrase, match, ...")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    print("tlsfront cert: not implemented yet", file=sys.stderr)
    return 1
