"""The worker side of the process model: runs in a child the master forked.

What the master hands over (all made before fork(), so every worker shares them):
the `Config`, the pyOpenSSL Contexts (same ticket keys in every worker: tickets resume
whichever worker accepts), the listening sockets of this worker's slot (`serve.Bound`),
the open log files (`logfiles.Logs`, O_APPEND: whole lines, never interleaved), a pipe
to say "ready", and the directory for metric snapshots.

Order in the child (`run`):

1. undo the master's process state: default signal handlers, no wakeup fd, close the
   descriptors that are not ours (other workers' sockets, the admin socket, the master's
   selector and pipes); SIGTERM/SIGINT from now on mean a graceful stop;
2. only now import the Twisted reactor (a reactor imported before fork() would share one
   epoll instance between processes) and build the `serve.Server`;
3. drop privileges (`server.user`/`group`) when started as root, after every module is
   imported (the unprivileged user may not be able to read the Python installation); the
   master keeps root to bind privileged ports and read keys again on reload, as Apache's
   and nginx's parents do. Then ask the kernel for SIGTERM when the master dies
   (PR_SET_PDEATHSIG, which a credential change would clear);
4. run: adopt the sockets (`Server.start`), write "R" to the ready pipe, serve until
   SIGTERM/SIGINT (stop accepting, finish in-flight exchanges up to
   `server.shutdown_grace_seconds`); SIGUSR1 reopens the logs; SIGHUP is the master's.

Metrics: the store is written to ``<dir>/worker-<pid>.json`` every second and at exit
(`metrics.SnapshotWriter`); the master sums the files on /metrics.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15  # the 15-byte name `top` and `ps -o comm` show
SNAPSHOT_INTERVAL_SECONDS = 1.0


@dataclass
class Handover:
    """Everything a worker gets from the master."""

    index: int
    generation: int
    config: Any  # model.Config
    contexts: dict
    bound: list  # list[serve.Bound]: this worker's sockets
    logs: Any  # logfiles.Logs, inherited
    ready_fd: int
    snapshot_dir: Path | None
    close_fds: list[int]
    uid: int | None = None
    gid: int | None = None


def _reset_process_state(h: Handover) -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the master's job
    for fd in h.close_fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _die_with_master(master_pid: int, name: str = "tlsfront worker") -> None:
    """SIGTERM (a graceful stop) when the master dies, even by SIGKILL. Called after the
    privileges are dropped: changing credentials clears the parent-death signal.
    Also names the process (`top`: "tlsfront w3")."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != master_pid:  # the master died before prctl()
        os._exit(1)


def _drop_privileges(uid: int | None, gid: int | None) -> None:
    if os.geteuid() != 0 or (uid is None and gid is None):
        return
    if gid is not None:
        os.setgroups([gid])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def run(h: Handover) -> int:
    """The worker's life. Returns the exit status (the caller passes it to os._exit)."""
    master_pid = os.getppid()
    _reset_process_state(h)
    from .serve import Server, _Signals

    signals = _Signals()  # SIGTERM from now on means a graceful stop (serve.py's handling)

    from . import eventloop

    eventloop.install()  # before anything imports twisted.internet.reactor
    from twisted.internet import reactor  # only now: see the module docstring
    from twisted.internet.task import LoopingCall

    from .frontend import Hooks
    from .metrics import Metrics, SnapshotWriter

    config = h.config
    logs = h.logs
    logs.set_scheduler(reactor.callLater)
    metrics = Metrics(config.vhosts)
    hooks = Hooks(logs, metrics)
    server = Server(reactor, config, h.contexts, h.bound, hooks=hooks, metrics=metrics)
    writer = SnapshotWriter(metrics, h.snapshot_dir) if h.snapshot_dir is not None else None

    def snapshot() -> None:
        try:
            writer.write()  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - an exception would end the LoopingCall for good
            pass  # e.g. the master's directory is gone: it is shutting down

    def stop(signame: str) -> None:
        d = server.graceful_stop(signame)
        d.addBoth(lambda _: reactor.stop())

    def running() -> None:
        server.start()
        try:
            os.write(h.ready_fd, b"R")
            os.close(h.ready_fd)
        except OSError:
            pass
        if writer is not None:
            LoopingCall(snapshot).start(SNAPSHOT_INTERVAL_SECONDS, now=True)
        signals.attach(reactor, stop, logs.reopen)

    reactor.callWhenRunning(running)
    # Everything is imported and built: the unprivileged user may not be able to read the
    # Python installation (a pyenv under /root), so nothing may be imported after this.
    _preload()
    if writer is not None:
        snapshot()  # also exercises the snapshot path once with every module at hand
    _drop_privileges(h.uid, h.gid)
    _die_with_master(master_pid, f"tlsfront w{h.index}")
    reactor.run(installSignalHandlers=False)
    if writer is not None:
        snapshot()
    logs.flush()
    return 0


# Modules the data path imports lazily (error paths, first use); loaded before the
# privileges are dropped.
PRELOAD = ("json", "traceback", "encodings.ascii", "encodings.latin_1", "encodings.idna",
           "encodings.utf_8", "twisted.internet.defer", "twisted.internet.task",
           "tlsfront.tlserrors", "tlsfront.tlsfacts", "tlsfront.sniff", "tlsfront.logformat",
           "tlsfront.http1", "tlsfront.headers", "tlsfront.quirks", "tlsfront.shutdown",
           "tlsfront.frontend", "tlsfront.listeners", "tlsfront.backend", "tlsfront.tlsctx")


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - a module renamed by its owner: not fatal here
            pass


def child_main(h: Handover) -> None:
    """Entry point right after fork(): never returns into the master's code."""
    status = 1
    try:
        status = run(h)
    except BaseException as exc:  # noqa: BLE001 - a worker must never fall back into the master loop
        try:
            import traceback

            sys.stderr.write(f"tlsfront worker {h.index} (pid {os.getpid()}): internal error: "
                             f"{type(exc).__name__}: {exc}\n")
            if os.environ.get("TLSFRONT_TRACEBACK"):
                traceback.print_exc()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(status)


def aux_main(setup: Any, close_fds: list[int], uid: int | None, gid: int | None) -> None:
    """A helper process with its own reactor for `extra_setup(reactor, None)` (the demo backend).

    SIGTERM (from the master, after the workers finished) stops it; SIGINT from the
    terminal is ignored so in-flight requests still reach the backend while workers drain.
    """
    status = 1
    try:
        master_pid = os.getppid()
        _reset_process_state(Handover(index=-1, generation=0, config=None, contexts={}, bound=[],
                                      logs=None, ready_fd=-1, snapshot_dir=None, close_fds=close_fds))
        from twisted.internet import reactor

        def started() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))

        setup(reactor, None)  # imports and binds with the master's privileges
        reactor.callWhenRunning(started)
        _preload()
        _drop_privileges(uid, gid)
        _die_with_master(master_pid, "tlsfront helper")
        reactor.run()
        status = 0
    except BaseException as exc:  # noqa: BLE001 - never fall back into the master loop
        try:
            sys.stderr.write(f"tlsfront helper (pid {os.getpid()}): {type(exc).__name__}: {exc}\n")
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(status)
