"""The event categories of issue 3: exact names, one-line descriptions and remedies.

The names are a public contract: they appear as keys of ``tlslog scan --format json`` and as the ``category``
label of ``tlslog_events_total``. Remedies quote the mod_ssl FAQ (Apache httpd manual, "mod_ssl: Frequently Asked
Questions") where it has an answer, otherwise the server's own documentation.

Example::

    >>> CATALOG["no_shared_cipher"].description
    'client and server have no cipher suite (or signature algorithm) in common'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    description: str
    remedy: str
    source: str


_ROWS: tuple[Category, ...] = (
    Category(
        "plain_http_on_tls_port",
        "a client spoke plain HTTP to a TLS port",
        "Use https:// URLs for this port; check that Listen/VirtualHost ports match and that links and "
        "redirects do not send http:// to the TLS port.",
        "mod_ssl FAQ: 'Why do I get a Bad Request / HTTP spoken on HTTPS port error?'",
    ),
    Category(
        "client_rejected_cert",
        "the client rejected the server certificate (alert bad certificate, unknown CA, certificate unknown, "
        "expired)",
        "Serve the full chain (SSLCertificateChainFile / intermediate certificates), renew expired certificates, "
        "and use a CA the clients trust; if the certificate was replaced, clients that pinned the old one must "
        "forget it.",
        "mod_ssl FAQ: 'sslv3 alert bad certificate', intermediate CA and 'I/O errors with Netscape' entries",
    ),
    Category(
        "no_shared_cipher",
        "client and server have no cipher suite (or signature algorithm) in common",
        "Compare SSLCipherSuite/ssl_ciphers with what the clients offer (`openssl ciphers -v`); an ECDSA-only or "
        "DSA key cannot serve RSA-only clients: add an RSA certificate/key pair.",
        "mod_ssl FAQ: 'Why do I get \"no shared ciphers\" errors?'",
    ),
    Category(
        "protocol_mismatch",
        "client and server have no TLS protocol version in common",
        "Compare SSLProtocol/ssl_protocols with what the clients support; before turning an old protocol off, "
        "count who still uses it (tlslog protocols per vhost).",
        "Apache SSLProtocol / nginx ssl_protocols documentation",
    ),
    Category(
        "client_cert_missing",
        "the server requires a client certificate and the client sent none",
        "Install the client certificate in the client, or relax SSLVerifyClient require / ssl_verify_client on "
        "for this location.",
        "Apache SSLVerifyClient / nginx ssl_verify_client documentation",
    ),
    Category(
        "client_cert_invalid",
        "the client certificate failed verification (unknown CA, expired, bad chain)",
        "Issue client certificates from a CA listed in SSLCACertificateFile/ssl_client_certificate, keep them "
        "valid, and raise SSLVerifyDepth if the chain is longer.",
        "Apache SSLCACertificateFile / SSLVerifyDepth documentation",
    ),
    Category(
        "handshake_eof_or_reset",
        "the client closed or reset the connection during the TLS handshake",
        "Usually a client giving up (stop button, port scanner, health check doing a bare TCP connect); "
        "investigate only if frequent: then look for middleboxes, MTU problems or a client rejecting the "
        "handshake silently.",
        "mod_ssl: 'SSL handshake interrupted by system [Hint: Stop button pressed in browser?!]'",
    ),
    Category(
        "handshake_timeout",
        "the TLS handshake did not finish in time",
        "Check for slow or stalled clients and network problems; the handshake timeout is mod_reqtimeout "
        "(RequestReadTimeout handshake=), client_header_timeout (nginx) or timeout client (HAProxy).",
        "Apache mod_reqtimeout / nginx / HAProxy documentation",
    ),
    Category(
        "prng_not_seeded",
        "OpenSSL's random number generator had too little entropy",
        "Configure SSLRandomSeed (startup and connect) with builtin or a non-blocking device such as "
        "/dev/urandom.",
        "mod_ssl FAQ: 'PRNG not seeded' / SSLRandomSeed",
    ),
    Category(
        "mutex_permission_denied",
        "the server could not create or open its SSL mutex lock file (permission denied)",
        "Give the server's run user (User directive) the x bit on every parent directory of the lock file, or "
        "move the mutex (Mutex file:/path ssl-cache / SSLMutex) to a directory it can write.",
        "mod_ssl FAQ: 'Child could not open SSLMutex lockfile ... Permission denied'",
    ),
    Category(
        "key_cert_mismatch",
        "the private key does not match the certificate",
        "Compare `openssl x509 -noout -modulus -in server.crt | openssl md5` with "
        "`openssl rsa -noout -modulus -in server.key | openssl md5` (or `tlsfront cert match`) and install the "
        "matching pair.",
        "mod_ssl FAQ: 'How can I check that my private key matches my Certificate?'",
    ),
    Category(
        "passphrase_failure",
        "the pass phrase of an encrypted private key was wrong or could not be read",
        "Fix the SSLPassPhraseDialog exec: program (or ssl_password_file), or remove the pass phrase: "
        "`openssl rsa -in server.key.org -out server.key` and chmod 400 the result.",
        "mod_ssl FAQ: 'How can I get rid of the pass-phrase dialog at Apache startup time?'",
    ),
    Category(
        "cert_file_unreadable",
        "a certificate or key file is missing, empty or unreadable",
        "Check the path in SSLCertificateFile/SSLCertificateKeyFile (ssl_certificate/ssl_certificate_key, crt) "
        "and that the user starting the server can read it and search every parent directory.",
        "Apache SSLCertificateFile documentation",
    ),
    Category(
        "session_cache_error",
        "the SSL session cache could not be created or used",
        "Check SSLSessionCache (prefer shmcb, not dbm), its size and the directory permissions; the FAQ notes the "
        "DBM cache as the usual culprit of random I/O errors.",
        "mod_ssl FAQ: 'Why do I get I/O errors ... random? / SSLSessionCache'",
    ),
    Category(
        "backend_unavailable",
        "the proxy could not connect to the backend (refused, reset, no server available)",
        "Start or fix the backend, check the backend address and port, and its health checks; the proxy answers "
        "502/503 meanwhile.",
        "Apache mod_proxy / nginx upstream / HAProxy documentation",
    ),
    Category(
        "backend_timeout",
        "the backend did not answer in time",
        "Find why the backend is slow, or raise ProxyTimeout / proxy_read_timeout / timeout server if the "
        "requests are legitimately long; the proxy answers 504 meanwhile.",
        "Apache mod_proxy / nginx upstream / HAProxy documentation",
    ),
    Category(
        "other_tls_error",
        "a TLS error that fits no other category",
        "Read the example line: the OpenSSL reason names the cause; the mod_ssl FAQ and `openssl s_client "
        "-connect host:port -state` help to reproduce it.",
        "mod_ssl FAQ: 'How can I test HTTPS with s_client?'",
    ),
)

#: The categories, in the order of issue 3 (also the order of every output).
CATEGORIES: tuple[str, ...] = tuple(row.name for row in _ROWS)
CATALOG: dict[str, Category] = {row.name: row for row in _ROWS}


def render_catalog() -> str:
    """The text printed by ``tlslog catalog``."""
    out = []
    for row in _ROWS:
        out.append(f"{row.name}\n  what:   {row.description}\n  remedy: {row.remedy}\n  source: {row.source}\n")
    return "\n".join(out)
