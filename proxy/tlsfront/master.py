"""The master process: reads the configuration, builds the TLS Contexts once, binds every
listener, forks the workers and looks after them (issue 6).

Theory of operation:

- **Before fork**: configuration, Contexts (pass phrases asked here, once), log files,
  listening sockets (affinity.py: one reuseport group per address for the shared session
  cache, or one socket every worker accepts on), the admin socket. Twisted's reactor is
  never imported here: a reactor imported before fork() shares one epoll instance with
  the children. The master's loop is `selectors` plus `signal.set_wakeup_fd`: one thread,
  so fork() never copies a lock held by another thread.
- **Workers** (worker.py) run `serve.Server` on the sockets of their slot. Worker *i*
  always gets socket *i* of every group, so a client address keeps its worker (and its
  sessions) across restarts.
- **A worker dies**: logged (TLSF0010), restarted after a back-off (0.25 s doubling to
  30 s while workers keep dying within `STABLE_SECONDS`). The master holds every socket,
  so connections routed to the dead worker's socket wait in its queue for the
  replacement instead of being reset.
- **SIGTERM/SIGINT**: forwarded; the workers stop accepting and finish in-flight
  exchanges up to `server.shutdown_grace_seconds`; the master closes its copies of the
  sockets (so new connections are refused once the workers let go), waits (grace + 5 s,
  then SIGKILL), removes the pid file. Exit status 0.
- **SIGHUP**: reload. The new configuration is loaded and its Contexts, logs and new
  sockets are made first; any problem is logged (TLSF0007) and the old workers keep
  serving. Otherwise a new generation of workers starts on the kept and new sockets;
  when every one of them has adopted its sockets ("ready" on a pipe), the old generation
  gets SIGTERM and drains. Both generations accept on the same sockets meanwhile, so no
  connection is refused. A new worker that dies before it is ready aborts the reload.
- **Ticket-key rotation** (`server.session_ticket_rotation_seconds`): the same rolling
  replacement with the same configuration and freshly built Contexts (new ticket keys;
  decrypted private keys are reused, no pass phrase is asked). docs/sessions.md.
- **SIGUSR1**: the master reopens its logs (chowning new files to the worker user when it
  drops privileges) and forwards the signal; each worker reopens its own.
- **/metrics** on `[admin] listen` is served here: the master's store (reloads, worker
  restarts, certificates, versions) plus every worker's snapshot file (metrics.py's
  `SnapshotCollector`), so counts from all workers are summed. `/healthz`, `/readyz` too.
"""

from __future__ import annotations

import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .affinity import BindFailure, open_listeners
# The parts live in master_*.py, privileges.py and pidfile.py; their public names stay
# importable from here (tests and cli.py use master.worker_count, master.Child, ...).
from .master_admin import AdminMixin, _bind_admin
from .master_children import (BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS,  # noqa: F401
                              READY_TIMEOUT_SECONDS, STABLE_SECONDS, Child, ChildrenMixin,
                              Generation, describe_status, worker_count)
from .master_reload import ReloadMixin
from .model import Config
from .pidfile import remove_pid_file, write_pid_file
from .privileges import chown, root_refusal, worker_ids

KILL_AFTER_GRACE_SECONDS = 5.0


class Master(ChildrenMixin, ReloadMixin, AdminMixin):
    """The master process; its parts are mixed in from master_children.py (the worker
    table), master_reload.py (SIGHUP, ticket rotation) and master_admin.py (/metrics)."""

    def __init__(self, config: Config, *, stderr: bool = False,
                 extra_setup: Callable[[Any, Any], None] | None = None,
                 announce: Callable[[Any], None] | None = None) -> None:
        self.config = config
        self.stderr = stderr
        self.extra_setup = extra_setup
        self.announce = announce
        self.sel = selectors.DefaultSelector()
        self.children: dict[int, Child] = {}
        self.gen: Generation | None = None
        self.pending: Generation | None = None  # a reload waiting for its workers
        self.pending_deadline = 0.0
        self.reload_again: str | None = None
        self.restarts: dict[tuple[str, int], float] = {}  # (kind, index) -> due time
        self.failures: dict[tuple[str, int], int] = {}
        self.aux_pid: int | None = None
        self.aux_stopped = False
        self.signals: list[int] = []
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_code = 0
        self.started = False
        self.start_deadline = 0.0
        self.next_rotation: float | None = None
        self.admin_sock: socket.socket | None = None
        self.admin_conns: dict[socket.socket, tuple[bytearray, float]] = {}
        self.snapshot_dir: Path | None = None
        self.uid: int | None = None
        self.gid: int | None = None
        self.wake_r: socket.socket | None = None
        self.wake_w: socket.socket | None = None
        self.metrics: Any = None
        self.registry: Any = None
        self.retired: dict[str, Any] = {"series": {}, "histograms": {}}

    # ------------------------------------------------------------------ start-up

    def prepare(self) -> int:
        """Everything before the first fork; returns 0, or 1 after printing the problem."""
        from . import keys, logfiles, tlsctx
        from .errors import ConfigErrors
        from .vhosts import VHostTable

        config = self.config
        loader = keys.KeyLoader()
        try:
            contexts, warnings = tlsctx.build_contexts_with_warnings(config, loader=loader)
        except ConfigErrors as exc:
            for w in exc.warnings:
                print(f"warning: {w}", file=sys.stderr)
            print(f"tlsfront: {exc}", file=sys.stderr)
            return 1
        for w in [*config.warnings, *warnings]:
            print(f"warning: {w}", file=sys.stderr)
        try:
            logs = logfiles.Logs.from_settings(config.server)
            if self.stderr and logs.stderr_file is None:
                logs = logfiles.Logs(config.server.error_log, config.server.access_log,
                                     config.server.ssl_request_log, config.server.log_level, True)
        except logfiles.LogFileError as exc:
            print(f"tlsfront: {exc}", file=sys.stderr)
            return 1
        n = worker_count(config)
        try:
            listeners, _notes = open_listeners(config, VHostTable(config.vhosts).bind_addresses(), n)
        except BindFailure as exc:
            print(f"tlsfront: {exc}", file=sys.stderr)
            logs.close()
            return 1
        try:
            self.uid, self.gid = worker_ids(config)
        except KeyError as exc:
            print(f"tlsfront: server.user/group: {exc}", file=sys.stderr)
            return 1
        refusal = root_refusal(config, self.uid, self.gid)
        if refusal:
            print(f"tlsfront: {refusal}", file=sys.stderr)
            self._close_listeners(listeners.values())
            logs.close()
            return 1
        self.gen = Generation(1, config, contexts, listeners, logs, n, loader)
        if config.admin.listen is not None:
            try:
                self.admin_sock = _bind_admin(config.admin.listen)
            except OSError as exc:
                from .errors import explain_bind_error
                print(f"tlsfront: [admin] {explain_bind_error(config.admin.listen, exc)}", file=sys.stderr)
                self._close_listeners(listeners.values())
                return 1
        self.snapshot_dir = Path(tempfile.mkdtemp(prefix="tlsfront-metrics-"))
        self._chown(self.snapshot_dir)
        self._chown_logs(logs)
        self._log_startup_facts(logs, config, warnings)
        from .metrics import Metrics
        self.metrics = Metrics(config.vhosts)
        self._build_registry()
        return 0

    @staticmethod
    def _log_startup_facts(logs: Any, config: Config, tls_warnings: list[str]) -> None:
        """PRNG seeding (TLSF0014), key permissions (TLSF0102), certificates near their end
        (TLSF0103), other configuration warnings (TLSF0106): startup_report.py."""
        from . import tlsctx
        from .startup_report import startup_lines

        for key, fields in startup_lines(config, tls_warnings, tlsctx.last_seed_result()):
            logs.error(key, **fields)

    def _chown(self, path: Path) -> None:
        chown(path, self.uid, self.gid)

    def _chown_logs(self, logs: Any) -> None:
        for f in logs.files:
            if f.path is not None:
                self._chown(f.path)

    def log(self, key: str, **fields: Any) -> None:
        gen = self.pending or self.gen
        if gen is not None:
            gen.logs.error(key, **fields)

    def run(self) -> int:
        status = self.prepare()
        if status:
            return status
        assert self.gen is not None
        pid_file = self.gen.config.server.pid_file
        write_pid_file(pid_file)
        self._install_signals()
        if self.admin_sock is not None:
            self.sel.register(self.admin_sock, selectors.EVENT_READ, self._admin_accept)
        if self.extra_setup is not None:
            self._fork_aux()
        for i in range(self.gen.workers):
            self._fork_worker(self.gen, i)
        self.start_deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        try:
            self._loop()
        finally:
            self._cleanup(pid_file)
        return self.exit_code

    # ------------------------------------------------------------------ loop

    def _loop(self) -> None:
        while True:
            for key, _events in self.sel.select(self._timeout()):
                key.data(key.fileobj)
            self._handle_signals()
            self._reap()
            self._timers()
            if self.stopping and not any(c.kind == "worker" for c in self.children.values()):
                if self.aux_pid is not None and self.aux_pid in self.children and not self.aux_stopped:
                    # The helper (demo backend) goes last: draining workers may still need it.
                    self.aux_stopped = True
                    self._signal(self.aux_pid, signal.SIGTERM)
                    self.stop_deadline = min(self.stop_deadline, time.monotonic() + KILL_AFTER_GRACE_SECONDS)
                if not self.children:
                    return

    def _timeout(self) -> float:
        now = time.monotonic()
        dues = [1.0]
        dues += [due - now for due in self.restarts.values()]
        if self.pending is not None:
            dues.append(self.pending_deadline - now)
        if self.stopping:
            dues.append(self.stop_deadline - now)
        if self.next_rotation is not None:
            dues.append(self.next_rotation - now)
        return max(0.0, min(dues))

    def _timers(self) -> None:
        now = time.monotonic()
        if self.stopping:
            if now >= self.stop_deadline:
                for pid in list(self.children):
                    self._signal(pid, signal.SIGKILL)
                self.stop_deadline = now + 60
            return
        for (kind, index), due in list(self.restarts.items()):
            if now >= due:
                del self.restarts[(kind, index)]
                if kind == "aux":
                    self._fork_aux()
                elif self.gen is not None and index < self.gen.workers and self.gen.slots[index] is None:
                    self.metrics.worker_restarted()
                    self._fork_worker(self.gen, index)
        if self.pending is not None and now >= self.pending_deadline:
            self._abort_reload(f"the new workers did not start within {READY_TIMEOUT_SECONDS:g}s")
        if not self.started and now >= self.start_deadline:
            print(f"tlsfront: the workers did not start within {READY_TIMEOUT_SECONDS:g}s", file=sys.stderr)
            self._begin_shutdown("startup failure", 1)
        if self.next_rotation is not None and now >= self.next_rotation and self.pending is None:
            self._reload(rotate=True)
        self._admin_expire(now)

    # ------------------------------------------------------------------ signals

    def _install_signals(self) -> None:
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._drain_wakeup)

        def handler(signum: int, frame: Any) -> None:
            self.signals.append(signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, handler)

    def _drain_wakeup(self, sock: socket.socket) -> None:
        try:
            while sock.recv(512):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    self._begin_shutdown(signal.Signals(sig).name, 0)
            elif sig == signal.SIGHUP and not self.stopping:
                if self.pending is not None or not self.started:
                    self.reload_again = "SIGHUP"
                else:
                    self._reload(rotate=False)
            elif sig == signal.SIGUSR1:
                self._reopen_logs()

    def _startup_complete(self) -> None:
        assert self.gen is not None
        self.started = True
        from .serve import _tlsfront_version, _versions
        self.log("startup", version=_tlsfront_version(), versions=_versions())
        self.metrics.config_loaded(True)
        self._schedule_rotation()
        if self.reload_again is not None:
            self.reload_again = None
            self._reload(rotate=False)
        if self.announce is not None:
            try:
                self.announce(None)
            except Exception as exc:  # noqa: BLE001 - printing the demo banner must not stop the proxy
                print(f"tlsfront: announce failed: {exc}", file=sys.stderr)

    @staticmethod
    def _close_listeners(listeners: Any) -> None:
        for listener in list(listeners):
            listener.close()

    # ------------------------------------------------------------------ logs, shutdown

    def _reopen_logs(self) -> None:
        for gen in (self.gen, self.pending):
            if gen is not None:
                gen.logs.reopen()
                self._chown_logs(gen.logs)
        for pid in list(self.children):
            self._signal(pid, signal.SIGUSR1)

    def _begin_shutdown(self, signame: str, code: int) -> None:
        assert self.gen is not None
        self.stopping = True
        self.exit_code = code
        grace = self.gen.config.server.shutdown_grace_seconds
        self.log("shutdown_begin", signal=signame, grace_seconds=f"{grace:g}")
        self.restarts.clear()
        for child in self.children.values():
            if child.kind == "worker":
                self._signal(child.pid, signal.SIGTERM)
        # Our copies of the sockets go now: once the workers let go, new connections are
        # refused instead of waiting in a queue nobody will accept from.
        for gen in (self.gen, self.pending):
            if gen is not None:
                self._close_listeners(gen.listeners.values())
        self.stop_deadline = time.monotonic() + grace + KILL_AFTER_GRACE_SECONDS

    def _cleanup(self, pid_file: Path | None) -> None:
        signal.set_wakeup_fd(-1)
        for conn in list(self.admin_conns):
            self._admin_close(conn)
        if self.admin_sock is not None:
            self.admin_sock.close()
        for gen in (self.gen, self.pending):
            if gen is not None:
                self._close_listeners(gen.listeners.values())
        remove_pid_file(pid_file)
        if self.snapshot_dir is not None:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)
        if self.gen is not None:
            self.log("shutdown_done")
            self.gen.logs.close()


def run(config: Config, *, stderr: bool = False, extra_setup: Callable[[Any, Any], None] | None = None,
        announce: Callable[[Any], None] | None = None) -> int:
    """Run the master until SIGTERM; returns the exit status.

    `extra_setup(reactor, None)` runs in a helper process with its own reactor (the demo
    starts its backend there); `announce(None)` runs once every worker is ready.
    """
    return Master(config, stderr=stderr, extra_setup=extra_setup, announce=announce).run()
