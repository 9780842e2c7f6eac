"""Why did a TLS handshake fail?  OpenSSL's error queue -> one reason of a fixed set.

The reason set is fixed (issue 8) and shared by the error log (``reason=``),
the metric ``tlsfront_tls_handshake_failures_total{reason}`` and the analyzer:

=====================  =========================================================
reason                 meaning (and what the operator does about it)
=====================  =========================================================
no_shared_cipher       client and vhost have no cipher (or group/sigalg) in common
unsupported_protocol   the client's TLS version is outside the vhost's protocols
client_rejected_cert   the client refused OUR certificate (alert says why)
client_cert_missing    client certificate required, none sent
client_cert_invalid    client certificate sent, verification failed
plain_http             plain HTTP sent to a TLS port (found by sniff.py, or by OpenSSL)
not_tls                bytes that are neither TLS nor HTTP
timeout                our handshake deadline passed (Timeouts.client_handshake_seconds)
eof                    the client closed or reset the connection mid-handshake
other                  anything else (the OpenSSL text is still logged)
=====================  =========================================================

Grammar of the input: pyOpenSSL raises ``SSL.Error([(lib, func, reason), ...])``
with OpenSSL's strings; OpenSSL 3 leaves ``func`` empty
(``('SSL routines', '', 'no shared cipher')``), 1.1 fills it
(``('SSL routines', 'tls_post_process_client_hello', 'no shared cipher')``) and
the alert texts moved from ``sslv3 alert bad certificate`` (1.x) to
``ssl/tls alert bad certificate`` (3.x).  So classification keys on the
*reason* text only (as mitmproxy's tls layer does), through `REASON_TABLE` and,
for received alerts, `ALERT_TABLE`.

Example::

    >>> classify(SSL.Error([("SSL routines", "", "tlsv1 alert unknown ca")]))
    HandshakeFailure(reason='client_rejected_cert', alert='unknown_ca', openssl_text='SSL routines::tlsv1 alert unknown ca', message_id='TLSF0201')

Use from the data path: ``failure = tlserrors.classify(reason)`` in
``connectionLost`` before the handshake completed (a Twisted ``Failure``, an
exception or the error list are all accepted), `timeout()` when our deadline
fires, `plain_http()` / `not_tls()` from the sniffer; then
``errorlog.log(failure.log_key, client=peer, vhost=label, **failure.log_fields())``
and ``metrics.handshake_failed(label, failure)``.  Nothing here raises on odd
input: unknown shapes become ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from OpenSSL import SSL
from twisted.internet import error as _terror

from tlsfront.logformat import MESSAGES

REASONS: tuple[str, ...] = (
    "no_shared_cipher", "unsupported_protocol", "client_rejected_cert", "client_cert_missing",
    "client_cert_invalid", "plain_http", "not_tls", "timeout", "eof", "other",
)

# Alerts a client sends when it refuses the server's certificate (RFC 8446 6.2,
# RFC 5246 7.2.2). Names are the RFC's, with underscores.
CERT_ALERTS: tuple[str, ...] = (
    "bad_certificate", "unsupported_certificate", "certificate_revoked",
    "certificate_expired", "certificate_unknown", "unknown_ca",
)

# Every alert OpenSSL can report as received ("... alert <name>"), mapped to a
# reason. Alerts not listed here still carry their name but count as "other".
ALERT_TABLE: dict[str, str] = {
    **{name: "client_rejected_cert" for name in CERT_ALERTS},
    "protocol_version": "unsupported_protocol",
    "insufficient_security": "no_shared_cipher",
}

# Every alert name the metric label may take (bounded: RFC 8446's registry).
KNOWN_ALERTS: frozenset[str] = frozenset((
    "close_notify", "unexpected_message", "bad_record_mac", "decryption_failed", "record_overflow",
    "decompression_failure", "handshake_failure", "no_certificate", "bad_certificate",
    "unsupported_certificate", "certificate_revoked", "certificate_expired", "certificate_unknown",
    "illegal_parameter", "unknown_ca", "access_denied", "decode_error", "decrypt_error",
    "export_restriction", "protocol_version", "insufficient_security", "internal_error",
    "inappropriate_fallback", "user_canceled", "no_renegotiation", "missing_extension",
    "unsupported_extension", "certificate_unobtainable", "unrecognized_name",
    "bad_certificate_status_response", "bad_certificate_hash_value", "unknown_psk_identity",
    "certificate_required", "no_application_protocol",
))

# OpenSSL reason strings (lower case) -> reason. 1.0/1.1/3.x spellings side by side.
REASON_TABLE: dict[str, str] = {
    # the server found nothing in common with the ClientHello
    "no shared cipher": "no_shared_cipher",
    "no ciphers passed": "no_shared_cipher",
    "no shared signature algorithms": "no_shared_cipher",  # OpenSSL 1.1.1+
    "no suitable signature algorithm": "no_shared_cipher",
    "no suitable key share": "no_shared_cipher",  # TLS 1.3: no common group
    "no shared groups": "no_shared_cipher",
    # version refused by our SSLProtocol
    "unsupported protocol": "unsupported_protocol",
    "version too low": "unsupported_protocol",
    "version too high": "unsupported_protocol",
    "no protocols available": "unsupported_protocol",
    "unsupported ssl version": "unsupported_protocol",
    "inappropriate fallback": "unsupported_protocol",
    # client certificates (SSLVerifyClient require)
    "peer did not return a certificate": "client_cert_missing",
    "no certificate returned": "client_cert_missing",  # OpenSSL 1.0
    "tlsv13 alert certificate required": "client_cert_missing",
    "certificate verify failed": "client_cert_invalid",
    "no certificate verify": "client_cert_invalid",
    "bad signature": "client_cert_invalid",
    # not TLS at all: OpenSSL's own HTTP detector (ssl/record/rec_layer_s3.c) and friends
    "http request": "plain_http",
    "https proxy request": "plain_http",
    "http proxy request": "plain_http",
    # Server side, "wrong version number" means the record header's major
    # version was not 3: the peer is not speaking TLS (refused TLS versions
    # are "unsupported protocol" instead).
    "wrong version number": "not_tls",
    "unknown protocol": "not_tls",  # OpenSSL 1.0
    "packet length too long": "not_tls",
    "record length mismatch": "not_tls",
    "sslv2 no longer supported": "unsupported_protocol",  # hypothetical SSLv2 hello passed through
    # the client went away
    "unexpected eof while reading": "eof",  # OpenSSL 3
    "shutdown while in init": "eof",
}

# "sslv3 alert bad certificate" (1.x), "ssl/tls alert bad certificate" (3.x),
# "tls alert bad certificate" (OpenSSL 4),
# "tlsv1 alert unknown ca", "tlsv13 alert certificate required",
# "tlsv1 unrecognized name" (no "alert" word for a few TLS 1.0+ alerts).
_ALERT_RE = re.compile(r"^(?:sslv3|tlsv1|tlsv13|ssl/tls|tls)(?: alert)? (?P<name>[a-z0-9 ]+)$")
_ALERT_ALIASES = {"unknown ca": "unknown_ca", "certificate required": "certificate_required"}

_LOG_KEY = {
    "timeout": "handshake_timeout",
    "eof": "handshake_eof",
    "plain_http": "plain_http",
    "not_tls": "not_tls",
}


@dataclass(frozen=True)
class HandshakeFailure:
    """Why one handshake failed.

    reason: one of `REASONS`; alert: the RFC name of the alert the client sent
    (None if none); openssl_text: OpenSSL's error queue as ``lib:func:reason``
    joined by `` / `` (or a short description for eof/timeout); message_id: the
    error-log ID (TLSF02xx) the line for this failure carries.
    """

    reason: str
    alert: str | None
    openssl_text: str
    message_id: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"handshake failure reason {self.reason!r} is not one of {', '.join(REASONS)}")

    @property
    def log_key(self) -> str:
        """The `logformat.MESSAGES` key of the error-log line for this failure."""
        return _LOG_KEY.get(self.reason, "handshake_failed")

    def log_fields(self) -> dict[str, str]:
        """Fields for `logformat.ErrorLogFormatter.format` (add vhost, and
        request_line / first_bytes / seconds for the sniffer and timeout lines)."""
        return {
            "reason": self.reason,
            "alert": self.alert or "-",
            "openssl": self.openssl_text or "-",
            "detail": self.openssl_text or "-",
        }


def _make(reason: str, alert: str | None, text: str) -> HandshakeFailure:
    return HandshakeFailure(reason, alert, text, MESSAGES[_LOG_KEY.get(reason, "handshake_failed")].id)


def _alert_name(reason_text: str) -> str | None:
    m = _ALERT_RE.match(reason_text)
    if m is None:
        return None
    words = m.group("name")
    name = _ALERT_ALIASES.get(words, words.replace(" ", "_"))
    return name if name in KNOWN_ALERTS else None


def _as_triples(errors: Any) -> list[tuple[str, str, str]]:
    """Normalise pyOpenSSL's error list; tolerate odd shapes (never raise)."""
    out: list[tuple[str, str, str]] = []
    if isinstance(errors, (str, bytes)):
        errors = [("", "", errors)]
    if not isinstance(errors, Iterable):
        return out
    for item in errors:
        if isinstance(item, (tuple, list)):
            parts = [x.decode("latin-1") if isinstance(x, bytes) else str(x) for x in item][:3]
            while len(parts) < 3:
                parts.insert(0, "")
            out.append((parts[0], parts[1], parts[2]))
        elif isinstance(item, (str, bytes)):
            out.append(("", "", item.decode("latin-1") if isinstance(item, bytes) else item))
    return out


def classify_errors(errors: Sequence[tuple[str, str, str]] | Any,
                    verify_error: str | None = None) -> HandshakeFailure:
    """Classify pyOpenSSL's error list (``SSL.Error.args[0]``).

    The first error whose reason is in `REASON_TABLE` or is a received alert
    decides. `verify_error` (the X.509 verify message recorded by the verify
    callback, e.g. ``unable to get local issuer certificate``) is appended for
    client_cert_invalid.
    """
    triples = _as_triples(errors)
    text = " / ".join(f"{lib}:{func}:{reason}" for lib, func, reason in triples)
    if not triples:
        # OpenSSL 4 reports an EOF during the handshake as an empty queue
        # (twisted.protocols.tls._representsEOF makes the same call).
        return _make("eof", None, "unexpected eof while reading")
    for _lib, _func, reason_text in triples:
        key = reason_text.strip().lower()
        reason = REASON_TABLE.get(key)
        if reason is not None:
            if reason == "client_cert_invalid" and verify_error:
                text = f"{text} ({verify_error})"
            return _make(reason, None, text)
        alert = _alert_name(key)
        if alert is not None:
            return _make(ALERT_TABLE.get(alert, "other"), alert, text)
    return _make("other", None, text)


# Exceptions that mean "the client went away" (before or during the handshake).
_EOF_TYPES: tuple[type[BaseException], ...] = (
    _terror.ConnectionDone, _terror.ConnectionLost, _terror.ConnectionAborted,
    ConnectionError, EOFError, BrokenPipeError,
)


def classify(exc: Any, verify_error: str | None = None) -> HandshakeFailure:
    """Classify whatever ended a handshake: a Twisted ``Failure``, an exception,
    or pyOpenSSL's error list.

    - ``SSL.SysCallError`` (``(-1, 'Unexpected EOF')``, ``(104, 'ECONNRESET')``) -> eof
    - ``SSL.Error`` -> `classify_errors`
    - ConnectionDone/ConnectionLost/ConnectionReset... -> eof
    - Twisted/builtin TimeoutError -> timeout
    - anything else -> other, with its repr as the text.
    """
    value = getattr(exc, "value", exc)  # twisted.python.failure.Failure
    try:
        if isinstance(value, SSL.SysCallError):
            args = value.args
            detail = args[1] if len(args) > 1 else repr(args)
            return _make("eof", None, f"{detail}")
        if isinstance(value, SSL.Error):
            return classify_errors(value.args[0] if value.args else [], verify_error)
        if isinstance(value, (_terror.TimeoutError, TimeoutError)):
            return _make("timeout", None, "handshake timed out")
        if isinstance(value, _EOF_TYPES):
            return _make("eof", None, _eof_text(value))
        if isinstance(value, (list, tuple)):
            return classify_errors(value, verify_error)
    except Exception:  # noqa: BLE001 - classification must never break the data path
        pass
    return _make("other", None, _short(repr(value)))


def _eof_text(value: BaseException) -> str:
    # Twisted turns an unexpected TCP EOF into ConnectionLost (tls._representsEOF).
    for kind, text in _EOF_TEXTS:
        if isinstance(value, kind):
            return text
    return _short(f"{type(value).__name__}: {value}")


_EOF_TEXTS: tuple[tuple[type[BaseException], str], ...] = (
    (_terror.ConnectionDone, "connection closed before the handshake completed"),
    (ConnectionResetError, "connection reset before the handshake completed"),
    (_terror.ConnectionLost, "connection lost before the handshake completed"),
    (_terror.ConnectionAborted, "connection aborted before the handshake completed"),
)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def timeout(seconds: float | None = None) -> HandshakeFailure:
    """Our own handshake deadline fired."""
    return _make("timeout", None, f"no handshake after {seconds}s" if seconds is not None else "handshake timed out")


def plain_http() -> HandshakeFailure:
    """sniff.py saw an HTTP request line on a TLS port."""
    return _make("plain_http", None, "HTTP spoken on HTTPS port")


def not_tls() -> HandshakeFailure:
    """sniff.py saw bytes that are neither a TLS ClientHello nor HTTP (or an SSLv2 hello)."""
    return _make("not_tls", None, "not a TLS ClientHello")


def eof(detail: str = "connection closed before the handshake completed") -> HandshakeFailure:
    """The connection ended before any TLS byte (or mid-handshake) without an SSL error."""
    return _make("eof", None, detail)
