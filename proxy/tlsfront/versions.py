"""`tlsfront version`: what the mod_ssl FAQ asks a bug reporter to give, without the reactor.

Importing `twisted.internet.reactor` would install a reactor before the master forks
(facts file): only package metadata and `OpenSSL.SSL` are touched here.
"""

from __future__ import annotations

import platform
import ssl
import sys
from importlib import metadata

from . import __version__


def _dist(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> list[tuple[str, str]]:
    """(component, version) rows, tlsfront first."""
    from OpenSSL import SSL

    rows = [
        ("tlsfront", __version__),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("Twisted", _dist("twisted")),
        ("pyOpenSSL", _dist("pyopenssl")),
        ("cryptography", _dist("cryptography")),
        ("OpenSSL (TLS, via cryptography)", SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()),
        ("OpenSSL (Python ssl module)", ssl.OPENSSL_VERSION),
        ("Platform", platform.platform()),
    ]
    return rows


def render() -> str:
    rows = versions()
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in rows)
