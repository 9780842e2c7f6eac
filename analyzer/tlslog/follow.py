"""``tlslog follow``: read log files as they grow, with ``tail -F`` semantics, into the scan's store.

Theory of operation
-------------------
A file is known by (device, inode) plus a fingerprint of its first bytes (see :mod:`tlslog.positions`); a *path*
only says where to look. Each :meth:`Follower.poll` re-expands the patterns (so new files matching a glob are
picked up), stats every path and reads what was added since the last poll:

* **rename-and-create** (logrotate's default, Apache's ``rotatelogs``-less setups): the path now holds another
  inode. The old file is kept open and *drained*: read until it has not grown for ``drain_seconds`` (the server
  writes to it until it reopens its logs), then its open events are closed and it is let go. The new file is read
  from its start.
* **copytruncate**: the same inode becomes shorter, or its first bytes change (a writer with ``O_APPEND`` may
  already have written past our old offset). The lines written between our last read and the truncation are only
  in the copy, so the copy is looked for next to the file (``NAME.1``, ``NAME-20261127``, ...: a sibling whose
  first bytes have our fingerprint) and read from our offset to its end. Then the file is read again from 0.
  (A writer may still write lines between logrotate's copy and its truncate; those are lost for every reader,
  as logrotate(8) says of copytruncate.) A new file that is such a copy (a glob matching the rotated names) is
  recognised by its fingerprint and not counted twice.
* **a partial last line** is held until its newline arrives; it is only taken as a line when its file is let go.
* **a file that disappears** is drained like a renamed one; when the path comes back it is a new file (or, if the
  same inode comes back, the old one, at its offset).

Lines go to the scan's own per-block pipeline (:func:`tlslog.scan.process_chunks`: the format's candidate regex,
decoders, the :class:`~tlslog.classify.Joiner` and the mergeable :class:`~tlslog.store.Store`), one call per batch
of complete lines, so follow mode classifies exactly as ``tlslog scan`` does. As in a scan of a rotated set, the
successive files under one name are one *stream* (one joiner): an event whose lines a rotation cut in two is still
one event; on a rename rotation the old file is read to its current end before the new one. A multi-line event
(Apache's ``AH02008`` and its ``SSL Library Error:`` lines) stays open until the next line of its key shows it is
complete, or until its stream has been idle for ``flush_seconds``.

Time is injected (``clock``): unit tests call :meth:`Follower.poll` and move a fake clock; no sleeps.

Example::

    f = Follower(FollowOptions(["/var/log/apache2/*error.log"]))
    f.poll()                      # read what is there
    f.store.category_totals()     # counts so far
"""

from __future__ import annotations

import glob
import os
import re
import stat as stat_mod
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from . import decoders
from .classify import Group, Joiner
from .decoders import Ctx, Format
from .positions import (
    FP_BYTES,
    FileEntry,
    Snapshot,
    fingerprint_fd,
    fingerprint_matches,
    joiner_keys_from_json,
    joiner_keys_to_json,
)
from .scan import DETECT_BYTES, _finish_ctx, process_chunks
from .sources import compression_of
from .store import FileStats, Store
from .timeparse import Clock

#: bytes read from one file in one go (then the next file gets its turn)
READ_BYTES = 4 << 20
#: a partial line longer than this is dropped (and counted as one unparsed line when its newline comes)
MAX_LINE_BYTES = 1 << 20
#: how many let-go files are remembered (so a rotated file matched again by a glob is not read twice)
CLOSED_MEMORY = 10000

Key = tuple[int, int]
#: rotated files that logrotate compressed (``compress``): never followed
_COMPRESSED_NAME = re.compile(r"\.(?:gz|bz2|xz|zst|lzma)$")


@dataclass
class FollowOptions:
    """What to follow and how. ``patterns`` are paths or globs (quoted, so that the shell leaves them alone)."""

    patterns: list[str]
    input_format: str | None = None
    tz: str | None = None
    #: read files present at the first poll from their start ("beginning") or only what is added ("end");
    #: files that appear later are always read from their start, and --positions overrides both
    start_at: str = "beginning"
    #: a rotated-away or deleted file is read until it has not grown for this long
    drain_seconds: float = 5.0
    #: open multi-line events of a file that has been idle this long become events
    flush_seconds: float = 2.0


@dataclass(eq=False)
class Stream:
    """The successive files under one name: one joiner, so events cut by a rotation stay whole."""

    joiner: Joiner
    last_fed: float = 0.0
    users: int = 0  # files of the stream still open


@dataclass(eq=False)
class Tracked:
    """One file being read."""

    key: Key
    path: str
    fd: int
    index: int
    stream: Stream
    clock: Clock
    offset: int = 0  # end of the last complete line handed to the pipeline
    read_to: int = 0  # bytes read so far (offset + the held partial line)
    pending: bytes = b""
    skipping: bool = False  # inside a partial line longer than MAX_LINE_BYTES
    fp_len: int = 0
    fp: str = ""
    fmt: Format | None = None
    detected: bool = False
    at_path: bool = True  # False: renamed away or deleted, being drained
    last_data: float = 0.0
    ctx: Ctx | None = None  # the decoders' context (its caches live as long as the file)

    @property
    def source(self) -> str:
        return self.fmt.source if self.fmt is not None else "unknown"


@dataclass
class _Closed:
    path: str
    offset: int
    fp_len: int
    fp: str


class Follower:
    """Follows files matching ``opts.patterns`` into ``self.store``; see the module documentation."""

    def __init__(
        self,
        opts: FollowOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        snapshot: Snapshot | None = None,
        warn: Callable[[str, str], None] | None = None,
    ) -> None:
        self.opts = opts
        self.clock = clock
        self.forced = decoders.lookup(opts.input_format) if opts.input_format else None
        self.lock = threading.Lock()  # guards the store against the /metrics thread
        self.store = snapshot.store if snapshot is not None else Store()
        counters = snapshot.counters if snapshot is not None else {}
        self.rotations: Counter = Counter(counters.get("rotations", {}))
        self.read_errors: int = int(counters.get("read_errors", 0))
        self.files: dict[Key, Tracked] = {}
        self.by_path: dict[str, Tracked] = {}
        self.closed: dict[Key, _Closed] = {}
        #: never read: copies of files we read (copytruncate), and compressed files (a glob matching error.log.2.gz)
        self.copies: set[Key] = set()
        self._sources: dict[int, str] = {}  # file index -> source, for events whose first line was in that file
        self._gone: dict[str, Tracked] = {}  # names whose file vanished, and that file
        self._resume: dict[Key, FileEntry] = {}
        self._failed: dict[str, str] = {}
        self._next_index = 0
        self._first_poll = True
        self._had_snapshot = snapshot is not None
        self._warn = warn or (lambda path, msg: print(f"tlslog: warning: {path}: {msg}", file=sys.stderr))
        if snapshot is not None:
            for fe in snapshot.files:
                if fe.closed:
                    self.closed[(fe.dev, fe.ino)] = _Closed(fe.path, fe.offset, fe.fp_len, fe.fp)
                else:
                    self._resume[(fe.dev, fe.ino)] = fe

    # -- public ------------------------------------------------------------------------------------------------
    @property
    def files_followed(self) -> int:
        return len(self.files)

    def poll(self) -> int:
        """One pass: find files, detect rotation, read what was added. Returns the number of bytes read."""
        now = self.clock()
        got = 0
        present: dict[str, os.stat_result] = {}
        for path in self._expand():
            try:
                present[path] = os.stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._fail(path, f"cannot stat: {exc.strerror or exc}")
        if self._first_poll and self._resume:
            got += self._resume_rotated(now, {(st.st_dev, st.st_ino) for st in present.values()})
        # paths that no longer exist: their files are drained from the open descriptor
        for path in [p for p in self.by_path if p not in present]:
            t = self.by_path.pop(path)
            if t.path == path:
                t.at_path = False
            self._gone[path] = t  # another file appearing under this name later is a rotation (rename, create)
        for path, st in present.items():
            if not stat_mod.S_ISREG(st.st_mode):
                continue
            key = (st.st_dev, st.st_ino)
            if key in self.copies:
                continue
            t = self.files.get(key)
            cur = self.by_path.get(path) or self._gone.pop(path, None)
            if cur is not None and cur.key != key:
                # the name now holds another file: rename-and-create rotation (or delete and create), seen at
                # once or after a poll that found no file under the name.
                # Read the old one to its current end first, so that its lines come before the new file's.
                self.by_path.pop(path, None)
                if cur.path == path and self.files.get(cur.key) is cur:
                    cur.at_path = False
                    try:
                        got += self._read(cur, os.fstat(cur.fd).st_size, now)
                    except OSError:  # pragma: no cover - fstat on an open descriptor does not fail on Linux
                        pass
                self.rotations["rename"] += 1
            if t is None:
                t = self._open(path, key, st, now, cur.stream if cur is not None and cur.key != key else None)
                if t is None:
                    continue
            t.path, t.at_path = path, True
            self.by_path[path] = t
            got += self._read(t, st.st_size, now)
        self._first_poll = False
        self._resume.clear()
        for t in [t for t in self.files.values() if not t.at_path]:
            try:
                size = os.fstat(t.fd).st_size
            except OSError:  # pragma: no cover - fstat on an open descriptor does not fail on Linux
                size = t.read_to
            n = self._read(t, size, now)
            got += n
            if n == 0 and now - t.last_data >= self.opts.drain_seconds:
                self._let_go(t)
        for stream in {id(t.stream): t.stream for t in self.files.values()}.values():
            if stream.joiner.keys and now - stream.last_fed >= self.opts.flush_seconds:
                with self.lock:
                    stream.joiner.finish()
        return got

    def close(self) -> None:
        """Close every descriptor (the state stays as it is; see :meth:`snapshot`)."""
        for t in self.files.values():
            try:
                os.close(t.fd)
            except OSError:
                pass
        self.files.clear()
        self.by_path.clear()

    def snapshot(self) -> Snapshot:
        """Offsets, open events and counters of this moment, for ``--positions`` (taken between polls)."""
        with self.lock:
            files = []
            saved: set[int] = set()
            # a stream's open events are saved once, with its newest file (the one at the name)
            for t in sorted(self.files.values(), key=lambda t: not t.at_path):
                keys = [] if id(t.stream) in saved else joiner_keys_to_json(t.stream.joiner.keys)
                saved.add(id(t.stream))
                files.append(FileEntry(t.key[0], t.key[1], t.path, t.offset, t.fp_len, t.fp,
                                       t.fmt.name if t.fmt is not None else None, keys, draining=not t.at_path))
            files += [FileEntry(k[0], k[1], c.path, c.offset, c.fp_len, c.fp, closed=True)
                      for k, c in self.closed.items()]
            # a copy of the counters: the caller writes them out after the lock is released
            store = Store()
            store.merge(self.store)
            store.files = {}
            counters = {"rotations": dict(self.rotations), "read_errors": self.read_errors}
        return Snapshot(files, store, counters, time.time())

    # -- finding and opening files ----------------------------------------------------------------------------
    def _expand(self) -> list[str]:
        out: dict[str, None] = {}
        for pat in self.opts.patterns:
            if any(c in pat for c in "*?[") and not os.path.lexists(pat):
                for p in sorted(glob.glob(pat)):
                    out.setdefault(p, None)
            else:
                out.setdefault(pat, None)
        return list(out)

    def _fail(self, path: str, msg: str) -> None:
        if self._failed.get(path) != msg:  # count and say each distinct problem once, not once per poll
            self._failed[path] = msg
            self.read_errors += 1
            self._warn(path, msg)

    def _new_stream(self, now: float) -> Stream:
        stream = Stream(Joiner(lambda g: None), now)
        stream.joiner.emit = self._emitter()
        return stream

    def _new(self, path: str, key: Key, fd: int, now: float, stream: Stream | None = None,
             register: bool = True) -> Tracked:
        idx = self._next_index
        self._next_index += 1
        t = Tracked(key, path, fd, idx, stream or self._new_stream(now), Clock(self.opts.tz), last_data=now)
        t.stream.users += 1
        if register:
            self.files[key] = t
            self._sources[idx] = "unknown"
        return t

    def _open(self, path: str, key: Key, st: os.stat_result, now: float,
              stream: Stream | None = None) -> Tracked | None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._fail(path, f"cannot open: {exc.strerror or exc}")
            return None
        self._failed.pop(path, None)
        if _COMPRESSED_NAME.search(path) or compression_of(os.pread(fd, 8, 0)) is not None:
            self._ignore_compressed(path, key, fd)
            return None
        st2 = os.fstat(fd)
        if (st2.st_dev, st2.st_ino) != key:  # replaced between our stat and open: look again next poll
            os.close(fd)
            return None
        resume = self._resume.pop(key, None)
        if resume is not None and fingerprint_matches(fd, resume.fp_len, resume.fp) and st.st_size >= resume.offset:
            t = self._new(path, key, fd, now)
            self._restore(t, resume)  # the inode is what counts, even if it was renamed while we were stopped
            return t
        if resume is not None and resume.fp_len:
            # same inode, other content or shorter: truncated (copytruncate) while we were stopped
            self.rotations["copytruncate"] += 1
            stream = self._recover_from_copy_entry(path, resume, now)
        closed = self.closed.get(key)
        if closed is not None and fingerprint_matches(fd, closed.fp_len, closed.fp):
            # a file we read to its end and let go comes back (renamed back, or matched again by a glob)
            del self.closed[key]
            t = self._new(path, key, fd, now, stream)
            t.offset = t.read_to = closed.offset
            t.fp_len, t.fp = closed.fp_len, closed.fp
            return t
        if self._is_copy(fd):
            self.copies.add(key)
            os.close(fd)
            return None
        t = self._new(path, key, fd, now, stream)
        if self._first_poll and not self._had_snapshot and self.opts.start_at == "end":
            t.offset = t.read_to = st.st_size
            t.fp_len, t.fp = fingerprint_fd(fd, min(FP_BYTES, st.st_size))
        return t

    def _ignore_compressed(self, path: str, key: Key, fd: int) -> None:
        self.copies.add(key)
        os.close(fd)
        self._warn(path, "compressed: not followed (a rotated file is read before it is compressed; "
                   "`tlslog scan` and `tlslog backfill` read archives)")

    def _restore(self, t: Tracked, fe: FileEntry) -> None:
        t.offset = t.read_to = fe.offset
        t.fp_len, t.fp = fe.fp_len, fe.fp
        if fe.format:
            t.fmt, t.detected = decoders.FORMATS.get(fe.format), True
            self._sources[t.index] = t.source
        keys = joiner_keys_from_json(fe.joiner or [])
        for ks in keys.values():  # the saved records name the file by its old index: it is this file now
            for rec in ks.prefix + ([ks.prefix_last_head] if ks.prefix_last_head else []):
                rec.src = t.index
            if ks.open is not None:
                ks.open.first.src = ks.open.last_head.src = t.index
        t.stream.joiner.keys = keys

    def _is_copy(self, fd: int) -> bool:
        """Whether a newly seen file starts like a file we are reading (a copytruncate copy)."""
        for t in self.files.values():
            if t.fp_len >= min(FP_BYTES, 64) and fingerprint_matches(fd, t.fp_len, t.fp):
                return True
        return False

    def _resume_rotated(self, now: float, present: set[Key]) -> int:
        """First poll: files of the positions file that are not under the patterns any more were rotated while we
        were stopped. Find each by inode next to its old name and read it to its current end (before the file
        that replaced it, so that an event cut by the rotation joins); the file now under the old name then counts
        as the rotation and continues the stream."""
        got = 0
        for key, fe in list(self._resume.items()):
            if key in present:
                continue  # still under a followed name: _open resumes it
            found = self._find_inode(fe.path, key)
            if found is None:
                continue  # deleted (or compressed into a new file): its unread tail, if any, is gone
            path, fd = found
            if not fingerprint_matches(fd, fe.fp_len, fe.fp):
                os.close(fd)
                continue
            del self._resume[key]
            t = self._new(path, key, fd, now)
            self._restore(t, fe)
            t.at_path = False
            got += self._read(t, os.fstat(fd).st_size, now)
            if not fe.draining:  # it was the file under its name
                self._gone[fe.path] = t
        return got

    @staticmethod
    def _find_inode(old_path: str, key: Key) -> tuple[str, int] | None:
        directory = os.path.dirname(old_path) or "."
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return None
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == key and stat_mod.S_ISREG(st.st_mode):
                try:
                    return e.path, os.open(e.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except OSError:
                    return None
        return None

    # -- reading -------------------------------------------------------------------------------------------------
    def _read(self, t: Tracked, size: int, now: float) -> int:
        got = 0
        try:
            if t.read_to and (size < t.read_to or not fingerprint_matches(t.fd, t.fp_len, t.fp)):
                self._truncated(t, now)
            while size > t.read_to:
                start = t.read_to
                data = os.pread(t.fd, min(size - start, READ_BYTES), start)
                if not data:
                    break
                if start == 0 and compression_of(data[:8]) is not None:  # it was empty when we opened it
                    self._ignore_compressed(t.path, t.key, t.fd)
                    del self.files[t.key]
                    if self.by_path.get(t.path) is t:
                        del self.by_path[t.path]
                    t.stream.users -= 1
                    return got
                t.read_to += len(data)
                got += len(data)
                if t.fp_len < FP_BYTES:
                    t.fp_len, t.fp = fingerprint_fd(t.fd, min(FP_BYTES, t.read_to))
                self._feed(t, start, data, now)
        except OSError as exc:
            self._fail(t.path, f"read error: {exc.strerror or exc}")
        return got

    def _feed(self, t: Tracked, start: int, data: bytes, now: float) -> None:
        t.last_data = t.stream.last_fed = now
        if t.skipping:
            i = data.find(b"\n")
            if i < 0:
                return
            t.skipping = False
            self._count_long_line(t)
            t.offset = start + i + 1
            data = data[i + 1:]
        buf = t.pending + data if t.pending else data
        cut = buf.rfind(b"\n") + 1
        if cut:
            self._process(t, t.offset, buf[:cut])
            t.offset += cut
        t.pending = buf[cut:]
        if len(t.pending) > MAX_LINE_BYTES:
            t.pending = b""
            t.skipping = True

    def _count_long_line(self, t: Tracked) -> None:
        with self.lock:
            self.store.lines[t.source] += 1
            self.store.unparsed[t.source] += 1

    def _emitter(self) -> Callable[[Group], None]:
        store, sources = self.store, self._sources

        def emit(g: Group) -> None:  # called with self.lock held (from _process or a flush)
            first = g.first  # the event belongs to the file (and source) of its first line, as in a scan
            store.add_event(g.category, sources.get(first.src, "unknown"), g.vhost, first.time,
                            (first.src, first.pos), first.line)

        return emit

    def _detect(self, t: Tracked, block: bytes) -> None:
        if self.forced is not None:
            t.fmt, t.detected = self.forced, True
            return
        fmt = decoders.detect(block[:DETECT_BYTES])
        if fmt is not None:
            t.fmt, t.detected = fmt, True
            return
        # not recognised yet: inherit the format of the file this one replaced at the same name, if any
        for other in self.files.values():
            if other is not t and other.fmt is not None and os.path.dirname(other.path) == os.path.dirname(t.path) \
                    and os.path.basename(other.path).startswith(os.path.basename(t.path)):
                t.fmt, t.detected = other.fmt, True
                return
        if len(block) >= DETECT_BYTES:
            t.detected = True
            self._warn(t.path, "format not recognised (use --input-format); lines counted as unparsed")

    def _process(self, t: Tracked, base: int, block: bytes) -> None:
        if not t.detected:
            self._detect(t, block)
            self._sources[t.index] = t.source
        stats = FileStats(t.index, t.path, t.fmt.name if t.fmt else "unknown")
        if t.ctx is None:
            t.ctx = Ctx(t.clock, t.index)
        ctx = t.ctx
        warned: list[str] = []
        with self.lock:
            process_chunks([block], t.fmt, stats, self.store, t.stream.joiner, ctx, base=base,
                           warn=warned.append)
            _finish_ctx(ctx, self.store, stats, t.source)
        for counter in (ctx.status, ctx.protocols, ctx.ciphers):  # added to the store: start again from zero
            counter.clear()
        for w in warned:
            self._warn(t.path, w)

    def _flush_partial(self, t: Tracked) -> None:
        """The file is complete: a last line without its newline is still a line (as ``grep -c`` counts it)."""
        if t.pending:
            self._process(t, t.offset, t.pending)
            t.offset += len(t.pending)
            t.pending = b""
        elif t.skipping:
            t.skipping = False
            self._count_long_line(t)

    # -- rotation ----------------------------------------------------------------------------------------------
    def _truncated(self, t: Tracked, now: float) -> None:
        self.rotations["copytruncate"] += 1
        held = (t.pending, t.skipping, t.read_to)
        t.pending, t.skipping = b"", False
        t.read_to = t.offset
        if not self._recover_from_copy(t, now):
            t.pending, t.skipping, t.read_to = held  # what we had read of the old content still counts
            self._warn(t.path, f"truncated (copytruncate?) and no copy starting like it was found next to it; "
                       f"lines written after byte {t.read_to} before the truncation were not read")
        self._flush_partial(t)
        t.offset = t.read_to = 0
        t.fp_len, t.fp = 0, ""
        t.detected = t.fmt is not None  # keep the format: the same server writes the same format again

    def _copy_candidates(self, path: str, key: Key, fp_len: int, fp: str, offset: int) -> list[tuple[float, str, int]]:
        directory = os.path.dirname(path) or "."
        base = os.path.basename(path)
        found = []
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return []
        for e in entries:
            if e.name == base or not e.name.startswith(base):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat_mod.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) == key or st.st_size < offset:
                continue
            try:
                fd = os.open(e.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            if fingerprint_matches(fd, fp_len, fp):
                found.append((st.st_mtime, e.path, fd))
                self.copies.add((st.st_dev, st.st_ino))
            else:
                os.close(fd)
        return sorted(found, reverse=True)

    def _recover_from_copy(self, t: Tracked, now: float) -> bool:
        if t.fp_len == 0:
            return False
        found = self._copy_candidates(t.path, t.key, t.fp_len, t.fp, t.offset)
        if not found:
            return False
        _mtime, copy_path, fd = found[0]
        for _m, _p, other in found[1:]:
            os.close(other)
        try:
            size = os.fstat(fd).st_size
            pos = t.offset
            while pos < size:
                data = os.pread(fd, min(size - pos, READ_BYTES), pos)
                if not data:
                    break
                self._feed(t, pos, data, now)
                pos += len(data)
            t.read_to = pos
        except OSError as exc:
            self._fail(copy_path, f"read error: {exc.strerror or exc}")
        finally:
            os.close(fd)
        return True

    def _recover_from_copy_entry(self, path: str, fe: FileEntry, now: float) -> Stream:
        """A file of the positions file was truncated while we were stopped: read its tail from the copy."""
        t = self._new(path, (fe.dev, fe.ino), -1, now, register=False)
        self._sources[t.index] = "unknown"
        self._restore(t, fe)
        if not self._recover_from_copy(t, now):
            self._warn(path, f"truncated while tlslog was stopped and no copy starting like it was found; lines "
                       f"after byte {fe.offset} of the old content were not read")
        self._flush_partial(t)
        t.stream.users -= 1  # the file under the name now continues this stream
        return t.stream

    def _let_go(self, t: Tracked) -> None:
        """A drained file: close its descriptor (and its stream's events if no newer file continues it); remember it
        so that it is not read again."""
        self._flush_partial(t)
        t.stream.users -= 1
        if t.stream.users <= 0:
            with self.lock:
                t.stream.joiner.finish()
        try:
            os.close(t.fd)
        except OSError:
            pass
        del self.files[t.key]
        if self.by_path.get(t.path) is t:
            del self.by_path[t.path]
        self.closed[t.key] = _Closed(t.path, t.offset, t.fp_len, t.fp)
        while len(self.closed) > CLOSED_MEMORY:
            del self.closed[next(iter(self.closed))]


def run(
    follower: Follower,
    stop: threading.Event,
    *,
    poll_interval: float = 0.25,
    checkpoint: Callable[[], None] | None = None,
    checkpoint_seconds: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll until ``stop`` is set; call ``checkpoint`` every ``checkpoint_seconds``, after a rotation and at the
    end. While data flows, polls follow each other without waiting."""
    last = clock()
    rotations = sum(follower.rotations.values())
    while not stop.is_set():
        got = follower.poll()
        now = clock()
        r = sum(follower.rotations.values())
        if checkpoint is not None and (r != rotations or now - last >= checkpoint_seconds):
            checkpoint()
            last, rotations = now, r
        if got == 0:
            stop.wait(poll_interval)
    if checkpoint is not None:
        checkpoint()
