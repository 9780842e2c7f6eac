"""The scan: inputs -> work units -> (blocks -> candidate lines -> records -> events) -> one merged Store.

A *work unit* is a whole file, or a byte range of a large uncompressed file (``--jobs``). Units are independent and
their results are mergeable (:class:`UnitResult`), so they can run in this process, in a process pool, or on a Dask
cluster (issue 9) and be merged in input order to the same answer. Within a unit:

1. :class:`~tlslog.blocks.BlockReader` yields MiB-sized blocks of whole lines;
2. ``bytes.count(b"\\n")`` counts lines, the format's ``understood`` counts the lines it knows (C speed);
3. the format's candidate regexes (one or two literal-prefixed passes over the block) find the interesting lines;
   only those are decoded in Python;
4. records go to the :class:`~tlslog.classify.Joiner` (or straight to the store when one line is one event).

A format may replace steps 3-4 by its own loop (``Format.scan_block``: Apache 2.4's hot path, tlslog.apache_units),
with the same result; state it keeps between blocks is handed to the joiner at the end (``Format.flush``).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Callable, Hashable, Iterable, Iterator

from . import decoders
from .blocks import BLOCK_BYTES, BlockReader
from .classify import EVENT, Group, Joiner, KeyState
from .decoders import Ctx, Format, decode_line
from .schedule import EXPANSION, Piece, schedule
from .sources import Input, decoded_chunks, expand, file_range, prefetched, rotation_key
from .store import FileStats, Store
from .timeparse import Clock

DETECT_BYTES = 64 << 10


@dataclass(frozen=True)
class Unit:
    """One piece of work, picklable (it crosses process and machine boundaries)."""

    index: int  # input index (file order)
    seq: int  # position of this range within its file
    path: str
    format: str | None  # None: not recognised (lines are counted, nothing is decoded)
    tz: str | None
    start: int = 0
    end: int | None = None  # None: the whole file, decompressed as needed
    #: the unit is a whole stream (a whole file, not part of a rotated set): its open groups are closed where it
    #: runs, so its result carries no joiner state (a 10 MB file's result pickles in 2.5 KB instead of 360 KB)
    alone: bool = False


@dataclass
class UnitResult:
    index: int
    seq: int
    store: Store
    keys: dict[Hashable, KeyState] = field(default_factory=dict)


def _emitter(store: Store, files: dict[int, tuple[FileStats, str]]) -> Callable[[Group], None]:
    """Events go to ``store``; each is attributed to the file (and source) of its group's first line."""

    # Store.add_event inlined: this runs once per event (100,000 times on the 2M-line benchmark log)
    events, firsts, lasts, examples = store.events, store.first, store.last, store.examples

    def widen(category: str, lo: float, hi: float) -> None:
        """The category's first and last times take in [lo, hi]."""
        f = firsts.get(category)
        if f is None or lo < f:
            firsts[category] = lo
        f = lasts.get(category)
        if f is None or hi > f:
            lasts[category] = hi

    def emit(g: Group) -> None:
        first = g.first
        src = first.src
        stats, source = files[src]
        category = g.strong or g.weak or "other_tls_error"  # Group.category
        events[(category, source, g.vhost or "")] += 1
        t = first.time
        if t is not None:
            widen(category, t, t)
        ex = examples.get(category)
        if ex is None or (src, first.pos) < ex[0]:
            examples[category] = ((src, first.pos), first.line[:2000])
        stats.events += 1

    def emit_units(units: list, src: int) -> None:
        """Many closed groups at once (tlslog.apache_units): ``(UnitInfo, time, pos, line)`` each, in any order;
        the same additions as ``emit`` for each, with the per-category work done once per category."""
        stats, source = files[src]
        stats.events += len(units)
        by_info = Counter(map(itemgetter(0), units))
        for info, n in by_info.items():
            events[(info.label, source, info.vlabel)] += n
        by_cat: dict[str, list] = {}
        for info in by_info:
            by_cat.setdefault(info.label, [])
        if len(by_cat) == 1:
            by_cat[next(iter(by_cat))] = units
        else:
            for u in units:
                by_cat[u[0].label].append(u)
        for category, us in by_cat.items():
            ts = list(map(itemgetter(1), us))
            if None in ts:
                ts = [t for t in ts if t is not None]
            if ts:
                widen(category, min(ts), max(ts))
            u = min(us, key=itemgetter(2))
            ex = examples.get(category)
            if ex is None or (src, u[2]) < ex[0]:
                examples[category] = ((src, u[2]), u[3][:2000])

    emit.units = emit_units  # type: ignore[attr-defined]
    return emit


#: called with the size of every block scanned in THIS process (the progress bar of --jobs 1); None: no call
_block_hook: Callable[[int], None] | None = None


def candidate_lines(block: bytes, patterns: tuple, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of every line of ``block[start:end]`` hit by one of ``patterns``, in order, each line once.
    ``start`` must be a line start."""
    if end is None:
        end = len(block)
    rfind, find = block.rfind, block.find
    out: list[tuple[int, int]] = []
    append = out.append
    for pattern in patterns:
        last_end = -1
        for m in pattern.finditer(block, start, end):
            s = rfind(b"\n", start, m.start()) + 1 or start
            if s <= last_end:
                continue
            e = find(b"\n", m.end(), end)
            if e < 0:
                e = end
            last_end = e
            append((s, e))
    if len(patterns) > 1:
        out.sort()  # one sorted run per pattern: timsort merges them in linear time
        dedup = [out[0]] if out else []
        for item in out:
            if item[0] != dedup[-1][0]:
                dedup.append(item)
        out = dedup
    return out


def process_chunks(
    chunks: Iterable[bytes],
    fmt: Format | None,
    stats: FileStats,
    store: Store,
    joiner: Joiner,
    ctx: Ctx,
    *,
    base: int = 0,
    warn: Callable[[str], None],
    block_size: int = BLOCK_BYTES,
) -> None:
    """The inner loop: everything per line happens in C except for candidate lines."""
    reader = BlockReader(chunks, base=base, block_size=block_size)
    emit = joiner.emit
    understood = 0
    lines = 0
    decode = fmt.decode if fmt is not None else None
    candidates = fmt.candidates if fmt is not None else ()
    decoder_failed = False
    index = stats.index
    hook = _block_hook
    scan_block = fmt.scan_block if fmt is not None else None
    count_lines = fmt.count_lines if fmt is not None else None

    def failed(exc: Exception, pos: int) -> None:
        nonlocal decoder_failed
        if not decoder_failed:
            decoder_failed = True
            warn(f"internal error decoding the line at byte {pos}: {type(exc).__name__}: {exc} "
                 "(please report it with that line)")

    for offset, block, start, end in reader.views():
        stats.bytes_read += end - start
        if hook is not None:
            hook(end - start)
        if count_lines is not None and end > start and block[end - 1] == 10:
            n, good = count_lines(block, start, end)  # lines and understood lines in one pass
            lines += n
            understood += good
        else:
            n = block.count(b"\n", start, end)
            if end > start and block[end - 1] != 10:  # the last line of the input, without its newline
                n += 1
            lines += n
            if fmt is None:
                continue
            understood += fmt.understood(block, start, end, n)
        if fmt.block_stats is not None:
            understood += fmt.block_stats(block, ctx, start, end)
        if not candidates or decode is None:
            continue
        base = offset - start
        if scan_block is not None:
            try:
                scan_block(block, start, end, base, ctx, index, joiner, failed)
            except Exception as exc:  # a bug in a format's own loop: the rest of this block is lost, said once
                failed(exc, base + start)
            continue
        for s, e in candidate_lines(block, candidates, start, end):
            rec = decode_line(decode, block[s:e], base + s, ctx, index, failed)
            if rec is None:
                continue
            if rec.role == EVENT:
                emit(Group.start(rec))
            else:
                joiner.feed(rec)
    if fmt is not None and fmt.flush is not None:
        try:
            fmt.flush(ctx, joiner, index)
        except Exception as exc:  # a bug in a format's own loop: said once, as above
            failed(exc, base)
    if reader.long_lines:
        lines += reader.long_lines
        warn(f"{reader.long_lines} line(s) longer than {reader.max_line} bytes skipped (first at byte "
             f"{reader.first_long_line_offset}); counted as unparsed")
    understood += ctx.understood
    ctx.understood = 0
    stats.lines += lines
    stats.unparsed_lines += max(0, lines - understood)


def _new_ctx(unit_index: int, tz: str | None) -> Ctx:
    return Ctx(Clock(tz), unit_index)


def _finish_ctx(ctx: Ctx, store: Store, stats: FileStats, source: str) -> None:
    store.status.update(ctx.status)
    store.protocols.update(ctx.protocols)
    store.ciphers.update(ctx.ciphers)
    store.lines[source] += stats.lines
    store.unparsed[source] += stats.unparsed_lines


def run_unit(unit: Unit) -> UnitResult:
    """Process one unit (in any process). Never raises for bad input: problems become warnings in the stats."""
    fmt = decoders.FORMATS.get(unit.format) if unit.format else None
    source = fmt.source if fmt else "unknown"
    store = Store()
    stats = FileStats(unit.index, unit.path, unit.format or "unknown")
    store.files[unit.index] = stats
    warn = _warner(stats)

    joiner = Joiner(_emitter(store, {unit.index: (stats, source)}))
    ctx = _new_ctx(unit.index, unit.tz)
    if unit.end is None:
        try:
            f = open(unit.path, "rb", buffering=0)
        except OSError as exc:
            warn(f"cannot open: {exc.strerror or exc}")
            stats.readable = False
            return UnitResult(unit.index, unit.seq, store)
        with f:
            chunks = decoded_chunks(f, warn)
            if not _is_plain(unit.path):  # decompression on the other core; a plain read gains nothing from it
                chunks = prefetched(chunks)
            process_chunks(chunks, fmt, stats, store, joiner, ctx, warn=warn)
    else:
        base, chunks = file_range(unit.path, unit.start, unit.end, warn)
        process_chunks(chunks, fmt, stats, store, joiner, ctx, base=base, warn=warn)
    if unit.alone:
        joiner.finish()  # what merge_stream would do with this one result
    _finish_ctx(ctx, store, stats, source)
    return UnitResult(unit.index, unit.seq, store, joiner.keys)


def merge_stream(results: list[UnitResult], sources: dict[int, str]) -> Store:
    """Merge the units of one stream (a file, or the files of a rotated set oldest first) in order, close the
    groups still open at its end, return its store. A group cut by a rotation joins across the files."""
    results = sorted(results, key=lambda r: (r.index, r.seq))
    store = Store()
    for r in results:
        store.merge(r.store)
    files = {idx: (fs, sources.get(idx, "unknown")) for idx, fs in store.files.items()}
    joiner = Joiner(_emitter(store, files))
    joiner.keys = results[0].keys
    for later in results[1:]:
        tmp = Joiner(joiner.emit)
        tmp.keys = later.keys
        joiner.merge(tmp)
    joiner.finish()
    return store


@dataclass
class ScanOptions:
    paths: list[str]
    input_format: str | None = None
    tz: str | None = None
    jobs: int = 1
    #: with jobs > 1, a fixed split: every plain file in ceil(size / range_bytes) equal ranges (tests, Dask);
    #: None: as few units as keep the workers evenly loaded (tlslog.schedule)
    range_bytes: int | None = None
    progress: Callable[[int, int], None] | None = None
    #: runs run_unit over the units elsewhere, results in any order (a Dask cluster: tlslog.distributed)
    mapper: Callable[[Callable[[Unit], UnitResult], list[Unit]], Iterable[UnitResult]] | None = None


@dataclass
class ScanResult:
    store: Store
    inputs: list[Input]

    @property
    def files(self) -> list[FileStats]:
        return [self.store.files[i.index] for i in self.inputs if i.index in self.store.files]

    @property
    def anything_read(self) -> bool:
        return any(fs.readable for fs in self.files)


def _detect(inp: Input, forced: Format | None) -> tuple[str | None, list[str], bool]:
    """Format name for a file (reading its first 64 KiB), warnings, and whether it could be opened."""
    warnings: list[str] = []
    if forced is not None:
        return forced.name, warnings, True
    try:
        f = open(inp.path, "rb", buffering=0)
    except OSError as exc:
        return None, [f"cannot open: {exc.strerror or exc}"], False
    head = bytearray()
    with f:
        for chunk in decoded_chunks(f, lambda m: None, chunk=DETECT_BYTES):
            head += chunk
            if len(head) >= DETECT_BYTES:
                break
    fmt = decoders.detect(bytes(head))
    if fmt is None:
        if head:
            warnings.append("format not recognised (use --input-format); lines counted as unparsed")
        return None, warnings, True
    return fmt.name, warnings, True


def _is_plain(path: str) -> bool:
    from .sources import compression_of

    try:
        with open(path, "rb") as f:
            return compression_of(f.read(8)) is None
    except OSError:
        return False


def _weight(path: str, size: int) -> tuple[bool, int]:
    """(plain?, estimated plain bytes) of a file: its size, or for a compressed one the decompressed size that
    gzip's trailer gives (when plausible) or a typical ratio (schedule.EXPANSION). Orders the work only."""
    from .sources import compression_of

    try:
        with open(path, "rb") as f:
            kind = compression_of(f.read(8))
            if kind is None:
                return True, size
            estimate = size * EXPANSION.get(kind, 10)
            if kind == "gzip" and size >= 18:
                f.seek(-4, os.SEEK_END)
                isize = int.from_bytes(f.read(4), "little")  # RFC 1952: the input size modulo 2**32
                if size <= isize < 64 * size:
                    estimate = isize
            return False, estimate
    except OSError:
        return False, size


def plan(inputs: list[Input], forced: Format | None, opts: ScanOptions) -> tuple[list[Unit], dict[int, FileStats]]:
    """Inputs -> units in the order to run them (and stats for files that produced no unit: unopenable ones).

    ``--jobs 1``: whole files in input order. More jobs: as few units as keep the workers evenly loaded, biggest
    first (:mod:`tlslog.schedule`); ``opts.range_bytes`` asks for a fixed split instead."""
    names: dict[int, str | None] = {}
    pieces: list[Piece] = []
    failed: dict[int, FileStats] = {}
    for inp in inputs:
        if inp.is_stdin:
            continue
        name, warnings, ok = _detect(inp, forced)
        if not ok:
            fs = FileStats(inp.index, inp.path, "unknown", warnings=warnings, readable=False)
            failed[inp.index] = fs
            continue
        if warnings:
            failed[inp.index] = FileStats(inp.index, inp.path, name or "unknown", warnings=warnings)
        names[inp.index] = name
        size = inp.size or 0
        if opts.jobs > 1:
            plain, weight = _weight(inp.path, size)
            pieces.append(Piece(inp.index, size, plain, weight))
        else:
            pieces.append(Piece(inp.index, size))
    chosen = schedule(pieces, opts.jobs, max_range=opts.range_bytes)
    seq: dict[tuple[int, int], int] = {}  # a range's position within its file: the order the merge needs
    ranges_of: Counter = Counter()
    for index, start in sorted((p.index, p.start) for p in chosen):
        seq[(index, start)] = ranges_of[index]
        ranges_of[index] += 1
    paths = {inp.index: inp.path for inp in inputs}
    alone = {s[0].index for s in streams(inputs) if len(s) == 1}
    units = [Unit(p.index, seq[(p.index, p.start)], paths[p.index], names[p.index], opts.tz, p.start, p.end,
                  p.end is None and p.index in alone)
             for p in chosen]
    return units, failed


def scan_stream(chunks: Iterator[bytes], forced: Format | None, index: int, tz: str | None,
                stats: FileStats, store: Store, warn: Callable[[str], None]):
    """Scan one whole stream of decoded chunks (standard input, an fsspec object): the format is
    `forced` or detected from the first DETECT_BYTES, then every chunk is processed.
    Returns (joiner, ctx, source) for the caller to finish."""
    head: list[bytes] = []
    size = 0
    for c in chunks:
        head.append(c)
        size += len(c)
        if size >= DETECT_BYTES:
            break
    fmt = forced or decoders.detect(b"".join(head))
    stats.format = fmt.name if fmt else "unknown"
    if fmt is None and size:
        warn("format not recognised (use --input-format); lines counted as unparsed")
    source = fmt.source if fmt else "unknown"
    joiner = Joiner(_emitter(store, {index: (stats, source)}))
    ctx = _new_ctx(index, tz)
    process_chunks(itertools.chain(head, chunks), fmt, stats, store, joiner, ctx, warn=warn)
    return joiner, ctx, source


def _warner(stats: FileStats) -> Callable[[str], None]:
    """``warn(msg)``: each distinct message once in the file's warnings."""
    warned: set[str] = set()

    def warn(msg: str) -> None:
        if msg not in warned:
            warned.add(msg)
            stats.warnings.append(msg)

    return warn


def _scan_stdin(inp: Input, forced: Format | None, tz: str | None) -> Store:
    stats = FileStats(inp.index, "-", "unknown")
    store = Store()
    store.files[inp.index] = stats
    warn = _warner(stats)

    joiner, ctx, source = scan_stream(decoded_chunks(sys.stdin.buffer, warn), forced, inp.index, tz,
                                      stats, store, warn)
    joiner.finish()
    _finish_ctx(ctx, store, stats, source)
    return store


#: --jobs runs on tlslog.workers (fork); elsewhere a spawn pool: fork without exec is unsafe on macOS
_FORK = sys.platform.startswith("linux")


def _run_parallel(units: list[Unit], jobs: int, progress: Callable[[int, int], None] | None,
                  sizes: list[int]) -> list[UnitResult]:
    """The units on ``jobs`` processes; ``sizes``: each unit's bytes on disk (progress). Linux:
    :mod:`tlslog.workers` (this process is one of them; progress from the bytes every process has scanned).
    Elsewhere a spawn pool (fork is unsafe on macOS; Windows has none)."""
    total = sum(sizes)
    if not _FORK:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        done = 0
        out = []
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for size, res in zip(sizes, pool.map(run_unit, units, chunksize=1)):
                out.append(res)
                done += size
                if progress:
                    progress(done, total)
        return out
    from . import workers

    if progress is None:
        return workers.run(run_unit, units, jobs)

    def show() -> None:  # 100 % only once every result is in (scan() says it at the end)
        progress(min(workers.done_bytes(), max(0, total - 1)), total)

    def on_block(n: int) -> None:
        workers.add_bytes(n)
        show()

    def run_counted(i: int) -> UnitResult:
        """run_unit, counting the blocks of plain units as they go and a compressed file's size at its end (its
        blocks are decompressed bytes, the total is bytes on disk)."""
        global _block_hook
        unit = units[i]
        counted = unit.end is not None or _is_plain(unit.path)
        _block_hook = on_block if counted else None
        try:
            return run_unit(unit)
        finally:
            _block_hook = None
            if not counted:
                workers.add_bytes(sizes[i])
                show()

    return workers.run(run_counted, range(len(units)), jobs, on_wait=show)


def scan(opts: ScanOptions, *, warn_path: Callable[[str, str], None] | None = None) -> ScanResult:
    """Run a whole scan. ``warn_path(path, message)`` receives problems with arguments (unmatched globs)."""
    forced = decoders.lookup(opts.input_format) if opts.input_format else None
    arg_warnings: list[tuple[str, str]] = []
    inputs = expand(opts.paths, lambda p, m: arg_warnings.append((p, m)))
    if warn_path is not None:
        for p, m in arg_warnings:
            warn_path(p, m)
    units, failed = plan(inputs, forced, opts)
    by_file: dict[int, list[UnitResult]] = {}
    sizes = {inp.index: inp.size or 0 for inp in inputs}

    def unit_bytes(u: Unit) -> int:
        return (u.end - u.start) if u.end is not None else sizes.get(u.index, 0)

    total = sum(unit_bytes(u) for u in units)  # progress is reported in bytes on disk: (done, total)
    done = 0
    by_key = {(u.index, u.seq): u for u in units}
    if opts.mapper is not None:
        for res in opts.mapper(run_unit, units):
            by_file.setdefault(res.index, []).append(res)
            done += unit_bytes(by_key[(res.index, res.seq)])
            if opts.progress:
                opts.progress(done, total)
    elif opts.jobs > 1 and len(units) > 1:
        for res in _run_parallel(units, opts.jobs, opts.progress, [unit_bytes(u) for u in units]):
            by_file.setdefault(res.index, []).append(res)
        if opts.progress:
            opts.progress(total, total)
    else:
        global _block_hook
        for unit in units:
            size = unit_bytes(unit)
            if opts.progress and (unit.end is not None or _is_plain(unit.path)):
                seen = [0]

                def on_block(n: int, base: int = done, size: int = size, seen: list = seen) -> None:
                    seen[0] += n
                    opts.progress(base + min(seen[0], size), total)

                _block_hook = on_block
            try:
                res = run_unit(unit)
            finally:
                _block_hook = None
            by_file.setdefault(res.index, []).append(res)
            done += size
            if opts.progress:
                opts.progress(done, total)
    store = Store()
    for stream in streams(inputs):
        if stream[0].is_stdin:
            store.merge(_scan_stdin(stream[0], forced, opts.tz))
            continue
        results: list[UnitResult] = []
        sources: dict[int, str] = {}
        for inp in stream:
            for res in by_file.get(inp.index, []):
                results.append(res)
                fmt = decoders.FORMATS.get(res.store.files[inp.index].format)
                sources[inp.index] = fmt.source if fmt else "unknown"
        if results:
            store.merge(merge_stream(results, sources))
        for inp in stream:
            extra = failed.get(inp.index)
            if extra is None:
                continue
            fs = store.files.get(inp.index)
            if fs is None:
                store.files[inp.index] = extra
            else:
                fs.warnings[:0] = [w for w in extra.warnings if w not in fs.warnings]
    for fs in store.files.values():
        if fs.readable and fs.bytes_read == 0 and any(w.startswith(("cannot", "corrupt", "read error"))
                                                      for w in fs.warnings):
            fs.readable = False
    return ScanResult(store, inputs)


def streams(inputs: list[Input]) -> list[list[Input]]:
    """Consecutive inputs of one rotated set (``error_log.2.gz, error_log.1, error_log``) form one stream: an
    event cut by the rotation is joined across the files. Every other input is a stream of its own."""
    out: list[list[Input]] = []
    last_set = None
    for inp in inputs:
        key = None if inp.is_stdin else rotation_key(inp.path)[0]
        if key is not None and key == last_set and out:
            out[-1].append(inp)
        else:
            out.append([inp])
        last_set = key
    return out


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
