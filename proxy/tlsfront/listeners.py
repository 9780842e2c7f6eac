"""What answers on a listening socket: TLS (chosen by local address) or plain HTTP.

Every listening socket gets one `ListenerFactory`. For each connection,
`PortProtocol` looks at the local address the client connected to
(`transport.getHost()`, also on a `0.0.0.0` socket) and asks the vhost table:

- a TLS vhost owns that address: look at the first bytes before any TLS
  (sniff.classify). A ClientHello (0x16 0x03) starts TLS on the socket
  (tlsio.py) with the vhost's own pyOpenSSL Context: the certificate is
  chosen by the address alone, as mod_ssl did before SNI. (With
  TLSFRONT_TLS_IO=memory in the environment, Twisted's TLSMemoryBIOProtocol
  does the TLS instead: the comparison in docs/benchmarks.md, and a fallback.) Plain HTTP gets
  Apache's `400 Bad Request` ("You're speaking plain HTTP to an SSL-enabled
  server port") with the https:// URL, or a 301 to it when the vhost says
  `plain_http_answer = "redirect"` (nginx's 497 behaviour). Anything else
  (SSLv2 hellos, junk) is closed. All three are logged and counted.
- plain vhosts own it: the connection is HTTP at once; each request picks
  its vhost by Host (`VHostTable.plain_for`).

The hand-over replaces `transport.protocol` (tcp.Connection reads it for every
event), so after the first bytes there is no extra layer per read.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from . import http1, sniff, tcpio, tlserrors, tlsio
from .backend import Upstream
from .frontend import Env, FrontendFactory, Site
from .model import VHost
from .vhosts import VHostTable

SNIFF_MAX_BYTES = 8192
PLAIN_CACHE_ENTRIES = 4096  # enough for any request line we would quote back


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnectionCreator:
    """One vhost's Context as Twisted wants it (one Context: one session cache)."""

    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)


_SAFE_HOST = re.compile(rb"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def https_url(vhost: VHost, data: bytes, local_port: int) -> str:
    """The https:// URL a plain-HTTP request on a TLS port meant (for the 400 body / redirect).

    The Host header is used only when it is a plain host[:port]; otherwise the
    vhost's server_name. The path is percent-encoded: nothing the client sent
    reaches the page unescaped.
    """
    host = vhost.server_name
    port = local_port
    m = re.search(rb"\r?\n[Hh][Oo][Ss][Tt][ \t]*:[ \t]*([^\r\n]*)", data)
    if m:
        value = m.group(1).strip()
        if _SAFE_HOST.match(value):
            text = value.decode("ascii")
            if text.startswith("["):
                host = text.split("]", 1)[0] + "]"
            else:
                host = text.split(":", 1)[0]
    parts = data.split(b"\r\n", 1)[0].split(b" ")
    path = parts[1] if len(parts) >= 2 and parts[1][:1] == b"/" else b"/"
    path_text = quote(path.decode("latin-1"), safe="/?&=%:@!$'()*+,;~-._")
    authority = host if port == 443 else f"{host}:{port}"
    return f"https://{authority}{path_text}"


def plain_http_400(url: str) -> bytes:
    """Apache 2.4's answer to plain HTTP on an SSL port (ssl_engine_io.c + the 400 page)."""
    u = html.escape(url, quote=True)
    body = (
        '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n'
        "<html><head>\n<title>400 Bad Request</title>\n</head><body>\n"
        "<h1>Bad Request</h1>\n"
        "<p>Your browser sent a request that this server could not understand.<br />\n"
        "Reason: You're speaking plain HTTP to an SSL-enabled server port.<br />\n"
        " Instead use the HTTPS scheme to access this URL, please.<br />\n"
        f'</p>\n<blockquote>Hint: <a href="{u}"><b>{u}</b></a></blockquote>\n'
        "</body></html>\n"
    ).encode("ascii", "xmlcharrefreplace")
    return http1.simple_response(400, body, content_type=b"text/html; charset=iso-8859-1")


def plain_http_redirect(url: str) -> bytes:
    location = url.encode("ascii")
    return http1.simple_response(301, b"Moved Permanently: " + location + b"\n",
                                 extra=[(b"Location", location)])


class PortProtocol(Protocol):
    """The first protocol of every connection: picks TLS or plain, then steps aside."""

    def __init__(self, listener: "ListenerFactory") -> None:
        self.listener = listener
        self._buf = b""
        self._timer = None
        self._vhost: VHost | None = None
        self._watcher: sniff.HelloWatcher | None = None

    def connectionMade(self) -> None:
        listener = self.listener
        tcpio.tune(self.transport)  # TCP_NODELAY, write-through (tcpio.py)
        self._local = local = listener.local_address(self.transport)
        vhost = listener.tls_for(*local)
        if vhost is None:
            self._hand_over(listener.plain_factory, b"")
            return
        self._vhost = vhost
        self._started = listener.env.reactor.seconds()
        self._timer = listener.env.reactor.callLater(
            listener.env.timeouts.client_handshake_seconds, self._timeout)
        # Counted as active until handed over: a graceful stop (reload, issue 6) waits for
        # a connection accepted before it whose first bytes are still on their way.
        listener.env.active.add(self)

    def drain(self) -> None:
        """Graceful stop: nothing to cut short; the first bytes get their handshake timeout."""

    def dataReceived(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        watcher = self._watcher
        if watcher is not None:  # the rest of a ClientHello
            self._buf = buf
            result = watcher.feed(data)
            if result is not None:
                self._hand_over_tls(buf, result)
            return
        kind = sniff.classify(buf)
        if kind is sniff.Kind.TLS:
            # Hand over once the whole ClientHello is here (almost always this read): the
            # session it offers, if any, tells a session-cache miss after the handshake.
            watcher = sniff.HelloWatcher()
            result = watcher.feed(buf)
            if result is None:
                self._watcher, self._buf = watcher, buf
                return
            self._hand_over_tls(buf, result)
        elif kind is sniff.Kind.HTTP:
            # Wait for the request head (or enough of it) to quote the URL back.
            if b"\r\n\r\n" in buf or b"\n\n" in buf or len(buf) >= SNIFF_MAX_BYTES:
                self._cancel()
                self._plain_http(buf)
            else:
                self._buf = buf
        elif kind is sniff.Kind.NEED_MORE:
            self._buf = buf
        else:
            self._cancel()
            self._not_tls(buf)

    def connectionLost(self, reason=None) -> None:
        if self._watcher is not None:
            # Part of a ClientHello, then the end: what the TLS layer would have logged and
            # counted had it been handed the bytes at once (it used to be).
            self._watcher = None
            failure = tlserrors.classify(reason) if reason is not None else tlserrors.eof()
            self._count_unfinished_hello(failure)
        self._cancel()

    def _count_unfinished_hello(self, failure) -> None:
        label = self._vhost.label
        hooks = self.listener.env.hooks
        hooks.event("connection_opened", label)
        hooks.error(failure.log_key, self._peer(), vhost=label, **failure.log_fields())
        hooks.event("handshake_failed", label, failure)
        hooks.event("connection_closed", label)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.listener.env.active.discard(self)

    def _hand_over(self, factory, data: bytes) -> None:
        transport = self.transport
        peer = transport.getPeer()
        proto = factory.buildProtocol(peer)
        proto.local_addr = self._local
        transport.protocol = proto
        proto.makeConnection(transport)
        if data:
            proto.dataReceived(data)

    def _hand_over_tls(self, buf: bytes, result) -> None:
        self._watcher = None
        listener = self.listener
        index = self._vhost.index
        transport = self.transport
        if listener.tls_on_socket and isinstance(transport, tcp.Server):
            # The handshake deadline's DelayedCall goes over to the frontend with the connection.
            timer, self._timer = self._timer, None
            listener.env.active.discard(self)
            app = listener.frontend_factories[index].buildProtocol(None)
            app.hello = result.hello  # sniff.ClientHello or None (FrontendProtocol.handshakeCompleted)
            app.local_addr = self._local
            app.adopt_timer(timer)
            tlsio.start(transport, app, SSL.Connection(listener.contexts[index], None), buf)
            return
        self._cancel()
        factory = listener.tls_factories[index]
        proto = factory.buildProtocol(transport.getPeer())
        app = getattr(proto, "wrappedProtocol", None)
        if app is not None:
            app.hello = result.hello  # sniff.ClientHello or None (FrontendProtocol.handshakeCompleted)
            app.local_addr = self._local
        transport.protocol = proto
        proto.makeConnection(transport)
        proto.dataReceived(buf)

    def _peer(self):
        p = self.transport.getPeer()
        return (getattr(p, "host", "?"), getattr(p, "port", 0))

    def _plain_http(self, buf: bytes) -> None:
        vhost = self._vhost
        hooks = self.listener.env.hooks
        url = https_url(vhost, buf, self._local[1])
        hooks.error("plain_http", self._peer(), vhost=vhost.label, request_line=sniff.request_line(buf))
        hooks.event("handshake_failed", vhost.label, tlserrors.plain_http())
        if vhost.plain_http_answer == "redirect":
            response = plain_http_redirect(url)
            status = 301
        else:
            response = plain_http_400(url)
            status = 400
        hooks.access(vhost.label, self._peer()[0], sniff.request_line(buf), status, len(response),
                     None, None, ())
        # Counted as a request too (tlsfront_http_requests_total by status class), and the
        # 400 as a rejected one (issue 11); the redirect is an answer, not a rejection.
        if status == 400:
            hooks.event("request_rejected", vhost.label, 400, "plain_http")
        hooks.event("request_done", vhost.label, status,
                    self.listener.env.reactor.seconds() - self._started, len(buf), len(response), ())
        self.transport.write(response)
        self.transport.loseConnection()

    def _not_tls(self, buf: bytes) -> None:
        vhost = self._vhost
        hooks = self.listener.env.hooks
        hooks.error("not_tls", self._peer(), vhost=vhost.label, first_bytes=buf[:16].decode("latin-1"))
        hooks.event("handshake_failed", vhost.label, tlserrors.not_tls())
        self.transport.loseConnection()

    def _timeout(self) -> None:
        self._timer = None
        vhost = self._vhost
        hooks = self.listener.env.hooks
        seconds = self.listener.env.timeouts.client_handshake_seconds
        hooks.error("handshake_timeout", self._peer(), vhost=vhost.label, seconds=f"{seconds:g}")
        hooks.event("handshake_failed", vhost.label, tlserrors.timeout(seconds))
        if self._watcher is not None:  # a ClientHello begun: a connection, as the TLS layer counts them
            self._watcher = None
            hooks.event("connection_opened", vhost.label)
            hooks.event("connection_closed", vhost.label)
        self.transport.abortConnection()


class ListenerFactory(Factory):
    """The factory of one listening socket (any mix of the vhosts bound to it)."""

    noisy = False

    def __init__(self, env: Env, table: VHostTable, sites: dict[int, Site],
                 contexts: dict[int, SSL.Context]) -> None:
        self.env = env
        self.table = table
        self.sites = sites
        self._tls_cache: dict[tuple[str, int], VHost | None] = {}
        self._port_address: dict[object, tuple[str, int] | None] = {}
        self._plain_cache: dict[tuple[str, int, bytes | None], Site | None] = {}
        self.plain_factory = FrontendFactory(env, self._plain_site, tls=False)
        self.contexts = contexts
        self.tls_on_socket = tlsio.mode() == "socket"
        self.frontend_factories: dict[int, FrontendFactory] = {}
        self.tls_factories: dict[int, TLSMemoryBIOFactory] = {}
        for index, site in sites.items():
            if site.vhost.is_tls:
                frontend = self.frontend_factories[index] = FrontendFactory(env, _fixed(site), tls=True)
                self.tls_factories[index] = TLSMemoryBIOFactory(
                    ServerConnectionCreator(contexts[index]), False, frontend, clock=env.reactor)

    def local_address(self, transport) -> tuple[str, int]:
        """(ip, port) the client connected to. A socket bound to one address answers from
        memory; a wildcard one (0.0.0.0, ::) asks the connection (getsockname) each time.
        `transport.server` is the twisted.internet.tcp.Port that accepted it."""
        port = getattr(transport, "server", None)
        try:
            fixed = self._port_address[port]
        except KeyError:
            fixed = None
            if port is not None:
                bound = port.getHost()
                if bound.host not in ("0.0.0.0", "::"):
                    fixed = (bound.host, bound.port)
                self._port_address[port] = fixed
        if fixed is not None:
            return fixed
        host = transport.getHost()
        return (host.host, host.port)

    def tls_for(self, local_ip: str, local_port: int) -> VHost | None:
        """VHostTable.tls_for, remembered: local addresses are few, and this runs per connection."""
        key = (local_ip, local_port)
        try:
            return self._tls_cache[key]
        except KeyError:
            vhost = self._tls_cache[key] = self.table.tls_for(local_ip, local_port)
            return vhost

    def _plain_site(self, local_ip: str, local_port: int, host: bytes | None) -> Site | None:
        # Per request on plain ports: remembered too, but Host values come from clients,
        # so the memory is bounded (cleared when full).
        key = (local_ip, local_port, host)
        site = self._plain_cache.get(key)
        if site is None:
            vhost = self.table.plain_for(local_ip, local_port, host)
            site = self.sites.get(vhost.index) if vhost is not None else None
            if len(self._plain_cache) >= PLAIN_CACHE_ENTRIES:
                self._plain_cache.clear()
            self._plain_cache[key] = site
        return site

    def buildProtocol(self, addr):
        env = self.env
        if len(env.active) >= env.max_connections:
            # [limits] max_connections per worker: Twisted closes the socket at once.
            # The admin listener is another factory and still answers (issue 11).
            env.refused_connections += 1
            return None
        proto = PortProtocol(self)
        proto.factory = self
        return proto


def _fixed(site: Site):
    def resolve(local_ip: str, local_port: int, host: bytes | None) -> Site:
        return site
    return resolve


def build_sites(env: Env, vhosts) -> dict[int, Site]:
    """One Site (with its Upstream) per vhost, keyed by vhost.index."""
    vhosts = tuple(vhosts)
    sites = {v.index: Site(v, Upstream(env.pool, v.backends, v.label)) for v in vhosts}
    for v in vhosts:
        if v.ssl_nossl_suffix_redirects:
            sites[v.index].suffix_redirects = (_authority(v, vhosts, tls=True), _authority(v, vhosts, tls=False))
    return sites


def _authority(vhost: VHost, vhosts: tuple[VHost, ...], tls: bool) -> bytes:
    """host[:port] of the vhost of the same name on the other scheme (or this one's name
    on the scheme's default port when there is none)."""
    default = 443 if tls else 80
    name = vhost.server_name
    for v in vhosts:
        if v.is_tls == tls and (v.server_name == name or name in v.server_aliases):
            port = v.listen.port
            return (name if port == default else f"{name}:{port}").encode("idna")
    return name.encode("idna")
