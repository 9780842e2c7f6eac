"""A plain twisted.web + Agent reverse proxy: the "plain Twisted reverse proxy" row.

This is deliberately the obvious way to write a proxy with Twisted's own HTTP
layers, so the numbers say what twisted.web's server and its client cost per
request (the evidence behind tlsfront's lean httptools protocol):

- server: `twisted.web.server.Site` over `listenSSL`, one leaf `Resource`;
- client: `twisted.web.client.Agent` with a persistent `HTTPConnectionPool`;
- bodies streamed from the backend with `deliverBody` (no buffering);
- TLS: `CertificateOptions` with a session cache and tickets enabled (its
  defaults resume nothing, which would make it look 2.7x slower on reconnects);
- no access log (the other fronts write none in the bench either).

It adds `X-TLS-Resumed: 1|0` to responses (SSL_session_reused) for the harness.

Usage: python -m bench.baseline_twisted --port 8443 --cert leaf.crt --key leaf.key \
           [--chain intermediate.crt] --backend http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import sys

from cryptography import x509
from OpenSSL import crypto
from OpenSSL._util import lib as _lib

HOP_BY_HOP = frozenset(
    h.encode() for h in (
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te", "trailers", "transfer-encoding", "upgrade", "content-length", "host",
    )
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline_twisted", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--chain")
    p.add_argument("--backend", required=True, help="http://host:port")
    args = p.parse_args(argv)

    from twisted.internet import protocol, reactor, ssl
    from twisted.web import resource, server
    from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
    from twisted.web.http import PotentialDataLoss
    from twisted.web.http_headers import Headers

    with open(args.cert, "rb") as f:
        cert = crypto.X509.from_cryptography(x509.load_pem_x509_certificate(f.read()))
    with open(args.key, "rb") as f:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
    chain = []
    if args.chain:
        with open(args.chain, "rb") as f:
            chain = [crypto.X509.from_cryptography(c) for c in x509.load_pem_x509_certificates(f.read())]
    tls = ssl.CertificateOptions(
        privateKey=key, certificate=cert, extraCertChain=chain,
        enableSessions=True, enableSessionTickets=True,
    )

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 128
    agent = Agent(reactor, pool=pool)
    backend = args.backend.rstrip("/").encode()

    class Relay(protocol.Protocol):
        """Backend body -> client, as it arrives."""

        def __init__(self, request):
            self.request = request

        def dataReceived(self, data):
            if not self.request.finished and not self.request._disconnected:
                self.request.write(data)

        def connectionLost(self, reason):
            if reason.check(ResponseDone, PotentialDataLoss) and not self.request._disconnected:
                self.request.finish()
            elif not self.request._disconnected:
                self.request.transport.abortConnection()

    def resumed(request) -> bytes:
        try:
            conn = request.channel.transport.getHandle()
            return b"1" if _lib.SSL_session_reused(conn._ssl) else b"0"
        except Exception:
            return b"?"

    class Proxy(resource.Resource):
        isLeaf = True

        def render(self, request):
            headers = Headers()
            for name, values in request.requestHeaders.getAllRawHeaders():
                if name.lower() not in HOP_BY_HOP:
                    headers.setRawHeaders(name, values)
            host = request.getHeader(b"host")
            if host:
                headers.setRawHeaders(b"host", [host])
            headers.addRawHeader(b"x-forwarded-for", request.getClientAddress().host.encode())
            headers.setRawHeaders(b"x-forwarded-proto", [b"https"])
            d = agent.request(request.method, backend + request.uri, headers, None)

            def respond(response):
                request.setResponseCode(response.code, response.phrase)
                for name, values in response.headers.getAllRawHeaders():
                    if name.lower() not in HOP_BY_HOP or name.lower() == b"content-length":
                        request.responseHeaders.setRawHeaders(name, values)
                request.responseHeaders.setRawHeaders(b"x-tls-resumed", [resumed(request)])
                response.deliverBody(Relay(request))

            def failed(failure):
                if not request._disconnected:
                    request.setResponseCode(502)
                    request.write(b"bad gateway\n")
                    request.finish()

            d.addCallbacks(respond, failed)
            return server.NOT_DONE_YET

    class QuietSite(server.Site):
        def log(self, request):  # no access log, like the other fronts in the bench
            pass

    site = QuietSite(Proxy())
    site.noisy = False
    reactor.listenSSL(args.port, site, tls, backlog=4096, interface=args.host)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
