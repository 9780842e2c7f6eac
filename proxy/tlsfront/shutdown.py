"""How a TLS connection is closed: mod_ssl's three shutdown modes.

httpd's `modules/ssl/ssl_engine_io.c` (ssl_filter_io_shutdown) sets OpenSSL's
shutdown flags before SSL_shutdown():

| mode       | quirk                   | flags set before closing     | on the wire                         |
|------------|-------------------------|------------------------------|-------------------------------------|
| standard   | (default)               | RECEIVED_SHUTDOWN            | close_notify sent, FIN at once      |
| unclean    | ssl-unclean-shutdown    | SENT_SHUTDOWN | RECEIVED     | no close_notify, FIN at once        |
| accurate   | ssl-accurate-shutdown   | none                         | close_notify sent, peer's awaited   |

On tlsio.TLSServer (the default TLS layer) `close()` hands the flags to
`close_tls()`, which applies them once the queued plaintext is encrypted (SSL_write
refuses data after SENT_SHUTDOWN). On Twisted's TLSMemoryBIOProtocol
(TLSFRONT_TLS_IO=memory) the flags are set at once, after flushing its small-write
buffer. Either way the accurate mode waits for the peer without a deadline of
its own: the frontend aborts the connection after ACCURATE_SHUTDOWN_WAIT_SECONDS.
"""

from __future__ import annotations

from OpenSSL import SSL

STANDARD = "standard"
UNCLEAN = "unclean"
ACCURATE = "accurate"

FLAGS: dict[str, int] = {
    STANDARD: SSL.RECEIVED_SHUTDOWN,
    UNCLEAN: SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN,
    ACCURATE: 0,
}


def close(transport, mode: str = STANDARD) -> None:
    """Close `transport` (TLS or plain) after its pending data, in shutdown `mode`."""
    close_tls = getattr(transport, "close_tls", None)
    if close_tls is not None:  # tlsio.TLSServer: the flags wait for the queued plaintext
        close_tls(FLAGS[mode])
        return
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is not None:
        # Twisted's BufferingTLSTransport holds small writes until the next reactor
        # turn and flushes them in loseConnection(): SSL_write refuses data once
        # SENT_SHUTDOWN is set, so the held response must go out first.
        aggregator = getattr(transport, "_aggregator", None)
        if aggregator is not None:
            aggregator.flush()
        conn = get_handle()
        if isinstance(conn, SSL.Connection):
            flags = FLAGS[mode]
            if flags:
                conn.set_shutdown(conn.get_shutdown() | flags)
    transport.loseConnection()
