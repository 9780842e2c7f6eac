"""``--jobs N`` on Linux: N processes (this one and N-1 forks) take work units from one shared queue.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: measured on the two 372 MB files of issue 3 (docs/
analyzer-speed.md, round of task h20), the pool's start and its threads cost the parent CPU that competes with the
workers on a 2-core machine, and every unit and result crosses its queues. Here:

- the units are in memory before the fork, so nothing is sent to a worker: the queue is one shared counter (an
  anonymous shared ``mmap``) behind a POSIX record lock (``lockf``, released by the kernel if its holder dies);
- this process is worker 0: with two jobs only one process is forked, and its own results are never pickled;
- a forked worker pickles each result as soon as it has it into its own in-memory file (``memfd``; a pipe would
  block the worker while this process is busy with a unit of its own) and then publishes the new end of the
  file in the shared ``mmap``; this process loads what is published after each unit of its own and while it
  waits, so little is left to load after the last unit (36 files of a rotated set: 18 results of 360 KB, 55 ms
  to load, were all loaded after the last unit when a worker sent them at its end);
- a worker's pipe only says how it ended (nothing: all went well; else a traceback), and its end of file says
  that it has ended;
- progress: each process adds the bytes it has scanned to its own slot of the shared ``mmap``; :func:`done_bytes`
  sums them (for the progress bar).

A worker never returns into the caller's code: it ends with ``os._exit`` (no atexit handlers, no stdio flush of
buffers it inherited). An exception in a worker is sent back as text and raised here as :class:`WorkerError`; a
worker that dies (killed, out of memory) is reported with its exit status. Interrupted (Ctrl-C), this process kills
and reaps its workers before the ``KeyboardInterrupt`` goes on.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import pickle
import select
import signal
import struct
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_SLOT = struct.Struct("q")


class WorkerError(RuntimeError):
    """A worker process failed (a bug, or it was killed): the message says which and how."""


class _State:
    """The shared counters of one run: slot 0 is the next unit to take, slot 1 + w the bytes worker w scanned,
    slot 1 + jobs + w the end of the results worker w has written so far."""

    def __init__(self, jobs: int) -> None:
        self.mem = mmap.mmap(-1, _SLOT.size * (1 + 2 * jobs))  # anonymous and MAP_SHARED: seen by the forks
        self.jobs = jobs
        self.worker = 0
        # a POSIX record lock: held per process, and the kernel drops it when its process dies, so a worker
        # killed while it takes a unit cannot leave the others waiting for ever (a token in a pipe would)
        self.lock = os.memfd_create("tlslog-queue", os.MFD_CLOEXEC)

    def take(self) -> int:
        fcntl.lockf(self.lock, fcntl.LOCK_EX)
        try:
            (i,) = _SLOT.unpack_from(self.mem, 0)
            _SLOT.pack_into(self.mem, 0, i + 1)
        finally:
            fcntl.lockf(self.lock, fcntl.LOCK_UN)
        return i

    def add(self, n: int) -> None:
        off = _SLOT.size * (1 + self.worker)  # this process's slot: one writer, no lock
        _SLOT.pack_into(self.mem, off, _SLOT.unpack_from(self.mem, off)[0] + n)

    def publish(self, end: int) -> None:
        _SLOT.pack_into(self.mem, _SLOT.size * (1 + self.jobs + self.worker), end)

    def published(self, w: int) -> int:
        return _SLOT.unpack_from(self.mem, _SLOT.size * (1 + self.jobs + w))[0]

    def done(self) -> int:
        return sum(_SLOT.unpack_from(self.mem, _SLOT.size * (1 + w))[0] for w in range(self.jobs))

    def close(self) -> None:
        os.close(self.lock)
        self.mem.close()


_state: _State | None = None


def add_bytes(n: int) -> None:
    """Count ``n`` bytes scanned by this process (progress); nothing outside :func:`run`."""
    if _state is not None:
        _state.add(n)


def done_bytes() -> int:
    """Bytes scanned so far by all the processes of the current :func:`run` (0 outside it)."""
    return _state.done() if _state is not None else 0


def _work(state: _State, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
    while True:
        i = state.take()
        if i >= len(items):
            return
        yield i, fn(items[i])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _child(state: _State, fn: Callable[[T], R], items: Sequence[T], w: int, out: int, status_fd: int) -> None:
    """Body of a forked worker: run units until the queue is empty, each result into ``out`` as it comes, exit.
    Never returns."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it, the worker just ends
        state.worker = w
        end = 0
        for i, res in _work(state, fn, items):
            data = pickle.dumps((i, res), pickle.HIGHEST_PROTOCOL)
            _write_all(out, _SLOT.pack(len(data)) + data)
            end += _SLOT.size + len(data)
            state.publish(end)  # after the write: what is published is all there
    except BaseException:  # noqa: BLE001 - everything goes back to the parent as text
        import traceback  # here: 1 ms of start-up on the path to the first unit otherwise

        status = 1
        try:
            _write_all(status_fd, traceback.format_exc().encode("utf-8", "replace"))
        except OSError:
            pass
    os._exit(status)


class _Results:
    """What one forked worker has published, loaded as it comes."""

    def __init__(self, w: int, pid: int, out: int, status_fd: int) -> None:
        self.w, self.pid, self.out, self.status_fd = w, pid, out, status_fd
        self.loaded = 0  # bytes of ``out`` loaded so far
        self.failure = bytearray()
        self.ended = False

    def load(self, state: _State, results: list) -> None:
        end = state.published(self.w)
        if end <= self.loaded:
            return
        data = os.pread(self.out, end - self.loaded, self.loaded)
        pos = 0
        while pos < len(data):
            (n,) = _SLOT.unpack_from(data, pos)
            i, res = pickle.loads(data[pos + _SLOT.size:pos + _SLOT.size + n])
            results[i] = res
            pos += _SLOT.size + n
        self.loaded = end


def _wait(workers: list[_Results], state: _State, results: list, on_wait: Callable[[], None] | None) -> None:
    """Load the workers' results as they come until every worker has ended (its status pipe at its end);
    ``on_wait`` about 20 times a second."""
    pending = {wk.status_fd: wk for wk in workers}
    while pending:
        ready, _, _ = select.select(list(pending), [], [], 0.05)
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            if chunk:
                pending[fd].failure += chunk
            else:
                pending.pop(fd).ended = True
        for wk in workers:
            wk.load(state, results)
        if on_wait is not None:
            on_wait()


def run(fn: Callable[[T], R], items: Sequence[T], jobs: int, *,
        on_wait: Callable[[], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on ``jobs`` processes (this one included), items taken in order as workers get
    free. Only the results cross processes (pickled); ``fn`` and ``items`` are the forks' own copies."""
    global _state
    jobs = max(1, min(jobs, len(items)))
    state = _State(jobs)
    forked: list[_Results] = []
    results: list = [None] * len(items)
    _state = state
    try:
        for w in range(1, jobs):
            out = os.memfd_create(f"tlslog-worker-{w}", os.MFD_CLOEXEC)
            r, status_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                os.close(r)
                for wk in forked:
                    os.close(wk.status_fd)
                    os.close(wk.out)
                _child(state, fn, items, w, out, status_fd)
            os.close(status_fd)
            forked.append(_Results(w, pid, out, r))
        for i, res in _work(state, fn, items):
            results[i] = res
            for wk in forked:  # load what the others have sent meanwhile: the queue then gives this process
                wk.load(state, results)  # fewer units, and little is left to load after the last one
        _wait(forked, state, results, on_wait)
        while forked:
            wk = forked.pop(0)
            _, status = os.waitpid(wk.pid, 0)
            _close(wk)
            if wk.failure:
                raise WorkerError(f"--jobs worker (pid {wk.pid}) failed; please report this:\n"
                                  f"{wk.failure.decode('utf-8', 'replace')}")
            if status != 0:
                raise WorkerError(f"--jobs worker (pid {wk.pid}) ended without its results ({_describe(status)}); "
                                  "run again, or with --jobs 1 if it happens again")
    finally:
        _state = None
        for wk in forked:  # only on an error or an interrupt: stop and reap what is left
            try:
                os.kill(wk.pid, signal.SIGKILL)
                os.waitpid(wk.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            _close(wk)
        state.close()
    return results


def _close(wk: _Results) -> None:
    for fd in (wk.out, wk.status_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
