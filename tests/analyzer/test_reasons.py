"""OpenSSL error text -> category across 0.9.8, 1.0, 1.1, 3.x (and 4.x wording), keyed on reason code and alert."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlslog.reasons import classify_openssl, unpack

CASES = [
    # the mod_ssl FAQ, verbatim (note its space after the code): OpenSSL 0.9.x
    ("OpenSSL: error:14094412: SSL routines:SSL3_READ_BYTES:sslv3 alert bad certificate", "client_rejected_cert"),
    # issue 3's three spellings of one reason
    ("error:14094412:SSL routines:SSL3_READ_BYTES:sslv3 alert bad certificate", "client_rejected_cert"),
    ("error:14094412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate", "client_rejected_cert"),
    ("error:0A000412:SSL routines::ssl/tls alert bad certificate", "client_rejected_cert"),
    # OpenSSL 3.0 as Apache 2.4 logs it (SSL alert number from ssl_log_ssl_error's data)
    ("SSL Library Error: error:0A000418:SSL routines::tlsv1 alert unknown ca (SSL alert number 48)",
     "client_rejected_cert"),
    ("SSL Library Error: error:0A000416:SSL routines::sslv3 alert certificate unknown (SSL alert number 46)",
     "client_rejected_cert"),
    ("SSL Library Error: error:0A000415:SSL routines::sslv3 alert certificate expired (SSL alert number 45)",
     "client_rejected_cert"),
    # Apache 2.0/2.2 print the decimal code first (ssl_engine_log.c "SSL Library Error: %lu %s"); 336151570 = 0x14094412
    ("SSL Library Error: 336151570 error:14094412:SSL routines:SSL3_READ_BYTES:sslv3 alert bad certificate",
     "client_rejected_cert"),
    # nginx appends ":SSL alert number N" (ngx_ssl_error); OpenSSL 1.1.1, common in nginx forum reports
    ("SSL_do_handshake() failed (SSL: error:14094418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:"
     "SSL alert number 48) while SSL handshaking", "client_rejected_cert"),
    ("error:1417A0C1:SSL routines:tls_post_process_client_hello:no shared cipher", "no_shared_cipher"),
    ("error:1408A0C1:SSL routines:ssl3_get_client_hello:no shared cipher", "no_shared_cipher"),  # 1.0.2
    ("error:0A0000C1:SSL routines::no shared cipher", "no_shared_cipher"),
    ("error:14209102:SSL routines:tls_early_post_process_client_hello:unsupported protocol", "protocol_mismatch"),
    ("error:0A000102:SSL routines::unsupported protocol", "protocol_mismatch"),
    ("error:140760FC:SSL routines:SSL23_GET_CLIENT_HELLO:unknown protocol", "protocol_mismatch"),  # 1.0
    ("error:0A00010B:SSL routines::wrong version number", "protocol_mismatch"),
    ("error:0A00042E:SSL routines::tlsv1 alert protocol version (SSL alert number 70)", "protocol_mismatch"),
    ("error:1407609C:SSL routines:SSL23_GET_CLIENT_HELLO:http request", "plain_http_on_tls_port"),  # 1.0
    ("error:1408F09C:SSL routines:ssl3_get_record:http request", "plain_http_on_tls_port"),  # 1.1
    ("error:0A00009C:SSL routines::http request", "plain_http_on_tls_port"),
    ("error:140890C7:SSL routines:ssl3_get_client_certificate:peer did not return a certificate",
     "client_cert_missing"),
    ("error:0A0000C7:SSL routines::peer did not return a certificate", "client_cert_missing"),
    ("error:14089086:SSL routines:ssl3_get_client_certificate:certificate verify failed", "client_cert_invalid"),
    ("error:0A000086:SSL routines::certificate verify failed", "client_cert_invalid"),
    ("error:0A000126:SSL routines::unexpected eof while reading", "handshake_eof_or_reset"),
    # startup failures
    ("error:0B080074:x509 certificate routines:X509_check_private_key:key values mismatch", "key_cert_mismatch"),
    ("error:05800074:x509 certificate routines::key values mismatch", "key_cert_mismatch"),
    ("error:06065064:digital envelope routines:EVP_DecryptFinal_ex:bad decrypt", "passphrase_failure"),
    ("error:0906A068:PEM routines:PEM_do_header:bad password read", "passphrase_failure"),
    ("error:1C800064:Provider routines::bad decrypt", "passphrase_failure"),
    # nginx 1.22 + OpenSSL 3 with a wrong ssl_password_file: the first error is the UI prompt failing
    ("PEM_read_bio_PrivateKey() failed (SSL: error:1400006B:UI routines::processing error:while reading strings "
     "error:0480006D:PEM routines::problems getting password)", "passphrase_failure"),
    ("error:8000000D:system library::Permission denied (calling fopen(/etc/ssl/x.crt, r))", "cert_file_unreadable"),
    ("error:0200100D:system library:fopen:Permission denied", "cert_file_unreadable"),  # 1.x: SYS lib, errno 13
    ("BIO_new_file() failed (SSL: error:80000002:system library::No such file or directory:calling fopen(/x, r) "
     "error:10000080:BIO routines::no such file)", "cert_file_unreadable"),
    ("error:0480006C:PEM routines::no start line", "cert_file_unreadable"),
    # socket.io issue 1501 quotes this OpenSSL 0.9.8/1.0 error verbatim
    ("error:24064064:random number generator:SSLEAY_RAND_BYTES:PRNG not seeded", "prng_not_seeded"),
    # no code at all: HAProxy's ssl_fc_err_str and OpenSSL 4's "tls alert" wording (tlsfront docs/logs.md)
    ("tlsv1 alert unknown ca", "client_rejected_cert"),
    ("SSL routines::tls alert bad certificate", "client_rejected_cert"),
    ("SSL routines::no shared cipher", "no_shared_cipher"),
    # unknown reasons are still TLS errors
    ("error:0A00006C:SSL routines::bad key share", "other_tls_error"),
    ("error:0A000410:SSL routines::sslv3 alert handshake failure (SSL alert number 40)", "other_tls_error"),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0][:60] for c in CASES])
def test_classify_openssl(text: str, expected: str):
    assert classify_openssl(text)[0] == expected


def test_no_openssl_error_is_none():
    assert classify_openssl("AH01964: Connection to child 1 established") == (None, None)


@pytest.mark.parametrize(
    "code, func, expected",
    [("14094412", "SSL3_READ_BYTES", (20, 1042)), ("0A000412", "", (20, 1042)), ("8000000D", "", (2, 13)),
     ("0A080002", "", (20, 2)), ("1E08010C", "", (60, 268)), ("24064064", "SSLEAY_RAND_BYTES", (36, 100))],
)
def test_unpack_both_generations(code: str, func: str, expected: tuple[int, int]):
    assert unpack(code, func) == expected


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_classify_never_raises(text: str):
    category, _ = classify_openssl(text)
    assert category is None or isinstance(category, str)
