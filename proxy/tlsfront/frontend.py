"""The client side of the proxy: one `FrontendProtocol` per client connection.

Theory of operation
-------------------
Bytes from the client go through `http1.RequestReader`; each request is
forwarded to a backend connection from `backend.Pool`, and the response comes
back through `backend_*` callbacks (this protocol is the backend's sink).

One exchange at a time per connection. Pipelined requests wait: the events
already parsed are queued (`_queued`), raw bytes that still arrive while the
client is paused are kept (`_backlog`); both are bounded by one transport read.

Flow control both ways, so bodies of any size stream through in constant
memory: while the backend cannot take the upload fast enough, its transport
pauses the *client's* transport (`_Pump` registered as the backend
transport's producer); while the client reads the download slowly, the
client's transport pauses the backend's. `_Gate` keeps the reasons a transport
is paused for, so that one reason ending does not resume another's pause.

Framing: the request goes to the backend as HTTP/1.1 with the client's
Content-Length, or chunked when the client sent chunks. The response goes to
the client with the backend's Content-Length when it gave one; otherwise
chunked for HTTP/1.1 clients, and delimited by closing for HTTP/1.0 ones (or
when the `downgrade-1.0` quirk applies).

Deadlines of our own (model.Timeouts), one timer per connection, reset at
state changes and not by every byte (issue 11: twisted.web's idle timeout is
reset by every byte, so slowloris survives it): handshake, request head,
body idle, response head (backend), keep-alive idle.

All I/O goes through `self.transport` and `env.reactor`: tests drive this
class with StringTransport and MemoryReactorClock.
"""

from __future__ import annotations

import ipaddress

from OpenSSL import SSL
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from . import headers as _headers
from . import http1, shutdown, tlsfacts
from .backend import Pool, Upstream
from .model import Limits, Timeouts, VHost
from .quirks import NONE as _NO_QUIRKS
from .quirks import QuirkRules

# Bodies of the errors the proxy answers itself: short and plain (issue 2).
ERROR_BODIES: dict[int, bytes] = {
    400: b"Bad Request: the request is not valid HTTP/1.1.\n",
    408: b"Request Timeout: the request was not received in time.\n",
    413: b"Content Too Large: the request body exceeds the configured limit.\n",
    414: b"URI Too Long.\n",
    417: b"Expectation Failed: only 'Expect: 100-continue' is supported.\n",
    421: b"Misdirected Request: no virtual host serves this name here.\n",
    431: b"Request Header Fields Too Large.\n",
    405: b"Method Not Allowed by this reverse proxy.\n",
    501: b"Not Implemented.\n",
    502: b"Bad Gateway: the backend could not be reached or answered badly.\n",
    504: b"Gateway Timeout: the backend did not answer in time.\n",
    505: b"HTTP Version Not Supported.\n",
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
ACCURATE_SHUTDOWN_WAIT_SECONDS = 5.0
# What a connection may hold before it stops reading: body bytes that arrived
# before the backend connection, pipelined bytes behind a running exchange.
BUFFER_LIMIT_BYTES = 64 * 1024  # ssl-accurate-shutdown: how long the peer's close_notify is awaited


class Hooks:
    """What the data path reports, to the logs (logfiles.Logs) and the metrics (metrics.Metrics).

    `error(key, client, **fields)` -> error log (logformat.MESSAGES keys);
    `access(...)`, `ssl_request(...)` -> access log and ssl_request_log;
    `event(name, *args, **kwargs)` -> the metrics object's method `name`
    (connection_opened/closed, handshake_ok/failed, cache_miss, request_done,
    request_rejected, backend_request, backend_error, backend_up, backend_connections).
    Either may be None: nothing is logged or counted. A name the metrics object
    lacks is a programming error and raises (a test checks every name used).
    """

    def __init__(self, logs=None, metrics=None) -> None:
        self.logs = logs
        self.metrics = metrics
        self._methods: dict[str, object] = {}

    def error_enabled(self, key: str) -> bool:
        return self.logs is not None and self.logs.enabled(key)

    def error(self, key: str, client=None, **fields) -> None:
        if self.logs is not None:
            self.logs.error(key, client, **fields)

    def request_lines_wanted(self) -> bool:
        """Whether an access or ssl_request log is open: else no request line is built
        (an f-string and two header lookups per request, 2-3% of a keep-alive worker)."""
        logs = self.logs
        return logs is not None and (logs.access_file is not None or logs.ssl_request_file is not None)

    def access(self, vhost: str, client_ip: str, request_line: str, status: int, bytes_out: int,
               referer: bytes | None, user_agent: bytes | None, quirks: tuple[str, ...]) -> None:
        if self.logs is not None:
            self.logs.access(vhost, client_ip, request_line, status, bytes_out,
                             referer.decode("latin-1") if referer else None,
                             user_agent.decode("latin-1") if user_agent else None, quirks)

    def ssl_request(self, client_ip: str, facts, request_line: str, body_bytes: int,
                    handshake_seconds: float, vhost: str = "-") -> None:
        if self.logs is not None:
            self.logs.ssl_request(client_ip, facts.protocol, facts.cipher, request_line, body_bytes,
                                  handshake_seconds, facts.reused, vhost=vhost)

    def event(self, name: str, *args, **kwargs) -> None:
        method = self._methods.get(name)
        if method is None:
            if self.metrics is None:
                method = _ignore
            else:
                method = getattr(self.metrics, name, None)
                if method is None:
                    raise AttributeError(f"Hooks.event({name!r}): {type(self.metrics).__name__} has no "
                                         f"method {name!r}; the event would be silently lost")
            self._methods[name] = method
        method(*args, **kwargs)


def _ignore(*args, **kwargs) -> None:
    pass


def _offered(hello) -> str:
    """The highest TLS version a parsed ClientHello offered (metrics: failed handshakes)."""
    return hello.max_version_name if hello is not None else "unknown"


class Site:
    """One vhost as the data path needs it, built once at startup."""

    __slots__ = ("vhost", "label", "upstream", "proto", "trusted", "tls_headers", "client_cert",
                 "host_header", "hsts", "preserve_host", "suffix_redirects")

    def __init__(self, vhost: VHost, upstream: Upstream) -> None:
        self.vhost = vhost
        self.label = vhost.label
        self.upstream = upstream
        self.proto = b"https" if vhost.is_tls else b"http"
        self.trusted = tuple(ipaddress.ip_network(n, strict=False)
                             for n in vhost.forwarding.trusted_proxies)
        # RFC 6797: Strict-Transport-Security, on TLS responses only.
        self.hsts = ((b"Strict-Transport-Security", b"max-age=%d" % vhost.hsts_max_age_seconds)
                     if vhost.is_tls and vhost.hsts_max_age_seconds is not None else None)
        self.tls_headers = vhost.is_tls and vhost.forwarding.tls_headers
        self.client_cert = vhost.forwarding.client_cert_header
        self.preserve_host = vhost.forwarding.preserve_host
        # The FAQ's ":SSL"/":NOSSL" rewrite trick: (https authority, http authority), set by
        # listeners.build_sites, which knows the other vhosts of the same name.
        self.suffix_redirects: tuple[bytes, bytes] | None = None
        default_port = 443 if vhost.is_tls else 80
        port = vhost.listen.port
        self.host_header = (vhost.server_name if port == default_port
                            else f"{vhost.server_name}:{port}").encode("idna")


def suffix_redirect(site: Site, target: bytes) -> bytes | None:
    """The Location for a path ending in `:SSL` (to https) or `:NOSSL` (to http), else None.

    The mod_ssl FAQ's rules, built in::

        RewriteRule ^/(.*):SSL$   https://%{SERVER_NAME}/$1 [R,L]
        RewriteRule ^/(.*):NOSSL$ http://%{SERVER_NAME}/$1 [R,L]

    >>> s = Site.__new__(Site); s.suffix_redirects = (b"www.example.test:8443", b"www.example.test")
    >>> suffix_redirect(s, b"/shop/cart:SSL?x=1")
    b'https://www.example.test:8443/shop/cart?x=1'
    """
    path, sep, query = target.partition(b"?")
    if path.endswith(b":SSL"):
        scheme, authority, path = b"https://", site.suffix_redirects[0], path[:-4]
    elif path.endswith(b":NOSSL"):
        scheme, authority, path = b"http://", site.suffix_redirects[1], path[:-6]
    else:
        return None
    return scheme + authority + (path or b"/") + sep + query


def is_trusted(site: Site, ip: str) -> bool:
    """Whether `ip` is one of the site's trusted proxies (addresses or networks)."""
    if not site.trusted:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in site.trusted)


class Env:
    """What every connection of a process shares."""

    def __init__(self, reactor, pool: Pool, hooks: Hooks | None = None,
                 timeouts: Timeouts | None = None, limits: Limits | None = None,
                 quirks: QuirkRules | None = None) -> None:
        self.reactor = reactor
        self.pool = pool
        self.hooks = hooks or Hooks()
        self.timeouts = timeouts or Timeouts()
        lim = limits or Limits()
        self.reader_limits = http1.ReaderLimits(lim.max_header_count, lim.max_header_bytes,
                                                lim.max_body_bytes)
        self.quirks = quirks or QuirkRules()
        self.max_connections = lim.max_connections
        self.refused_connections = 0
        self.connections = 0
        self.active: set = set()  # FrontendProtocols (and sniffing PortProtocols), for a graceful stop
        self.draining = False


class _Gate:
    """Pauses a transport while at least one reason holds."""

    __slots__ = ("transport", "reasons")

    def __init__(self, transport) -> None:
        self.transport = transport
        self.reasons: set[str] = set()

    def pause(self, reason: str) -> None:
        if not self.reasons:
            self.transport.pauseProducing()
        self.reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.reasons:
            self.reasons.discard(reason)
            if not self.reasons:
                self.transport.resumeProducing()


@implementer(IPushProducer)
class _Pump:
    """Registered as producer on the receiving transport; pauses the sending one."""

    __slots__ = ("gate", "reason")

    def __init__(self, gate: _Gate, reason: str) -> None:
        self.gate = gate
        self.reason = reason

    def pauseProducing(self) -> None:
        self.gate.pause(self.reason)

    def resumeProducing(self) -> None:
        self.gate.resume(self.reason)

    def stopProducing(self) -> None:
        pass  # connection loss is handled by the protocols themselves


@implementer(IPushProducer)
class _Download:
    """The client transport's producer, registered once per connection (at its first
    response) rather than per exchange: pauses the backend transport of the running
    exchange while the client's transport is full. Attached at each response head,
    detached at its end (the backend connection goes back to the pool resumed); a pause
    that outlasts an exchange pauses the next one's backend at once.
    """

    __slots__ = ("paused", "backend")

    def __init__(self) -> None:
        self.paused = False
        self.backend = None

    def attach(self, backend_transport) -> None:
        self.backend = backend_transport
        if self.paused:
            backend_transport.pauseProducing()

    def detach(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None and self.paused:
            backend.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True
        if self.backend is not None:
            self.backend.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        if self.backend is not None:
            self.backend.resumeProducing()

    def stopProducing(self) -> None:
        pass  # connection loss is handled by the protocols themselves


@implementer(IHandshakeListener)
class FrontendProtocol(Protocol):
    """One client connection: plain, or TLS (tlsio.TLSServer, or TLSMemoryBIOProtocol with TLSFRONT_TLS_IO=memory)."""

    def __init__(self, env: Env, resolve, tls: bool) -> None:
        self.env = env
        self.resolve = resolve  # (local_ip, local_port, host) -> Site | None
        self.tls = tls
        self.reader = http1.RequestReader(env.reader_limits)
        self._timer = None
        self._timer_kind = ""
        self._deadline = 0.0
        self._queued: list = []
        self._backlog: list[bytes] = []
        self._backlog_bytes = 0
        self._busy = False  # between a request's head and its response's end
        self._closing = False
        self._tls_headers: tuple | list | None = None
        self._facts = None
        self._connected_at = 0.0
        self._handshake_seconds = 0.0
        self._handshake_done = False
        self._hs_timed_out = False
        self.requests = 0
        self.hello = None  # sniff.ClientHello, set by listeners.PortProtocol before the handshake
        self.local_addr: tuple[str, int] | None = None  # set by PortProtocol: saves a getsockname
        # The last request's TLS shutdown mode is the connection's, also for a close after it
        # (keep-alive timeout, drain), as mod_ssl's ssl_configure_env moves it to the conn_rec.
        self._shutdown_mode = shutdown.STANDARD
        self._download: _Download | None = None  # registered on self.transport from the first response
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.req: http1.Request | None = None
        self.site: Site | None = None
        self.quirks = _NO_QUIRKS
        self.conn = None
        self.backend = None
        self._order: list = []
        self._head: bytes = b""
        self._body_buffer: list[bytes] = []
        self._buffered = 0
        self._req_done = False
        self._resp: http1.Response | None = None
        self._resp_head_sent = False
        self._out_chunked = False
        self._out: list[bytes] | None = None  # response bytes held until backend_flush
        self._keep = False
        self._bytes_out = 0
        self._bytes_in = 0
        self._body_out = 0
        self._status = 0
        self._upload_registered = False
        self._retries = 0
        self._reused = False
        self._logged = False  # the exchange's access/ssl_request lines are written

    # -- connection life ------------------------------------------------------

    def connectionMade(self) -> None:
        env = self.env
        self._gate = _Gate(self.transport)
        self._upload_pump = _Pump(self._gate, "upload")
        local = self.local_addr
        if local is None:
            host = self.transport.getHost()
            local = (host.host, host.port)
        client = getattr(self.transport, "client", None)  # tcp.Server: (host, port[, ...])
        if client is not None:
            self.peer = (client[0], client[1])  # without building an IPv4Address per connection
        else:
            peer = self.transport.getPeer()
            self.peer = (getattr(peer, "host", "?"), getattr(peer, "port", 0))
        self.local_ip, self.local_port = local
        self._peer_ip = self.peer[0].encode("ascii")
        self._local_port_bytes = b"%d" % self.local_port
        self._connected_at = env.reactor.seconds()
        self._default_site = self.resolve(self.local_ip, self.local_port, None)
        env.connections += 1
        env.active.add(self)
        label = self._default_site.label if self._default_site else "-"
        env.hooks.event("connection_opened", label)
        if self.tls:
            self._set_timer(env.timeouts.client_handshake_seconds, "handshake")
        else:
            self._set_timer(env.timeouts.client_header_seconds, "header")

    def handshakeCompleted(self) -> None:
        self._handshake_done = True
        self._handshake_seconds = self.env.reactor.seconds() - self._connected_at
        conn = self.transport.getHandle()
        self._facts = facts = tlsfacts.facts_from(conn)
        site = self._default_site
        label = site.label if site else "-"
        hooks = self.env.hooks
        hooks.event("handshake_ok", label, facts.protocol, facts.cipher, facts.reused, self._handshake_seconds)
        hello = self.hello
        if hello is not None and not facts.reused and hello.offers_resumption:
            # The client offered a session we could not resume (expired, another worker's
            # or instance's, old ticket keys): docs/sessions.md, metrics.md.
            hooks.event("cache_miss", label)
            if hooks.error_enabled("session_cache_miss"):
                offered = ("psk" if hello.psk_offered else "ticket" if hello.offers_ticket
                           else "session-id")
                hooks.error("session_cache_miss", self.peer, vhost=label, offered=offered)
        if hooks.error_enabled("handshake_done"):
            hooks.error("handshake_done", self.peer, vhost=label, protocol=facts.protocol,
                        cipher=facts.cipher, resumed="yes" if facts.reused else "no",
                        seconds=f"{self._handshake_seconds:.6f}")
        if self._timer_kind == "handshake":
            self._set_timer(self.env.timeouts.client_header_seconds, "header")

    def connectionLost(self, reason: Failure = None) -> None:
        self.reader.close()  # and the parser's (RequestReader.close)
        self._closing = True
        self._cancel_timer()
        env = self.env
        env.connections -= 1
        env.active.discard(self)
        label = self._default_site.label if self._default_site else "-"
        if self.tls and not self._handshake_done:
            self._log_handshake_failure(reason, label)
        if self.req is not None and not self._logged:
            self._log_client_closed()
        conn = self.conn
        if conn is not None:
            self._unregister_upload()
            conn.detach()
            self.conn = None
        self.req = None
        env.hooks.event("connection_closed", label)

    def _log_client_closed(self) -> None:
        """The client went away in the middle of an exchange: still one access line, as nginx
        (status 499, "client closed request") and Apache (the status it was sending) write.
        499 when no response head had gone out, else the status that was being sent."""
        if not self._status:
            self._status = 499
        site = self.site or self._default_site
        req = self.req
        self.env.hooks.error("client_closed", self.peer, vhost=site.label if site else "-",
                             request=f"{req.method.decode('latin-1')} {req.target.decode('latin-1')[:200]}",
                             body_bytes=self._body_out, status=self._status)
        self._log_access()

    def _log_handshake_failure(self, reason: Failure | None, label: str) -> None:
        if self._hs_timed_out:
            return  # logged when the deadline fired
        from . import tlserrors
        verify_error = None
        if reason is not None and reason.check(SSL.Error):
            try:
                from .tlsctx import client_verify_result
                verify_error = client_verify_result(self.transport.getHandle())[1]
            except Exception:  # noqa: BLE001 - the log line must not break the data path
                verify_error = None
        failure = tlserrors.classify(reason, verify_error) if reason is not None else tlserrors.eof()
        hooks = self.env.hooks
        hooks.error(failure.log_key, self.peer, vhost=label, **failure.log_fields())
        hooks.event("handshake_failed", label, failure, protocol=_offered(self.hello))

    # -- timers --------------------------------------------------------------------

    # One lazy DelayedCall per connection: a deadline is a number (`_deadline`, `_timer_kind`),
    # and the call is moved only when a deadline comes *sooner* than it is scheduled. A later
    # deadline (the common case: keep-alive -> header -> response -> keep-alive, body-idle
    # renewals) costs no reactor work: the call fires early and re-arms for the rest.
    # Disarming (`_disarm`) only forgets the kind. Was: a cancel and a new callLater per
    # request and per state, about 6% of a keep-alive worker's samples (docs/benchmarks.md).

    def adopt_timer(self, timer) -> None:
        """Take over a DelayedCall already scheduled for this connection (listeners.PortProtocol's
        handshake deadline, due no later than ours): one callLater per connection, not two."""
        if timer is not None and timer.active():
            timer.func = self._timeout
            timer.args, timer.kw = (), {}
            self._timer = timer

    def _set_timer(self, seconds: float, kind: str) -> None:
        self._deadline = self.env.reactor.seconds() + seconds
        self._timer_kind = kind
        timer = self._timer
        if timer is None:
            self._timer = self.env.reactor.callLater(seconds, self._timeout)
        elif timer.getTime() > self._deadline:
            timer.reset(seconds)

    def _disarm(self) -> None:
        """No deadline runs (the call, if scheduled, fires and finds nothing to do)."""
        self._timer_kind = ""

    def _cancel_timer(self) -> None:
        timer = self._timer
        if timer is not None and timer.active():
            timer.cancel()
        self._timer = None
        self._timer_kind = ""

    def _timeout(self) -> None:
        kind = self._timer_kind
        self._timer = None
        if not kind:
            return  # disarmed since it was scheduled
        remaining = self._deadline - self.env.reactor.seconds()
        if remaining > 1e-6:  # the deadline moved later: wait for the rest
            self._timer = self.env.reactor.callLater(remaining, self._timeout)
            return
        self._timer_kind = ""
        env = self.env
        label = self._default_site.label if self._default_site else "-"
        if kind == "handshake":
            env.hooks.error("handshake_timeout", self.peer, vhost=label,
                            seconds=f"{env.timeouts.client_handshake_seconds:g}")
            from . import tlserrors
            env.hooks.event("handshake_failed", label, tlserrors.timeout(env.timeouts.client_handshake_seconds),
                            protocol=_offered(self.hello))
            self._hs_timed_out = True
            self.transport.abortConnection()
        elif kind == "header":
            if self.reader.in_message:
                env.hooks.error("client_header_timeout", self.peer, vhost=label,
                                seconds=f"{env.timeouts.client_header_seconds:g}")
                env.hooks.event("request_rejected", label, 408)
                self._answer_and_close(408)
            else:
                self.transport.abortConnection()
        elif kind == "keepalive":
            self._close()
        elif kind == "body":
            env.hooks.error("bad_request", self.peer, vhost=label, status=408,
                            problem=f"no request body byte for {env.timeouts.client_body_idle_seconds:g}s")
            env.hooks.event("request_rejected", label, 408)
            if self.conn is not None:
                self.conn.detach()
                self.conn = None
            self._answer_and_close(408)
        elif kind == "response":
            self._backend_timeout("response headers", env.timeouts.backend_response_header_seconds)

    # -- client bytes -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return  # answered and closing: whatever still arrives is dropped
        if self._busy and self._req_done or self._queued:
            # Pipelined bytes wait for the running exchange; past a bound, stop reading.
            self._backlog.append(data)
            self._backlog_bytes += len(data)
            if self._backlog_bytes > BUFFER_LIMIT_BYTES:
                self._gate.pause("exchange")
            return
        if self._timer_kind == "keepalive":
            self._set_timer(self.env.timeouts.client_header_seconds, "header")
        try:
            events = self.reader.feed(data)
        except http1.ProtocolError as exc:
            if exc.events:  # pipelined requests before the fault: answer them first
                self._handle(exc.events + [exc])
            else:
                self._protocol_error(exc)
            return
        if events:
            self._handle(events)

    def _handle(self, events: list) -> None:
        for i, event in enumerate(events):
            if self._closing:
                return
            if type(event) is bytes:
                self._request_body(event)
            elif type(event) is http1.ProtocolError:
                self._protocol_error(event)
                return
            elif event is http1.END:
                self._request_end()
                if i + 1 < len(events):
                    self._queued = events[i + 1:]
                    return
            else:
                self._start_request(event)

    def _protocol_error(self, exc: http1.ProtocolError) -> None:
        label = (self.site or self._default_site).label if (self.site or self._default_site) else "-"
        self.env.hooks.error("bad_request", self.peer, vhost=label, problem=exc.detail, status=exc.status)
        self.env.hooks.event("request_rejected", label, exc.status)
        if self.conn is not None:
            self.conn.detach()
            self.conn = None
            if self._resp_head_sent:
                self._close(abort=True)
                return
        self._answer_and_close(exc.status, request_line="-")

    # -- request ---------------------------------------------------------------------

    def _start_request(self, req: http1.Request) -> None:
        env = self.env
        self._busy = True
        self.requests += 1
        self.req = req
        self._started_at = env.reactor.seconds()
        if req.has_body:
            self._set_timer(env.timeouts.client_body_idle_seconds, "body")
        else:
            self._disarm()
        site = self._default_site if self.tls else self.resolve(self.local_ip, self.local_port, req.host)
        if site is None:
            label = self._default_site.label if self._default_site else "-"
            env.hooks.event("request_rejected", label, 421)
            self._answer_and_close(421)
            return
        self.site = site
        quirks_rules = env.quirks
        if quirks_rules:
            self.quirks = quirks_rules.for_request(req.headers, self.peer[0], req.target)
            self._shutdown_mode = self.quirks.shutdown
        vhost = site.vhost
        if vhost.redirect_to_https:
            path = req.target if req.target[:1] == b"/" else b"/"  # "OPTIONS *" has no path to keep
            self._redirect(b"https://" + vhost.redirect_to_https.encode("idna") + path)
            return
        if site.suffix_redirects is not None:
            location = suffix_redirect(site, req.target)
            if location is not None:
                self._redirect(location)
                return
        if self._tls_headers is None:
            if site.tls_headers and self._facts is not None:
                self._tls_headers = tlsfacts.headers_for(self._facts, client_cert=site.client_cert)
            else:
                self._tls_headers = []
        fwd = _headers.forward_request_headers(
            req.headers, peer_ip=self._peer_ip, proto=site.proto, local_port=self._local_port_bytes,
            trusted=site.trusted and is_trusted(site, self.peer[0]), extra=self._tls_headers,
            default_host=site.host_header,
        )
        if req.chunked:
            fwd.append((b"Transfer-Encoding", b"chunked"))
        elif req.content_length is not None:
            fwd.append((b"Content-Length", b"%d" % req.content_length))
        if site.preserve_host:
            self._head = http1.request_head_bytes(req.method, req.target, fwd)
        else:
            self._fwd = fwd  # Host is the backend's: serialised once the backend is known
        self._order = site.upstream.order()
        self._next_backend()

    def _redirect(self, location: bytes) -> None:
        req = self.req
        extra = [(b"Location", location)]
        body = b"Moved Permanently: " + location + b"\n"
        self._keep = not req.has_body and req.keep_alive and self.quirks.keepalive
        self._req_done = not req.has_body
        self._write_simple(301, body, extra)

    def _next_backend(self) -> None:
        backend = self._order.pop(0)
        self.backend = backend
        self.env.pool.get(backend, self, self.site.label)

    def _request_body(self, data: bytes) -> None:
        self._bytes_in += len(data)
        if self._timer_kind == "body":
            self._deadline = self.env.reactor.seconds() + self.env.timeouts.client_body_idle_seconds
        conn = self.conn
        if conn is None:
            if not self._status:  # not connected yet: keep, and stop reading past a bound
                self._body_buffer.append(data)
                self._buffered += len(data)
                if self._buffered > BUFFER_LIMIT_BYTES:
                    self._gate.pause("connect")
            return  # already answered (error, redirect): the rest of the body is dropped
        if self.req.chunked:
            conn.transport.writeSequence(http1.chunk(data))
        else:
            conn.transport.write(data)

    def _request_end(self) -> None:
        self._req_done = True
        if self._timer_kind == "body":
            self._disarm()
        conn = self.conn
        if conn is not None:
            if self.req.chunked:
                conn.transport.write(http1.LAST_CHUNK)
            self._unregister_upload()
            if not self._resp_head_sent:
                self._set_timer(self.env.timeouts.backend_response_header_seconds, "response")
        elif self._status and self._resp is None and self._resp_head_sent and self._keep:
            # The proxy answered by itself (redirect) before the body ended.
            self._finish_exchange()

    # -- backend callbacks (backend.Sink) -------------------------------------------------

    def backend_connected(self, conn, backend, reused: bool) -> None:
        if self.req is None or self._closing or self._status:
            conn.release(True)
            return
        self.conn = conn
        self._reused = reused
        req = self.req
        if not self.site.preserve_host:
            # mod_proxy's ProxyPreserveHost Off: Host names the backend (X-Forwarded-Host keeps the client's).
            b = conn.backend
            host = (b"%s:%d" % (b.host.encode("idna"), b.port))
            self._head = http1.request_head_bytes(
                req.method, req.target, [(n, host) if n.lower() == b"host" else (n, v) for n, v in self._fwd])
        conn.send_head(self, req.method, self._head)
        self.env.hooks.event("backend_request", self.site.label, str(self.backend))
        transport = conn.transport
        # No 1xx to a client treated as HTTP/1.0 (RFC 9110 15.2; Apache's ap_send_interim_response).
        quirks = self.quirks
        if (req.expect_continue and not self._body_buffer and not self._req_done
                and not (quirks.downgrade_1_0 or quirks.force_response_1_0)):
            self.transport.write(_CONTINUE)
        if self._body_buffer:
            buffered, self._body_buffer = self._body_buffer, []
            if req.chunked:
                for data in buffered:
                    transport.writeSequence(http1.chunk(data))
            else:
                transport.writeSequence(buffered)
        if self._req_done:
            if req.chunked:
                transport.write(http1.LAST_CHUNK)
            self._set_timer(self.env.timeouts.backend_response_header_seconds, "response")
        else:
            transport.registerProducer(self._upload_pump, True)
            self._upload_registered = True
        self._gate.resume("connect")

    def backend_failed(self, backend, kind: str, detail: str) -> None:
        site = self.site
        label = site.label if site else "-"
        hooks = self.env.hooks
        if self.req is None or self._closing:
            return
        if kind == "refused" and self._order and self.conn is None and not self._resp_head_sent:
            # Nothing was sent: the next backend may take the request (issue 2).
            self.env.hooks.event("backend_error", label, str(backend), kind)
            self._next_backend()
            site.upstream.advance_past(self.backend)
            return
        if self.conn is not None:
            self._unregister_upload()
            self.conn = None
        hooks.event("backend_error", label, str(backend), kind)
        if kind == "timeout":
            hooks.error("backend_timeout", self.peer, backend=str(backend), vhost=label,
                        seconds=f"{self.env.timeouts.backend_connect_seconds:g}", phase="connect", status=504)
            self._answer_error(504)
        else:
            key = "backend_refused" if kind == "refused" else "backend_reset"
            hooks.error(key, self.peer, backend=str(backend), vhost=label, detail=detail, status=502)
            self._answer_error(502)

    def _backend_timeout(self, phase: str, seconds: float) -> None:
        site = self.site
        label = site.label if site else "-"
        conn, self.conn = self.conn, None
        if conn is not None:
            self._unregister_upload()
            conn.detach()
        self.env.hooks.event("backend_error", label, str(self.backend), "timeout")
        self.env.hooks.error("backend_timeout", self.peer, backend=str(self.backend), vhost=label,
                             seconds=f"{seconds:g}", phase=phase, status=504)
        self._answer_error(504)

    def backend_lost(self, reason: Failure, started: bool) -> None:
        self.conn = None
        self._unregister_upload()
        if self.req is None or self._closing:
            return
        resp = self._resp
        if resp is None:
            req = self.req
            if (self._reused and not started and self._retries < 2 and not req.has_body
                    and req.method in _IDEMPOTENT):
                # A kept-alive connection closed by the backend as we reused it
                # (the keep-alive race, RFC 9112 9.3.1): retry on another one.
                self._retries += 1
                self.env.pool.get(self.backend, self, self.site.label)
                return
            label = self.site.label if self.site else "-"
            self.env.hooks.event("backend_error", label, str(self.backend), "reset")
            self.env.hooks.error("backend_reset", self.peer, backend=str(self.backend), vhost=label,
                                 detail=reason.getErrorMessage() if reason else "connection lost", status=502)
            self._answer_error(502)
            return
        if resp.until_close:
            self.backend_end()
            return
        # Mid-body: the client cannot be told except by closing without the end.
        label = self.site.label if self.site else "-"
        self.env.hooks.error("backend_reset", self.peer, backend=str(self.backend), vhost=label,
                             detail=f"connection lost after {self._body_out} body bytes: "
                                    f"{reason.getErrorMessage() if reason else ''}", status=self._status)
        self._log_access()
        self._close(abort=True)

    def backend_head(self, resp: http1.Response) -> None:
        if self._timer_kind == "response":
            self._disarm()
        self._resp = resp
        req = self.req
        quirks = self.quirks
        out = _headers.forward_response_headers(resp.headers)
        # An HTTP/1.0 status line (force-response-1.0) cannot carry chunked either (RFC 9112 6.1).
        client_10 = req.version == b"1.0" or quirks.downgrade_1_0 or quirks.force_response_1_0
        keep = req.keep_alive and quirks.keepalive and self._req_done and not self._closing
        if resp.no_body:
            if resp.content_length is not None:
                out.append((b"Content-Length", b"%d" % resp.content_length))
        elif resp.content_length is not None:
            out.append((b"Content-Length", b"%d" % resp.content_length))
        elif not client_10:
            out.append((b"Transfer-Encoding", b"chunked"))
            self._out_chunked = True
        else:
            keep = False  # HTTP/1.0 without a length: the end is the close
        if keep:
            # An HTTP/1.0 request or response persists only with "keep-alive" (RFC 9112 9.3).
            if req.version == b"1.0" or quirks.force_response_1_0:
                out.append((b"Connection", b"keep-alive"))
        else:
            out.append((b"Connection", b"close"))
        hsts = self.site.hsts
        if hsts is not None:
            # The vhost's policy replaces the backend's: a UA reads only the first (RFC 6797 8.1).
            out = [h for h in out if h[0].lower() != b"strict-transport-security"]
            out.append(hsts)
        self._keep = keep
        self._status = resp.status
        version = b"1.0" if quirks.force_response_1_0 else b"1.1"
        head = http1.response_head_bytes(version, resp.status, resp.reason, out)
        self._bytes_out += len(head)
        self._resp_head_sent = True
        # Held until the end of this backend read (backend_flush, backend_end): the head and
        # the body bytes that came with it leave as one TLS record in one send.
        self._out = [head]
        if self.conn is not None:
            download = self._download
            if download is None:
                download = self._download = _Download()
                self.transport.registerProducer(download, True)
            download.attach(self.conn.transport)

    def backend_body(self, data: bytes) -> None:
        n = len(data)
        self._body_out += n
        out = self._out
        if self._out_chunked:
            self._bytes_out += n + 8
            if out is not None:
                out.extend(http1.chunk(data))
            else:
                self.transport.writeSequence(http1.chunk(data))
        else:
            self._bytes_out += n
            if out is not None:
                out.append(data)
            else:
                self.transport.write(data)

    def backend_flush(self) -> None:
        """The backend read is over: send what backend_head/backend_body held."""
        out = self._out
        if out is not None:
            self._out = None
            self.transport.writeSequence(out)  # one TLS record (both TLS layers join the pieces)

    def backend_end(self) -> None:
        if self._out_chunked:
            if self._out is not None:
                self._out.append(http1.LAST_CHUNK)
            else:
                self.transport.write(http1.LAST_CHUNK)
            self._bytes_out += 5
        self.backend_flush()
        conn, self.conn = self.conn, None
        if self._download is not None:
            self._download.detach()
        if conn is not None:
            self._unregister_upload(conn)
            # A connection whose request was not sent whole cannot be reused.
            conn.release(self._req_done)
        if not self._req_done:
            self._keep = False
        self._log_access()
        self._finish_exchange()

    # -- answers of our own ----------------------------------------------------------------

    def _answer_error(self, status: int) -> None:
        if self._resp_head_sent:
            self._log_access()
            self._close(abort=True)
            return
        self._keep = False
        self._write_simple(status, ERROR_BODIES.get(status, b"Error.\n"))

    def _write_simple(self, status: int, body: bytes, extra=None) -> None:
        http10 = self.quirks.force_response_1_0
        if http10 and self._keep:  # an HTTP/1.0 response persists only with "keep-alive" (RFC 9112 9.3)
            extra = [*(extra or ()), (b"Connection", b"keep-alive")]
        site = self.site
        if site is not None and site.hsts is not None:  # RFC 6797 7.1: every HTTPS response
            extra = [*(extra or ()), site.hsts]
        data = http1.simple_response(status, body, close=not self._keep, extra=extra,
                                     version=b"1.0" if http10 else b"1.1")
        self._status = status
        self._bytes_out += len(data)
        self._body_out += len(body)
        self._resp_head_sent = True
        self.transport.write(data)
        self._log_access()
        if self._keep and self._req_done:
            self._finish_exchange()
        elif not self._keep:
            self._close()

    def _answer_and_close(self, status: int, request_line: str | None = None) -> None:
        """Answer `status` (no request could be forwarded) and close."""
        self._keep = False
        self._status = status
        body = ERROR_BODIES.get(status, b"Error.\n")
        site = self.site or self._default_site
        hsts = [site.hsts] if site is not None and site.hsts is not None else None  # RFC 6797 7.1
        data = http1.simple_response(status, body, close=True, extra=hsts)
        self._bytes_out += len(data)
        self._resp_head_sent = True
        self.transport.write(data)
        self._log_access(request_line)
        self._close()

    # -- end of an exchange ----------------------------------------------------------------

    def _log_access(self, request_line: str | None = None) -> None:
        self._logged = True
        req = self.req
        site = self.site or self._default_site
        label = site.label if site else "-"
        hooks = self.env.hooks
        if hooks.request_lines_wanted():
            if request_line is None:
                if req is not None:
                    request_line = f"{req.method.decode('latin-1')} {req.target.decode('latin-1')} HTTP/{req.version.decode()}"
                else:
                    request_line = "-"
            ua = req.header(b"user-agent") if req is not None else None
            referer = req.header(b"referer") if req is not None else None
            hooks.access(label, self.peer[0], request_line, self._status, self._bytes_out, referer, ua,
                         self.quirks.names)
            if self.tls and self._facts is not None:
                hooks.ssl_request(self.peer[0], self._facts, request_line, self._body_out,
                                  self._handshake_seconds, label)
        hooks.event("request_done", label, self._status,
                    self.env.reactor.seconds() - getattr(self, "_started_at", 0.0),
                    self._bytes_in, self._bytes_out, self.quirks.names)

    def _unregister_upload(self, conn=None) -> None:
        if self._upload_registered:
            conn = conn or self.conn
            self._upload_registered = False
            if conn is not None and not conn.lost:
                conn.transport.unregisterProducer()
            self._gate.resume("upload")

    def drain(self) -> None:
        """Graceful stop: close now if idle between requests, else after the running exchange.

        A connection that has not sent its first request yet (accepted just before the
        stop, still in its TLS handshake) may make it: closing it would fail a request
        the client cannot know it may retry (a reload under load, issue 6). Its
        handshake/header timeouts and the grace period still bound it.
        """
        if not self._busy and self.requests:
            self._close()

    def _finish_exchange(self) -> None:
        if self._download is not None:
            self._download.detach()  # an exchange answered here after its backend was cut
        keep = self._keep and not self.env.draining
        mode = self.quirks.shutdown  # before the reset forgets this request's quirks
        self._reset_exchange()
        self._busy = False
        if not keep:
            self._close(mode=mode)
            return
        gate = self._gate
        if gate.reasons:
            gate.resume("connect")
            gate.resume("exchange")
        self._set_timer(self.env.timeouts.client_keepalive_seconds, "keepalive")
        queued, self._queued = self._queued, []
        if queued:
            self._set_timer(self.env.timeouts.client_header_seconds, "header")
            self._handle(queued)
        if self._backlog and not (self._busy and self._req_done) and not self._queued:
            backlog, self._backlog = self._backlog, []
            self._backlog_bytes = 0
            for data in backlog:
                self.dataReceived(data)

    def _close(self, abort: bool = False, mode: str | None = None) -> None:
        """Close after pending data, in the TLS shutdown mode of the request's quirks
        (shutdown.py), or at once (`abort`)."""
        if self._closing:
            return
        if not abort:
            self.backend_flush()  # a response's bytes held for this read go first
        self._closing = True
        self._cancel_timer()
        transport = self.transport
        download = self._download
        if download is not None:
            # Twisted's TLS layer sends close_notify only once no producer is registered.
            self._download = None
            download.detach()
            transport.unregisterProducer()
        if abort:
            transport.abortConnection()
            return
        mode = mode or self._shutdown_mode
        shutdown.close(transport, mode)
        if mode == shutdown.ACCURATE:
            self.env.reactor.callLater(ACCURATE_SHUTDOWN_WAIT_SECONDS, _abort_if_open, transport)


def _abort_if_open(transport) -> None:
    if getattr(transport, "connected", False) or not getattr(transport, "disconnected", True):
        transport.abortConnection()


class FrontendFactory(Factory):
    """Builds FrontendProtocols; `resolve(local_ip, local_port, host) -> Site | None`."""

    noisy = False

    def __init__(self, env: Env, resolve, tls: bool) -> None:
        self.env = env
        self.resolve = resolve
        self.tls = tls

    def buildProtocol(self, addr):
        proto = FrontendProtocol(self.env, self.resolve, self.tls)
        proto.factory = self
        return proto
