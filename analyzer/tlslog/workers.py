"""``--jobs N`` on Linux: N processes (this one and N-1 forks) take work units from one shared queue.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: measured on the two 372 MB files of issue 3 (docs/
analyzer-speed.md, round of task h20), the pool's start and its threads cost the parent CPU that competes with the
workers on a 2-core machine, and every unit and result crosses its queues. Here:

- the units are in memory before the fork, so nothing is sent to a worker: the queue is one shared counter (an
  anonymous shared ``mmap``) behind a one-byte pipe used as a lock;
- this process is worker 0: with two jobs only one process is forked, and its own results are never pickled;
- a forked worker pickles all its results once, after its last unit, into its own pipe (a worker that wrote each
  result as it came would block on a full pipe while this process is busy with its own unit);
- progress: each process adds the bytes it has scanned to its own slot of the shared ``mmap``; :func:`done_bytes`
  sums them (for the progress bar).

A worker never returns into the caller's code: it ends with ``os._exit`` (no atexit handlers, no stdio flush of
buffers it inherited). An exception in a worker is sent back as text and raised here as :class:`WorkerError`; a
worker that dies (killed, out of memory) is reported with its exit status. Interrupted (Ctrl-C), this process kills
and reaps its workers before the ``KeyboardInterrupt`` goes on.
"""

from __future__ import annotations

import mmap
import os
import pickle
import select
import signal
import struct
import traceback
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_SLOT = struct.Struct("q")


class WorkerError(RuntimeError):
    """A worker process failed (a bug, or it was killed): the message says which and how."""


class _State:
    """The shared counters of one run: slot 0 is the next unit to take, slot 1 + w the bytes worker w scanned."""

    def __init__(self, jobs: int) -> None:
        self.mem = mmap.mmap(-1, _SLOT.size * (1 + jobs))  # anonymous and MAP_SHARED: seen by the forks
        self.jobs = jobs
        self.worker = 0
        self.lock_r, self.lock_w = os.pipe()
        os.write(self.lock_w, b"x")

    def take(self) -> int:
        os.read(self.lock_r, 1)  # one byte in the pipe: whoever reads it holds the lock
        try:
            (i,) = _SLOT.unpack_from(self.mem, 0)
            _SLOT.pack_into(self.mem, 0, i + 1)
        finally:
            os.write(self.lock_w, b"x")
        return i

    def add(self, n: int) -> None:
        off = _SLOT.size * (1 + self.worker)  # this process's slot: one writer, no lock
        _SLOT.pack_into(self.mem, off, _SLOT.unpack_from(self.mem, off)[0] + n)

    def done(self) -> int:
        return sum(_SLOT.unpack_from(self.mem, _SLOT.size * (1 + w))[0] for w in range(self.jobs))

    def close(self) -> None:
        os.close(self.lock_r)
        os.close(self.lock_w)
        self.mem.close()


_state: _State | None = None


def add_bytes(n: int) -> None:
    """Count ``n`` bytes scanned by this process (progress); nothing outside :func:`run`."""
    if _state is not None:
        _state.add(n)


def done_bytes() -> int:
    """Bytes scanned so far by all the processes of the current :func:`run` (0 outside it)."""
    return _state.done() if _state is not None else 0


def _work(state: _State, fn: Callable[[T], R], items: Sequence[T]) -> list[tuple[int, R]]:
    out = []
    while True:
        i = state.take()
        if i >= len(items):
            return out
        out.append((i, fn(items[i])))


def _child(state: _State, fn: Callable[[T], R], items: Sequence[T], w: int, fd: int) -> None:
    """Body of a forked worker: run units until the queue is empty, send the results, exit. Never returns."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it, the worker just ends
        state.worker = w
        payload = pickle.dumps((True, _work(state, fn, items)), pickle.HIGHEST_PROTOCOL)
    except BaseException:  # noqa: BLE001 - everything goes back to the parent as text
        status = 1
        payload = pickle.dumps((False, traceback.format_exc()), pickle.HIGHEST_PROTOCOL)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        status = 1
    os._exit(status)


def _collect(readers: dict[int, int], on_wait: Callable[[], None] | None) -> dict[int, bytes]:
    """Read every worker's pipe to its end; ``on_wait`` is called about 5 times a second while waiting."""
    data = {fd: bytearray() for fd in readers}
    open_fds = set(readers)
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [], 0.2)
        for fd in ready:
            chunk = os.read(fd, 1 << 20)
            if chunk:
                data[fd] += chunk
            else:
                open_fds.discard(fd)
        if on_wait is not None:
            on_wait()
    return {readers[fd]: bytes(b) for fd, b in data.items()}


def run(fn: Callable[[T], R], items: Sequence[T], jobs: int, *,
        on_wait: Callable[[], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on ``jobs`` processes (this one included), items taken in order as workers get
    free. ``fn`` and the results must be picklable only in the sense that results are (fork shares the rest)."""
    global _state
    jobs = max(1, min(jobs, len(items)))
    state = _State(jobs)
    readers: dict[int, int] = {}  # read end -> pid
    results: list = [None] * len(items)
    _state = state
    try:
        for w in range(1, jobs):
            r, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                os.close(r)
                for fd in readers:
                    os.close(fd)
                _child(state, fn, items, w, wfd)
            os.close(wfd)
            readers[r] = pid
        for i, res in _work(state, fn, items):
            results[i] = res
        payloads = _collect(readers, on_wait)
        for fd, pid in list(readers.items()):
            os.close(fd)
            del readers[fd]
            _, status = os.waitpid(pid, 0)
            payload = payloads[pid]
            try:
                ok, value = pickle.loads(payload)
            except Exception:  # truncated: the worker died before it had sent everything
                raise WorkerError(f"--jobs worker (pid {pid}) ended without its results ({_describe(status)}); "
                                  "run again, or with --jobs 1 if it happens again") from None
            if not ok:
                raise WorkerError(f"--jobs worker (pid {pid}) failed; please report this:\n{value}")
            for i, res in value:
                results[i] = res
    finally:
        _state = None
        for fd, pid in readers.items():  # only on an error or an interrupt: stop and reap what is left
            os.close(fd)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        state.close()
    return results


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
