"""OpenSSL error text -> event category, across OpenSSL 0.9.8, 1.0, 1.1 and 3.x spellings.

OpenSSL changed how it prints errors several times; the reason *code* and the TLS *alert* number stayed put, so the
tables below are keyed on them and on the reason text only as a fallback:

=========  ===================================================================================
0.9.8/1.0  ``error:14094412:SSL routines:SSL3_READ_BYTES:sslv3 alert bad certificate``
1.1        ``error:14094412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate``
3.x        ``error:0A000412:SSL routines::ssl/tls alert bad certificate`` (3.0 still says ``sslv3 alert``)
=========  ===================================================================================

Packed codes (``ERR_PACK``): before 3.0 ``lib << 24 | func << 12 | reason``; from 3.0 there is no function field and
``lib << 23 | reason`` with bit 31 set for system errors (errno in the low bits) and bit 19 (``ERR_RFLAG_COMMON``) for
the common ``ERR_R_*`` reasons. The printed function field is empty in 3.x, which is how the two are told apart.
TLS alerts received from the peer are reason ``1000 + alert`` (``SSL_AD_REASON_OFFSET``) and OpenSSL adds the data
``SSL alert number N``.

Example::

    >>> classify_openssl("SSL Library Error: error:0A000418:SSL routines::tlsv1 alert unknown ca (SSL alert number 48)")
    ('client_rejected_cert', 'tlsv1 alert unknown ca')
"""

from __future__ import annotations

import re

# OpenSSL library numbers (include/openssl/err.h; unchanged since 0.9.x)
LIB_SYS = 2
LIB_PEM = 9
LIB_X509 = 11
LIB_EVP = 6
LIB_SSL = 20
LIB_BIO = 32
LIB_RAND = 36
LIB_UI = 40
LIB_PROV = 57

_REJECTED = "client_rejected_cert"
_PROTO = "protocol_mismatch"

#: (library, reason) -> category. Reason numbers from include/openssl/sslerr.h, x509err.h, pemerr.h, evperr.h,
#: proverr.h, bioerr.h, randerr.h (the same numbers in every generation; only the packing changed).
REASON_TABLE: dict[tuple[int, int], str] = {
    (LIB_SSL, 156): "plain_http_on_tls_port",  # SSL_R_HTTP_REQUEST "http request"
    (LIB_SSL, 155): "plain_http_on_tls_port",  # SSL_R_HTTPS_PROXY_REQUEST "https proxy request"
    (LIB_SSL, 193): "no_shared_cipher",  # SSL_R_NO_SHARED_CIPHER
    (LIB_SSL, 376): "no_shared_cipher",  # SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS
    (LIB_SSL, 118): "no_shared_cipher",  # SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM (3.x) / 1.1.1 value differs
    (LIB_SSL, 258): _PROTO,  # SSL_R_UNSUPPORTED_PROTOCOL
    (LIB_SSL, 259): _PROTO,  # SSL_R_UNSUPPORTED_SSL_VERSION
    (LIB_SSL, 267): _PROTO,  # SSL_R_WRONG_VERSION_NUMBER
    (LIB_SSL, 252): _PROTO,  # SSL_R_UNKNOWN_PROTOCOL
    (LIB_SSL, 191): _PROTO,  # SSL_R_NO_PROTOCOLS_AVAILABLE
    (LIB_SSL, 373): _PROTO,  # SSL_R_INAPPROPRIATE_FALLBACK
    (LIB_SSL, 396): _PROTO,  # SSL_R_VERSION_TOO_LOW
    (LIB_SSL, 397): _PROTO,  # SSL_R_VERSION_TOO_HIGH
    (LIB_SSL, 1070): _PROTO,  # SSL_R_TLSV1_ALERT_PROTOCOL_VERSION
    (LIB_SSL, 1086): _PROTO,  # SSL_R_TLSV1_ALERT_INAPPROPRIATE_FALLBACK
    (LIB_SSL, 199): "client_cert_missing",  # SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE
    (LIB_SSL, 1116): "client_cert_missing",  # SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED
    (LIB_SSL, 134): "client_cert_invalid",  # SSL_R_CERTIFICATE_VERIFY_FAILED
    (LIB_SSL, 1042): _REJECTED,  # SSL_R_SSLV3_ALERT_BAD_CERTIFICATE
    (LIB_SSL, 1043): _REJECTED,  # SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE
    (LIB_SSL, 1044): _REJECTED,  # SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED
    (LIB_SSL, 1045): _REJECTED,  # SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED
    (LIB_SSL, 1046): _REJECTED,  # SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN
    (LIB_SSL, 1048): _REJECTED,  # SSL_R_TLSV1_ALERT_UNKNOWN_CA
    (LIB_SSL, 294): "handshake_eof_or_reset",  # SSL_R_UNEXPECTED_EOF_WHILE_READING (OpenSSL 3+)
    (LIB_SSL, 2): "cert_file_unreadable",  # ERR_R_SYS_LIB under SSL_CTX_use_certificate_*_file
    (LIB_X509, 116): "key_cert_mismatch",  # X509_R_KEY_VALUES_MISMATCH
    (LIB_EVP, 100): "passphrase_failure",  # EVP_R_BAD_DECRYPT
    (LIB_PROV, 100): "passphrase_failure",  # PROV_R_BAD_DECRYPT (OpenSSL 3+)
    (LIB_PEM, 101): "passphrase_failure",  # PEM_R_BAD_DECRYPT
    (LIB_PEM, 104): "passphrase_failure",  # PEM_R_BAD_PASSWORD_READ
    (LIB_PEM, 109): "passphrase_failure",  # PEM_R_PROBLEMS_GETTING_PASSWORD
    (LIB_PEM, 108): "cert_file_unreadable",  # PEM_R_NO_START_LINE: empty or not a PEM file
    (LIB_UI, 107): "passphrase_failure",  # UI_R_PROCESSING_ERROR (the pass phrase prompt failed)
    (LIB_BIO, 128): "cert_file_unreadable",  # BIO_R_NO_SUCH_FILE
    (LIB_BIO, 2): "cert_file_unreadable",  # ERR_R_SYS_LIB under BIO routines (fopen failed)
    (LIB_SYS, 13): "cert_file_unreadable",  # EACCES
    (LIB_SYS, 2): "cert_file_unreadable",  # ENOENT
    (LIB_RAND, 100): "prng_not_seeded",  # RAND_R_PRNG_NOT_SEEDED
}

#: TLS alert descriptions (RFC 8446 §6, RFC 5246 §7.2) -> category, from the server's point of view: an alert the
#: server *received* from the client.
ALERT_TABLE: dict[int, str] = {
    42: _REJECTED,  # bad_certificate
    43: _REJECTED,  # unsupported_certificate
    44: _REJECTED,  # certificate_revoked
    45: _REJECTED,  # certificate_expired
    46: _REJECTED,  # certificate_unknown
    48: _REJECTED,  # unknown_ca
    70: _PROTO,  # protocol_version
    86: _PROTO,  # inappropriate_fallback
    116: "client_cert_missing",  # certificate_required (TLS 1.3)
}

ALERT_NAMES: dict[str, int] = {
    "bad certificate": 42,
    "unsupported certificate": 43,
    "certificate revoked": 44,
    "certificate expired": 45,
    "certificate unknown": 46,
    "unknown ca": 48,
    "protocol version": 70,
    "inappropriate fallback": 86,
    "certificate required": 116,
    "handshake failure": 40,
}

#: Reason text (lower case, alert prefix removed) -> category: for lines that carry no packed code, e.g. nginx or
#: HAProxy's ``ssl_fc_err_str``, or hand-copied reports that dropped the code.
TEXT_TABLE: dict[str, str] = {
    "http request": "plain_http_on_tls_port",
    "https proxy request": "plain_http_on_tls_port",
    "no shared cipher": "no_shared_cipher",
    "no shared ciphers": "no_shared_cipher",
    "no shared signature algorithms": "no_shared_cipher",
    "no suitable signature algorithm": "no_shared_cipher",
    "no cipher match": "no_shared_cipher",
    "unsupported protocol": _PROTO,
    "unsupported ssl version": _PROTO,
    "wrong version number": _PROTO,
    "unknown protocol": _PROTO,
    "no protocols available": _PROTO,
    "inappropriate fallback": _PROTO,
    "version too low": _PROTO,
    "version too high": _PROTO,
    "peer did not return a certificate": "client_cert_missing",
    "certificate verify failed": "client_cert_invalid",
    "unexpected eof while reading": "handshake_eof_or_reset",
    "key values mismatch": "key_cert_mismatch",
    "bad decrypt": "passphrase_failure",
    "bad password read": "passphrase_failure",
    "problems getting password": "passphrase_failure",
    "no start line": "cert_file_unreadable",
    "no such file": "cert_file_unreadable",
    "no such file or directory": "cert_file_unreadable",
    "permission denied": "cert_file_unreadable",
    "prng not seeded": "prng_not_seeded",
}

_ALERT_PREFIX = re.compile(r"^(?:sslv3|tlsv1|tlsv13|ssl/tls|tls) alert ")  # "tls alert": OpenSSL 4
#: ``error:<8 hex>:<library>:<function, empty in 3.x>:<reason>`` (the reason ends at ':' (nginx adds ``:SSL alert
#: number 42``), at `` (`` (Apache adds ``(SSL alert number 42)``), at ')' or at the end).
_ERR = re.compile(r"error:([0-9A-Fa-f]{8}):([^:\n]*):([^:\n]*):([^:()\n]*)")
_ALERT_NUM = re.compile(r"SSL alert number (\d+)")
# free text that names a reason without the error:... wrapper (HAProxy ssl_fc_err_str, 1.1 "func:reason" pairs)
_FREE = re.compile(
    r"(?i)((?:sslv3|tlsv1|tlsv13|ssl/tls|tls) alert (?:" + "|".join(ALERT_NAMES) + r"|[a-z]+)|http request|https proxy request|no shared ciphers?"
    r"|no shared signature algorithms|unsupported protocol|wrong version number|version too low|version too high"
    r"|no protocols available|inappropriate fallback|peer did not return a certificate|certificate verify failed"
    r"|unexpected eof while reading|key values mismatch|bad decrypt|bad password read|problems getting password"
    r"|prng not seeded)(?=$|[:(),;\]\"'\s])"
)


def unpack(code_hex: str, function: str) -> tuple[int, int]:
    """Split a printed packed error code into (library, reason), choosing the packing by the function field.

    >>> unpack("14094412", "SSL3_READ_BYTES"), unpack("0A000412", ""), unpack("8000000D", "")
    ((20, 1042), (20, 1042), (2, 13))
    """
    code = int(code_hex, 16)
    if function:  # OpenSSL < 3: lib(8) func(12) reason(12)
        return (code >> 24) & 0xFF, code & 0xFFF
    if code & 0x80000000:  # OpenSSL 3+: ERR_SYSTEM_FLAG, errno in the low bits
        return LIB_SYS, code & 0x7FFFFFFF
    reason = code & 0x7FFFFF
    if reason & 0x80000:  # ERR_RFLAG_COMMON: the generic ERR_R_* reasons
        reason &= 0xFFF
    return (code >> 23) & 0xFF, reason


def _text_category(reason: str) -> str | None:
    reason = reason.strip().lower()
    hit = TEXT_TABLE.get(reason)
    if hit:
        return hit
    bare = _ALERT_PREFIX.sub("", reason)
    if bare != reason:
        number = ALERT_NAMES.get(bare)
        if number is not None:
            return ALERT_TABLE.get(number, "other_tls_error")
        return "other_tls_error"
    for key, category in TEXT_TABLE.items():
        if reason.endswith(key):
            return category
    return None


def classify_openssl(text: str) -> tuple[str | None, str | None]:
    """Return (category, reason text) for the first OpenSSL error in ``text`` that names a known reason.

    Falls back to ("other_tls_error", reason) when an OpenSSL error is present but unknown, and to (None, None) when
    the text carries no OpenSSL error at all. Never raises.
    """
    first_reason: str | None = None
    for m in _ERR.finditer(text):
        code_hex, _lib, function, reason = m.groups()
        reason = reason.strip()
        first_reason = first_reason or reason
        category = REASON_TABLE.get(unpack(code_hex, function))
        if category is None:
            category = _text_category(reason)
        if category is not None:
            return category, reason
    m = _FREE.search(text)
    if m:
        reason = m.group(1)
        category = _text_category(reason)
        if category is not None:
            return category, reason
    m = _ALERT_NUM.search(text)
    if m:
        return ALERT_TABLE.get(int(m.group(1)), "other_tls_error"), first_reason or m.group(0)
    if first_reason is not None:
        return "other_tls_error", first_reason
    return None, None
