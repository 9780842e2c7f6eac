"""The master's worker table: which child runs in which slot of which generation, forking
workers (and the demo's helper), the "ready" pipe, reaping and restarting with back-off.

Mixed into `master.Master`, which owns the state these methods read and write
(`children`, `gen`, `pending`, `restarts`, `failures`, `sel`, ...); master.py's docstring
gives the theory of operation. Nothing here imports a reactor (the child does, in
worker.py, after the fork).

- A worker slot *i* of generation *g* is `Generation.slots[i]` (a pid or None); the pid's
  `Child` records when it started and whether it said "R" (ready) on its pipe.
- A worker that dies is restarted after `_backoff`: 0.25 s doubling to 30 s while workers
  of that slot keep dying within `STABLE_SECONDS`; e.g. 0.25, 0.5, 1, 2, 4, ... 30.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .affinity import Listener
from .model import Address, Config

BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 10.0  # a worker that lived this long resets the back-off
READY_TIMEOUT_SECONDS = 30.0  # new workers must adopt their sockets within this (reload, start)


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


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exit status {os.WEXITSTATUS(status)}"



class ChildrenMixin:
    """Forking, readiness, reaping and restarts; see the module docstring."""

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
