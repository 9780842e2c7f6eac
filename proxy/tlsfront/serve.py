"""`tlsfront serve`: bind, build the TLS contexts, then run the reactor.

Order matters for the process model (issue 6): every listening socket is a
plain `socket` bound here *before* `twisted.internet.reactor` is imported;
the reactor then adopts the file descriptors (`adoptStreamPort`). A master can
thus bind and build Contexts once, fork workers, and each worker adopts the
same fds with its own reactor (importing the reactor before fork() would share
one epoll instance between the workers).

`run()` hands over to the master (master.py: `server.workers` processes, SIGHUP reload,
the shared session cache of docs/sessions.md); each worker (worker.py) runs `Server`.
`run(..., single_process=True)` keeps the in-process path below.

Signals: SIGTERM/SIGINT stop accepting, let running exchanges finish (up to
`server.shutdown_grace_seconds`), then exit; SIGUSR1 reopens the log files
(logrotate's postrotate).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass

from .model import Address, Config

LISTEN_BACKLOG = 1024


class BindError(Exception):
    """A listening socket could not be opened; the message explains and gives the fix."""


@dataclass
class Bound:
    address: Address
    sock: socket.socket

    @property
    def family(self) -> int:
        return self.sock.family


def bind(address: Address, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A non-blocking listening socket for `address` ("*" is every IPv4 address)."""
    host = "0.0.0.0" if address.is_wildcard else address.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, address.port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_all(addresses: list[Address]) -> list[Bound]:
    """Bind every address or none (closing those already bound); BindError explains."""
    bound: list[Bound] = []
    for address in addresses:
        try:
            bound.append(Bound(address, bind(address)))
        except OSError as exc:
            for b in bound:
                b.sock.close()
            try:
                from .errors import explain_bind_error
                message = explain_bind_error(address, exc)
            except ImportError:  # pragma: no cover
                message = f"cannot listen on {address}: {exc}"
            raise BindError(message) from None
    return bound


class Server:
    """One process's proxy: listeners, pool, hooks. The reactor is injected."""

    def __init__(self, reactor, config: Config, contexts: dict, bound: list[Bound], *,
                 hooks=None, metrics=None) -> None:
        from .backend import Pool
        from .frontend import Env, Hooks
        from .listeners import ListenerFactory, build_sites
        from .quirks import QuirkRules
        from .vhosts import VHostTable

        self.reactor = reactor
        self.config = config
        self.bound = bound
        self.metrics = metrics
        self.hooks = hooks or Hooks(metrics=metrics)
        self.table = VHostTable(config.vhosts)
        self.pool = Pool(reactor, config.timeouts, on_down=self._backend_down, on_up=self._backend_up,
                         on_in_use=self._backend_in_use)
        self.env = Env(reactor, self.pool, self.hooks, config.timeouts, config.limits,
                       QuirkRules(config.quirks))
        self.sites = build_sites(self.env, config.vhosts)
        self.factory = ListenerFactory(self.env, self.table, self.sites, contexts)
        self.ports: list = []
        self._stopping = False

    def _vhosts_of(self, backend):
        return [v for v in self.config.vhosts if backend in v.backends]

    def _backend_down(self, backend, seconds: float) -> None:
        for v in self._vhosts_of(backend):
            self.hooks.error("backend_down", None, backend=str(backend), vhost=v.label, seconds=f"{seconds:g}")
            self.hooks.event("backend_up", v.label, str(backend), False)

    def _backend_up(self, backend) -> None:
        for v in self._vhosts_of(backend):
            self.hooks.error("backend_up", None, backend=str(backend), vhost=v.label)
            self.hooks.event("backend_up", v.label, str(backend), True)

    def _backend_in_use(self, vhost: str, backend, n: int) -> None:
        if vhost:
            self.hooks.event("backend_connections", vhost, str(backend), n)

    def start(self) -> None:
        for b in self.bound:
            port = self.reactor.adoptStreamPort(b.sock.fileno(), b.family, self.factory)
            self.ports.append(port)
            b.sock.close()  # the reactor holds its own duplicate of the fd
            vhosts = [v for v in self.config.vhosts if v.listen == b.address
                      or (b.address.is_wildcard and v.listen.port == b.address.port)]
            for v in vhosts:
                self.hooks.error("listening", None, address=str(v.listen),
                                 scheme="https" if v.is_tls else "http", vhost=v.label)

    def start_admin(self):
        """/healthz, /readyz, /metrics on [admin] listen (admin.py)."""
        from prometheus_client.registry import CollectorRegistry

        from . import admin

        registry = CollectorRegistry(auto_describe=True)
        if self.metrics is not None:
            registry.register(self.metrics.collector())
        site = admin.make_site(registry, self.readiness)
        address = self.config.admin.listen
        host = "0.0.0.0" if address.is_wildcard else address.host
        port = admin.listen_admin(self.reactor, host, address.port, site)
        self.ports.append(port)
        return port

    def readiness(self):
        from . import admin

        listeners = tuple(admin.ListenerState(str(v.listen), v.label, bool(self.ports))
                          for v in self.config.vhosts)
        now = self.reactor.seconds()
        backends = tuple(admin.BackendState(v.label, str(b), not self.pool.is_down(b, now))
                         for v in self.config.vhosts for b in v.backends)
        return admin.Readiness(listeners, backends)

    def graceful_stop(self, signame: str = "SIGTERM"):
        """Stop accepting; finish running exchanges; resolve when all are done (or grace ends)."""
        from twisted.internet import defer

        if self._stopping:
            return defer.succeed(None)
        self._stopping = True
        grace = self.config.server.shutdown_grace_seconds
        self.hooks.error("shutdown_begin", None, signal=signame, grace_seconds=f"{grace:g}")
        for port in self.ports:
            port.stopListening()
        self.env.draining = True
        for proto in list(self.env.active):
            proto.drain()
        self.pool.close_idle()
        done = defer.Deferred()
        deadline = self.reactor.seconds() + grace

        def poll() -> None:
            if not self.env.active or self.reactor.seconds() >= deadline:
                for proto in list(self.env.active):
                    proto.transport.abortConnection()
                self.hooks.error("shutdown_done", None)
                done.callback(None)
            else:
                self.reactor.callLater(0.05, poll)

        poll()
        return done


def _versions() -> str:
    import OpenSSL
    import twisted
    from cryptography.hazmat.backends.openssl.backend import backend
    return (f"Python/{sys.version.split()[0]} Twisted/{twisted.__version__} "
            f"pyOpenSSL/{OpenSSL.__version__} {backend.openssl_version_text()}")


def run(config: Config, *, stderr: bool = False, extra_setup=None, announce=None,
        single_process: bool = False) -> int:
    """Bind, build contexts, serve until SIGTERM. Returns the exit code.

    `extra_setup(reactor, server)` runs once the server is built (demo.py starts its
    backend there); `announce(server)` runs once listening.

    By default the master process runs (master.py: workers, reload, shared session
    cache; `extra_setup` then runs in a helper process with server=None, `announce`
    gets None); `single_process=True` keeps everything in this process (no SIGHUP).
    """
    if not single_process:
        from . import master
        return master.run(config, stderr=stderr, extra_setup=extra_setup, announce=announce)
    from .vhosts import VHostTable

    # Signals first: a SIGTERM that arrives while we start must still mean a
    # clean stop, not death by the default action.
    signals = _Signals()
    table = VHostTable(config.vhosts)
    try:
        bound = bind_all(table.bind_addresses())
    except BindError as exc:
        print(f"tlsfront: {exc}", file=sys.stderr)
        return 1
    try:
        from . import tlsctx
        contexts, tls_warnings = tlsctx.build_contexts_with_warnings(config)
    except Exception as exc:  # ConfigErrors: one paragraph per problem, no traceback
        for b in bound:
            b.sock.close()
        print(f"tlsfront: {exc}", file=sys.stderr)
        return 1

    from .logfiles import LogFileError, Logs

    s = config.server
    try:
        logs = Logs(s.error_log, s.access_log, s.ssl_request_log, s.log_level, s.log_stderr or stderr)
    except LogFileError as exc:
        for b in bound:
            b.sock.close()
        print(f"tlsfront: {exc}", file=sys.stderr)
        return 1

    from twisted.internet import reactor  # only now: see the module docstring

    logs.set_scheduler(reactor.callLater)
    from .startup_report import startup_lines

    for key, fields in startup_lines(config, tls_warnings, tlsctx.last_seed_result()):
        logs.error(key, **fields)
    from .metrics import Metrics

    metrics = Metrics(config.vhosts)
    from .frontend import Hooks

    hooks = Hooks(logs, metrics)
    server = Server(reactor, config, contexts, bound, hooks=hooks, metrics=metrics)
    if extra_setup is not None:
        extra_setup(reactor, server)
    server.start()
    if config.admin.listen is not None:
        try:
            server.start_admin()
        except Exception as exc:  # noqa: BLE001 - CannotListenError: explain, no traceback
            print(f"tlsfront: cannot listen on [admin] {config.admin.listen}: {exc}\n"
                  f"  fix: free that port or change [admin] listen", file=sys.stderr)
            logs.close()
            return 1
    metrics.config_loaded(True)
    pid_file = config.server.pid_file
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
    hooks.error("startup", None, version=_tlsfront_version(), versions=_versions())

    def stop(name: str) -> None:
        d = server.graceful_stop(name)
        d.addBoth(lambda _: reactor.stop())

    def running() -> None:
        if announce is not None:
            announce(server)
        signals.attach(reactor, stop, logs.reopen)

    reactor.callWhenRunning(running)
    reactor.run(installSignalHandlers=False)
    logs.flush()
    logs.close()
    if pid_file is not None:
        try:
            pid_file.unlink()
        except OSError:
            pass
    return 0


class _Signals:
    """SIGTERM/SIGINT -> graceful stop, SIGUSR1 -> reopen logs; remembered until the reactor runs.

    Twisted's own handlers are not installed (reactor.run(installSignalHandlers=False)):
    its SIGTERM handler stops the reactor at once, without draining.
    """

    def __init__(self) -> None:
        self.reactor = None
        self.pending_stop: str | None = None
        self.pending_reopen = False
        self._stop = self._reopen = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_term)
        signal.signal(signal.SIGUSR1, self._on_usr1)

    def attach(self, reactor, stop, reopen) -> None:
        self.reactor, self._stop, self._reopen = reactor, stop, reopen
        if self.pending_stop is not None:
            stop(self.pending_stop)
        elif self.pending_reopen:
            reopen()

    def _on_term(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.reactor is None:
            self.pending_stop = name
        else:
            self.reactor.callFromThread(self._stop, name)

    def _on_usr1(self, signum, frame) -> None:
        if self.reactor is None:
            self.pending_reopen = True
        else:
            self.reactor.callFromThread(self._reopen)


def _tlsfront_version() -> str:
    from . import __version__
    return __version__


def main(config: Config, args) -> int:
    """Entry point from `tlsfront serve -c FILE [--stderr]` (cli.py)."""
    return run(config, stderr=bool(getattr(args, "stderr", False)))

