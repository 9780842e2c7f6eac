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

import json
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .affinity import BindFailure, Listener, open_listeners
from .model import Address, Config

BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 10.0  # a worker that lived this long resets the back-off
READY_TIMEOUT_SECONDS = 30.0  # new workers must adopt their sockets within this (reload, start)
KILL_AFTER_GRACE_SECONDS = 5.0
ADMIN_REQUEST_TIMEOUT_SECONDS = 5.0
ADMIN_MAX_REQUEST_BYTES = 16 * 1024


@dataclass
class Child:
    pid: int
    kind: str  # "worker" | "aux"
    index: int
    generation: int
    started: float
    ready_fd: int | None = None
    ready: bool = False


@dataclass
class Generation:
    """One configuration's workers, Contexts, logs and sockets."""

    number: int
    config: Config
    contexts: dict
    listeners: dict[Address, Listener]
    logs: Any  # logfiles.Logs
    workers: int
    loader: Any  # keys.KeyLoader
    slots: list[int | None] = field(default_factory=list)  # pid per worker index

    def __post_init__(self) -> None:
        if not self.slots:
            self.slots = [None] * self.workers


def worker_count(config: Config) -> int:
    return config.server.workers or os.cpu_count() or 1


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _ids(config: Config) -> tuple[int | None, int | None]:
    """uid/gid the workers switch to, when the master runs as root and `user`/`group` say so."""
    s = config.server
    if os.geteuid() != 0 or (s.user is None and s.group is None):
        return None, None
    import grp
    import pwd

    uid = gid = None
    if s.user is not None:
        pw = pwd.getpwnam(s.user)
        uid, gid = pw.pw_uid, pw.pw_gid
    if s.group is not None:
        gid = grp.getgrnam(s.group).gr_gid
    return uid, gid


def root_refusal(config: Config, worker_uid: int | None, worker_gid: int | None) -> str | None:
    """Why the workers must not start: `user`/`group` name root (uid/gid 0) while
    `allow_root` is false (Apache refuses `User root` unless built with BIG_SECURITY_HOLE).
    None when fine. (Neither `user` nor `group` set: the workers keep the master's
    credentials, as before; see docs/hardening.md.)"""
    if os.geteuid() != 0 or config.server.allow_root or (worker_uid != 0 and worker_gid != 0):
        return None
    s = config.server
    named = f"user = {s.user!r}" if worker_uid == 0 else f"group = {s.group!r}"
    return (f"refusing to serve as root: [server] {named} gives the workers "
            f"{'uid' if worker_uid == 0 else 'gid'} 0. Fix: set [server] user (and group) to an "
            f"unprivileged account such as \"www-data\", or set allow_root = true in [server] "
            f"to accept the risk.")


class Master:
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
            self.uid, self.gid = _ids(config)
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

    def _build_registry(self) -> None:
        from prometheus_client.registry import CollectorRegistry

        from .metrics import SnapshotCollector

        self.registry = CollectorRegistry()
        files = SnapshotCollector(self.snapshot_dir, self._live_worker_pids)
        self.snapshots = lambda: [self.retired, *files()]
        self.registry.register(self.metrics.collector(extra_snapshots=self.snapshots))

    def _retire_snapshot(self, pid: int) -> None:
        """Fold a dead worker's last snapshot into `self.retired` (its counters and
        histograms only: its gauges died with it) and delete the file, so counters never
        go backwards and the directory does not grow with every restart and reload."""
        from .metrics import _KIND, merge_snapshots

        assert self.snapshot_dir is not None
        path = self.snapshot_dir / f"worker-{pid}.json"
        try:
            snap = json.loads(path.read_text(encoding="ascii"))
        except (OSError, ValueError):
            return
        snap["series"] = {n: rows for n, rows in snap.get("series", {}).items() if _KIND.get(n) == "counter"}
        self.retired = merge_snapshots([self.retired, snap])
        try:
            path.unlink()
        except OSError:
            pass

    def _chown(self, path: Path) -> None:
        if self.uid is not None or self.gid is not None:
            try:
                os.chown(path, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)
            except OSError:
                pass

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
        if pid_file is not None:
            pid_file.write_text(f"{os.getpid()}\n")
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
        for conn, (_buf, deadline) in list(self.admin_conns.items()):
            if now >= deadline:
                self._admin_close(conn)

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

    def _signal(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    # ------------------------------------------------------------------ children

    def _master_fds(self) -> list[int]:
        """Descriptors a child must close: everything of the master's except its own slot."""
        fds: list[int] = []
        for gen in (self.gen, self.pending):
            if gen is not None:
                for listener in gen.listeners.values():
                    fds += listener.fds()
        if self.admin_sock is not None:
            fds.append(self.admin_sock.fileno())
        fds += [c.fileno() for c in self.admin_conns]
        for s in (self.wake_r, self.wake_w):
            if s is not None:
                fds.append(s.fileno())
        fds += [c.ready_fd for c in self.children.values() if c.ready_fd is not None]
        try:
            fds.append(self.sel.fileno())  # type: ignore[attr-defined]
        except (AttributeError, ValueError):
            pass
        return fds

    def _fork_worker(self, gen: Generation, index: int) -> None:
        from . import worker
        from .serve import Bound

        bound = [Bound(address, listener.sock_for(index)) for address, listener in gen.listeners.items()]
        mine = {b.sock.fileno() for b in bound}
        close = [fd for fd in self._master_fds() if fd not in mine]
        r, w = os.pipe()
        close.append(r)
        gen.logs.flush()
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN/ENOMEM: try again later, as for a worker that died
            os.close(r)
            os.close(w)
            delay = self._backoff(("worker", index), 0.0)
            gen.logs.error("worker_exited", worker=f"{index}/{gen.number}", worker_pid="-",
                           status=f"fork() failed: {exc.strerror or exc}", delay_seconds=f"{delay:g}")
            if gen is self.gen:
                self.restarts[("worker", index)] = time.monotonic() + delay
            elif gen is self.pending:
                self._abort_reload(f"fork() failed: {exc.strerror or exc}")
            return
        if pid == 0:
            worker.child_main(worker.Handover(
                index=index, generation=gen.number, config=gen.config, contexts=gen.contexts,
                bound=bound, logs=gen.logs, ready_fd=w, snapshot_dir=self.snapshot_dir,
                close_fds=close, uid=self.uid, gid=self.gid))
        os.close(w)
        os.set_blocking(r, False)
        child = Child(pid, "worker", index, gen.number, time.monotonic(), ready_fd=r)
        self.children[pid] = child
        gen.slots[index] = pid
        self.sel.register(r, selectors.EVENT_READ, lambda fd, c=child: self._ready_readable(c))
        gen.logs.error("worker_started", worker=f"{index}/{gen.number}", worker_pid=pid)

    def _fork_aux(self) -> None:
        from . import worker

        assert self.gen is not None
        close = self._master_fds()
        for listener in self.gen.listeners.values():
            close += listener.fds()
        pid = os.fork()
        if pid == 0:
            worker.aux_main(self.extra_setup, close, self.uid, self.gid)
        self.aux_pid = pid
        self.children[pid] = Child(pid, "aux", 0, 0, time.monotonic(), ready=True)

    def _ready_readable(self, child: Child) -> None:
        fd = child.ready_fd
        assert fd is not None
        try:
            data = os.read(fd, 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data.startswith(b"R"):
            child.ready = True
        self.sel.unregister(fd)
        os.close(fd)
        child.ready_fd = None
        if child.ready:
            self._worker_ready(child)

    def _worker_ready(self, child: Child) -> None:
        if child.kind != "worker" or child.pid not in self.children:
            return
        if self.pending is not None and child.generation == self.pending.number:
            if self._all_ready(self.pending):
                self._commit_reload()
        elif not self.started and self.gen is not None and child.generation == self.gen.number:
            if self._all_ready(self.gen):
                self._startup_complete()

    def _all_ready(self, gen: Generation) -> bool:
        return all(pid is not None and pid in self.children and self.children[pid].ready
                   for pid in gen.slots)

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

    def _schedule_rotation(self) -> None:
        assert self.gen is not None
        every = self.gen.config.server.session_ticket_rotation_seconds
        self.next_rotation = time.monotonic() + every if every > 0 else None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            if child.ready_fd is not None:
                try:
                    self.sel.unregister(child.ready_fd)
                except KeyError:
                    pass
                os.close(child.ready_fd)
                child.ready_fd = None
            if child.kind == "worker" and self.snapshot_dir is not None:
                self._retire_snapshot(child.pid)
            self._child_exited(child, status)

    def _backoff(self, key: tuple[str, int], lived: float) -> float:
        if lived >= STABLE_SECONDS:
            self.failures[key] = 0
        n = self.failures.get(key, 0)
        self.failures[key] = n + 1
        return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * (2 ** n))

    def _child_exited(self, child: Child, status: int) -> None:
        now = time.monotonic()
        if child.kind == "aux":
            self.aux_pid = None
            if not self.started and not self.stopping:
                print(f"tlsfront: the helper process (pid {child.pid}) exited during start-up "
                      f"({describe_status(status)})", file=sys.stderr)
                self._begin_shutdown("startup failure", 1)
            elif not self.stopping:
                delay = self._backoff(("aux", 0), now - child.started)
                self.log("worker_exited", worker="aux", worker_pid=child.pid,
                         status=describe_status(status), delay_seconds=f"{delay:g}")
                self.restarts[("aux", 0)] = now + delay
            return
        gen = self.gen
        if self.pending is not None and child.generation == self.pending.number:
            self.pending.slots[child.index] = None
            self._abort_reload(f"new worker {child.index} (pid {child.pid}) exited before it was ready: "
                               f"{describe_status(status)}")
            return
        if gen is None or child.generation != gen.number or gen.slots[child.index] != child.pid:
            return  # an old generation's worker finished draining
        gen.slots[child.index] = None
        if self.stopping:
            return
        if not self.started:
            self.log("worker_start_failed", worker=f"{child.index}/{child.generation}", worker_pid=child.pid,
                     status=describe_status(status))
            print(f"tlsfront: worker {child.index} (pid {child.pid}) exited during start-up "
                  f"({describe_status(status)}); see the error log", file=sys.stderr)
            self._begin_shutdown("startup failure", 1)
            return
        delay = self._backoff(("worker", child.index), now - child.started)
        self.log("worker_exited", worker=f"{child.index}/{child.generation}", worker_pid=child.pid,
                 status=describe_status(status), delay_seconds=f"{delay:g}")
        self.restarts[("worker", child.index)] = now + delay

    def _live_worker_pids(self) -> list[int]:
        return [c.pid for c in self.children.values() if c.kind == "worker"]

    # ------------------------------------------------------------------ reload and rotation

    def _reload(self, rotate: bool) -> None:
        from . import config as config_mod
        from . import keys, logfiles, tlsctx
        from .errors import ConfigErrors
        from .vhosts import VHostTable

        old = self.gen
        assert old is not None
        path = old.config.path
        if rotate:
            self.next_rotation = None
        else:
            self.log("reload_begin", path=path)
        try:
            if rotate:
                config, loader = old.config, old.loader
            else:
                config = config_mod.load(path)
                loader = keys.KeyLoader(known=list(getattr(old.loader, "known", [])))
            contexts, _warnings = tlsctx.build_contexts_with_warnings(config, loader=loader)
            if config.server == old.config.server or rotate:
                logs = old.logs
            else:
                logs = logfiles.Logs.from_settings(config.server)
                self._chown_logs(logs)
            listeners, notes = open_listeners(config, VHostTable(config.vhosts).bind_addresses(),
                                              old.workers, keep=old.listeners)
        except (ConfigErrors, logfiles.LogFileError, BindFailure, OSError) as exc:
            self.log("reload_failed", error=_one_line(str(exc)))
            self.metrics.config_loaded(False)
            if rotate:
                self._schedule_rotation()
            return
        if worker_count(config) != old.workers:
            notes.append(f"workers = {worker_count(config)} takes effect at the next restart "
                         f"({old.workers} workers keep running)")
        for name, before, after in (("[admin] listen", old.config.admin.listen, config.admin.listen),
                                    ("server.pid_file", old.config.server.pid_file, config.server.pid_file),
                                    ("server.user/group", (old.config.server.user, old.config.server.group),
                                     (config.server.user, config.server.group))):
            if before != after:
                notes.append(f"{name} changed: takes effect at the next restart")
        if not rotate:
            self._log_startup_facts(logs, config, _warnings)
        for note in notes:
            self.log("reload_partial", detail=note)
        gen = Generation(old.number + 1, config, contexts, listeners, logs, old.workers, loader)
        gen.rotation = rotate  # type: ignore[attr-defined]
        self.pending = gen
        self.pending_deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for i in range(gen.workers):
            if self.pending is not gen:
                break  # a fork failed: the reload was aborted
            self._fork_worker(gen, i)

    def _commit_reload(self) -> None:
        old, new = self.gen, self.pending
        assert old is not None and new is not None
        self.gen, self.pending = new, None
        for pid in old.slots:
            if pid is not None:
                self._signal(pid, signal.SIGTERM)
        for key in [k for k in self.restarts if k[0] == "worker"]:
            del self.restarts[key]
        self._close_listeners(l for a, l in old.listeners.items() if new.listeners.get(a) is not l)
        if new.logs is not old.logs:
            old.logs.close()
        rotation = getattr(new, "rotation", False)
        self.metrics.set_vhosts(new.config.vhosts)
        if not rotation:
            self.metrics.config_loaded(True)
        if rotation:
            self.log("tickets_rotated", vhosts=sum(1 for v in new.config.vhosts if v.is_tls))
        else:
            self.log("reload_done", path=new.config.path, vhosts=len(new.config.vhosts))
        self._schedule_rotation()
        if self.reload_again is not None:
            self.reload_again = None
            self._reload(rotate=False)

    def _abort_reload(self, why: str) -> None:
        new = self.pending
        assert new is not None and self.gen is not None
        self.pending = None
        for pid in new.slots:
            if pid is not None:
                self._signal(pid, signal.SIGTERM)
        self._close_listeners(l for a, l in new.listeners.items() if self.gen.listeners.get(a) is not l)
        self.gen.logs.error("reload_failed", error=_one_line(why))
        if new.logs is not self.gen.logs:
            new.logs.close()
        self.metrics.config_loaded(False)
        self._schedule_rotation()

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
        if pid_file is not None:
            try:
                pid_file.unlink()
            except OSError:
                pass
        if self.snapshot_dir is not None:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)
        if self.gen is not None:
            self.log("shutdown_done")
            self.gen.logs.close()

    # ------------------------------------------------------------------ admin: /metrics /healthz /readyz

    def _admin_accept(self, sock: socket.socket) -> None:
        try:
            conn, _addr = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        conn.setblocking(False)
        self.admin_conns[conn] = (bytearray(), time.monotonic() + ADMIN_REQUEST_TIMEOUT_SECONDS)
        self.sel.register(conn, selectors.EVENT_READ, self._admin_read)

    def _admin_close(self, conn: socket.socket) -> None:
        self.admin_conns.pop(conn, None)
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _admin_read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._admin_close(conn)
            return
        buf, _deadline = self.admin_conns[conn]
        buf += data
        if b"\r\n\r\n" not in buf and b"\n\n" not in buf and len(buf) < ADMIN_MAX_REQUEST_BYTES:
            return
        response = self._admin_response(bytes(buf))
        self.sel.unregister(conn)
        self.admin_conns.pop(conn, None)
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)  # loopback scrapers read at once; never let one stall the master
            conn.sendall(response)
        except OSError:
            pass
        finally:
            conn.close()

    def _admin_response(self, request: bytes) -> bytes:
        head = request.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _http(400, "text/plain; charset=utf-8", b"bad request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if method not in (b"GET", b"HEAD"):
            return _http(405, "text/plain; charset=utf-8", b"only GET and HEAD\n", head_only=False,
                         extra=b"Allow: GET, HEAD\r\n")
        head_only = method == b"HEAD"
        if target == b"/metrics":
            from prometheus_client.exposition import choose_encoder
            encoder, content_type = choose_encoder(headers.get(b"accept", b"").decode("latin-1"))
            return _http(200, content_type, encoder(self.registry), head_only)
        if target == b"/healthz":
            body = {"status": "ok", "pid": os.getpid(), "workers": len(self._live_worker_pids())}
            return _http(200, "application/json", json.dumps(body, sort_keys=True).encode() + b"\n", head_only)
        if target == b"/readyz":
            state = self._readiness()
            return _http(200 if state.ready else 503, "application/json",
                         json.dumps(state.as_json(), sort_keys=True).encode() + b"\n", head_only)
        if target == b"/":
            return _http(200, "text/plain; charset=utf-8", b"tlsfront admin: /metrics /healthz /readyz\n", head_only)
        return _http(404, "text/plain; charset=utf-8",
                     b"Not found. This is the tlsfront admin listener: /metrics, /healthz, /readyz.\n", head_only)

    def _readiness(self) -> Any:
        from .admin import BackendState, ListenerState, Readiness
        from .affinity import vhosts_on
        from .metrics import merge_snapshots

        gen = self.gen
        assert gen is not None
        ready_workers = sum(1 for pid in gen.slots if pid in self.children and self.children[pid].ready)
        listeners = []
        for address, listener in gen.listeners.items():
            for v in vhosts_on(gen.config, address):
                listeners.append(ListenerState(str(v.listen), v.label,
                                               bool(listener.socks) and ready_workers > 0 and not self.stopping))
        merged = merge_snapshots([self.metrics.snapshot(), *self.snapshots()])
        backends = tuple(BackendState(k[0], k[1], v >= 1.0)
                         for k, v in merged["series"].get("backend_up", []))
        return Readiness(tuple(listeners), backends,
                         {"workers": {"configured": gen.workers, "ready": ready_workers,
                                      "pids": list(gen.slots)},
                          "generation": gen.number})


def _http(status: int, content_type: str, body: bytes, head_only: bool = False, extra: bytes = b"") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
              503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n").encode()
    return head + extra + b"\r\n" + (b"" if head_only else body)


def _bind_admin(address: Address) -> socket.socket:
    host = "0.0.0.0" if address.is_wildcard else address.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, address.port))
        sock.listen(64)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def run(config: Config, *, stderr: bool = False, extra_setup: Callable[[Any, Any], None] | None = None,
        announce: Callable[[Any], None] | None = None) -> int:
    """Run the master until SIGTERM; returns the exit status.

    `extra_setup(reactor, None)` runs in a helper process with its own reactor (the demo
    starts its backend there); `announce(None)` runs once every worker is ready.
    """
    return Master(config, stderr=stderr, extra_setup=extra_setup, announce=announce).run()
