"""``tlslog scan --dask ADDRESS|local:N``: the scan's work units on a Dask cluster, merged as in one process.

The scan already cuts its input into picklable, independent :class:`~tlslog.scan.Unit` s (whole files, or byte
ranges of large plain files) whose :class:`~tlslog.scan.UnitResult` s merge in order to the one-process answer
(``tlslog.scan``'s module documentation). This module only changes *where* ``run_unit`` runs: ``client.map`` sends
the units to the workers and the results come back to be merged here. Nothing else differs, so the output is
identical to ``tlslog scan`` without ``--dask`` (a test compares them on a ``LocalCluster``).

``ADDRESS`` is a scheduler (``tcp://10.0.0.5:8786``, as ``dask scheduler`` prints it); ``local:N`` starts a
``LocalCluster`` of N single-threaded worker processes on this machine. Workers need tlslog installed
(``pip install 'tlsfront[dask]'``) and must see the files under the same paths (a shared file system), or the
paths must be fsspec URLs they can open (``s3://bucket/logs/*.gz``, with s3fs installed on client and workers):
see docs/analyzer-exports.md.

dask and distributed are optional (the ``[dask]`` extra); without them ``--dask`` says how to install them.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterable, Iterator

from . import decoders
from .scan import (
    ScanOptions,
    ScanResult,
    Unit,
    UnitResult,
    _finish_ctx,
    merge_stream,
    scan,
    scan_stream,
    streams,
)
from .sources import Input, decoded_chunks, rotation_key
from .store import FileStats, Store

Mapper = Callable[[Callable[[Unit], UnitResult], list[Unit]], Iterable[UnitResult]]


class DaskError(Exception):
    """--dask cannot be used; the message says why and what to do."""


def parse_spec(spec: str) -> tuple[str, int | str]:
    """``local:N`` -> ("local", N); anything else -> ("address", spec). ValueError names the bad value."""
    if spec.startswith("local:") or spec == "local":
        n = spec.partition(":")[2] or str(os.cpu_count() or 1)
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--dask {spec!r}: expected local:N with N >= 1 workers, or a scheduler address such "
                             "as tcp://127.0.0.1:8786")
        return "local", int(n)
    if not spec or spec.startswith("-"):
        raise ValueError(f"--dask {spec!r}: expected a scheduler address such as tcp://127.0.0.1:8786, or local:N")
    return "address", spec


@contextlib.contextmanager
def dask_client(spec: str, *, processes: bool = True, connect_timeout: str = "30s") -> Iterator["object"]:
    """A connected ``distributed.Client`` for ``spec`` (closed, with its LocalCluster, on exit)."""
    kind, value = parse_spec(spec)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DaskError("--dask needs dask and distributed: pip install 'tlsfront[dask]'") from None
    if kind == "local":
        cluster = LocalCluster(n_workers=int(value), threads_per_worker=1, processes=processes,
                               dashboard_address=None)
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    try:
        client = Client(str(value), timeout=connect_timeout)
    except (OSError, TimeoutError) as exc:
        raise DaskError(f"--dask {spec}: cannot reach the scheduler: {exc}; start one with `dask scheduler` and "
                        "workers with `dask worker ADDRESS`") from None
    try:
        yield client
    finally:
        client.close()


def dask_mapper(client) -> Mapper:
    """A ``ScanOptions.mapper`` running each unit as one Dask task, yielding results as they complete."""

    def mapper(fn: Callable[[Unit], UnitResult], units: list[Unit]) -> Iterator[UnitResult]:
        from distributed import as_completed

        if not units:
            return
        futures = client.map(fn, units, pure=False)
        for fut in as_completed(futures):
            yield fut.result()

    return mapper


def is_url(path: str) -> bool:
    """An fsspec URL (``s3://``, ``gs://``, ``https://``, ``file://`` ...), as opposed to a local path."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.isidentifier()


def expand_urls(urls: list[str]) -> list[str]:
    """fsspec URLs (globs and directories allowed) -> file URLs, rotated sets oldest first."""
    import fsspec

    out: list[str] = []
    for url in urls:
        fs, _token, paths = fsspec.get_fs_token_paths(url)
        found: list[str] = []
        for p in paths:
            if fs.isdir(p):
                found.extend(sorted(fs.find(p)))
            else:
                found.append(p)
        out.extend(fs.unstrip_protocol(p) for p in sorted(found, key=rotation_key))
    return out


def run_url_unit(unit: Unit) -> UnitResult:
    """:func:`tlslog.scan.run_unit` for an fsspec URL (whole file, format detected on the worker)."""
    import fsspec

    store = Store()
    stats = FileStats(unit.index, unit.path, unit.format or "unknown")
    store.files[unit.index] = stats

    def warn(msg: str) -> None:
        if msg not in stats.warnings:
            stats.warnings.append(msg)

    try:
        f = fsspec.open(unit.path, "rb").open()
    except FileNotFoundError:
        warn("cannot open: no such file or object")
        stats.readable = False
        return UnitResult(unit.index, unit.seq, store)
    except (OSError, ValueError) as exc:
        warn(f"cannot open: {exc}")
        stats.readable = False
        return UnitResult(unit.index, unit.seq, store)
    forced = decoders.FORMATS.get(unit.format) if unit.format else None
    with f:
        joiner, ctx, source = scan_stream(decoded_chunks(f, warn), forced, unit.index, unit.tz,
                                          stats, store, warn)
    _finish_ctx(ctx, store, stats, source)
    return UnitResult(unit.index, unit.seq, store, joiner.keys)


def scan_urls(opts: ScanOptions, mapper: Mapper | None = None) -> ScanResult:
    """Scan fsspec URLs (every path in ``opts.paths`` is one): files are listed here, read where ``mapper`` runs
    them (by default in this process), merged as :func:`tlslog.scan.scan` merges."""
    try:
        urls = expand_urls(opts.paths)
    except ImportError as exc:
        raise DaskError(f"cannot read {opts.paths[0]}: {exc}; install the fsspec backend for this URL scheme "
                        "(s3fs for s3://, gcsfs for gs://, adlfs for az://) here and on the workers") from None
    except (ValueError, OSError) as exc:
        raise DaskError(f"cannot list {' '.join(opts.paths)}: {exc}") from None
    inputs = [Input(i, u) for i, u in enumerate(urls)]
    forced = opts.input_format
    units = [Unit(i.index, 0, i.path, decoders.lookup(forced).name if forced else None, opts.tz) for i in inputs]
    run = mapper or (lambda fn, us: map(fn, us))
    by_file: dict[int, list[UnitResult]] = {}
    for res in run(run_url_unit, units):
        by_file.setdefault(res.index, []).append(res)
    store = Store()
    for stream in streams(inputs):
        results = [r for inp in stream for r in by_file.get(inp.index, [])]
        sources = {}
        for r in results:
            fmt = decoders.FORMATS.get(r.store.files[r.index].format)
            sources[r.index] = fmt.source if fmt else "unknown"
        if results:
            store.merge(merge_stream(results, sources))
    return ScanResult(store, inputs)


def scan_on_dask(opts: ScanOptions, spec: str, *, processes: bool = True, connect_timeout: str = "30s",
                 warn_path: Callable[[str, str], None] | None = None) -> ScanResult:
    """The whole ``tlslog scan --dask SPEC``: local paths through the scan's planner, URLs through fsspec."""
    urls = [p for p in opts.paths if is_url(p)]
    local = [p for p in opts.paths if not is_url(p)]
    if urls and local:
        raise DaskError("--dask: give either local paths or fsspec URLs, not both in one scan")
    with dask_client(spec, processes=processes, connect_timeout=connect_timeout) as client:
        mapper = dask_mapper(client)
        if urls:
            return scan_urls(opts, mapper)
        opts.mapper = mapper
        if opts.jobs < 2:  # let the planner cut large plain files into ranges: the cluster has many cores
            opts.jobs = max(2, len(client.scheduler_info().get("workers", {})))
        return scan(opts, warn_path=warn_path)
