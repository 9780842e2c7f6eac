"""Command-line parts of issue 9: ``tlslog follow``, ``tlslog backfill`` and the export options of ``tlslog scan``.

Usage::

    tlslog follow PATH... [--listen 127.0.0.1:9469] [--positions FILE] [--textfile FILE] [--poll-interval 0.25]
    tlslog backfill PATH... --out FILE [--step 1m] [--jobs N]
    tlslog scan PATH... [--textfile FILE] [--push URL [--job NAME]] [--dask ADDRESS|local:N]

``cli.py`` calls :func:`add_scan_options`, :func:`add_commands`, :func:`run_command`, :func:`scan_mapper` and
:func:`export_scan`; everything else lives here. Errors are one line naming the option, the value and the fix;
exit status 2 for usage errors, 1 when an export failed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import decoders
from .prometheus import DEFAULT_MAX_VHOSTS

COMMANDS = ("follow", "backfill")


def _error(msg: str, status: int = 2) -> int:
    print(f"tlslog: error: {msg}", file=sys.stderr)
    return status


def _warn_path(path: str, msg: str) -> None:
    print(f"tlslog: warning: {path}: {msg}", file=sys.stderr)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timezone", metavar="TZ", default=None,
                   help="time zone of log timestamps that carry none (Apache, nginx, HAProxy); default: local")
    p.add_argument("--input-format", metavar="NAME", default=None,
                   help=f"skip detection; one of: {', '.join(sorted(decoders.FORMATS))}")


def add_scan_options(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("exports (issue 9)")
    g.add_argument("--textfile", metavar="FILE", default=None,
                   help="also write the metrics to FILE, atomically, for node_exporter's textfile collector")
    g.add_argument("--push", metavar="URL", default=None, help="also push the metrics to a Pushgateway at URL")
    g.add_argument("--job", metavar="NAME", default="tlslog", help="Pushgateway job name (default tlslog)")
    g.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run the work on a Dask cluster: a scheduler address (tcp://host:8786) or local:N")


def add_commands(sub) -> None:
    f = sub.add_parser("follow", help="follow growing logs (tail -F) and serve /metrics",
                       description="Follow log files through rotation and export what they hold as Prometheus "
                                   "metrics. PATH may be a glob (quote it): files that appear later are picked up.")
    f.add_argument("paths", nargs="+", metavar="PATH", help="file or quoted glob")
    f.add_argument("--listen", metavar="HOST:PORT", default=None, help="serve /metrics there, e.g. 127.0.0.1:9469")
    f.add_argument("--positions", metavar="FILE", default=None,
                   help="remember offsets and counts in FILE so that a restart neither re-counts nor skips lines")
    f.add_argument("--textfile", metavar="FILE", default=None,
                   help="also write the metrics to FILE (atomically) at every checkpoint and at exit")
    f.add_argument("--poll-interval", type=float, default=0.25, metavar="SECONDS",
                   help="how often to look for new lines and rotations when idle (default 0.25)")
    f.add_argument("--checkpoint-interval", type=float, default=5.0, metavar="SECONDS",
                   help="how often to write --positions/--textfile (default 5; also after each rotation)")
    f.add_argument("--drain-seconds", type=float, default=5.0, metavar="SECONDS",
                   help="read a rotated-away file until it has not grown for this long (default 5)")
    f.add_argument("--start-at", choices=("beginning", "end"), default="beginning",
                   help="files present at start without a position: read them whole or only what is added")
    f.add_argument("--max-vhosts", type=int, default=DEFAULT_MAX_VHOSTS, metavar="N",
                   help=f"distinct vhost label values before 'other' (default {DEFAULT_MAX_VHOSTS})")
    _common(f)
    b = sub.add_parser("backfill", help="archived logs -> OpenMetrics with timestamps for promtool",
                       description="Write tlslog_events_total{category,source} as it was every --step, for "
                                   "`promtool tsdb create-blocks-from openmetrics FILE DIR` (docs/backfill.md).")
    b.add_argument("paths", nargs="+", metavar="PATH", help="file, directory or glob (compressed or not)")
    b.add_argument("--out", metavar="FILE", required=True, help="the OpenMetrics file to write")
    b.add_argument("--step", default="1m", metavar="DURATION", help="sample interval: 30s, 1m, 5m, 1h (default 1m)")
    b.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="worker processes (default 1)")
    _common(b)


def _check_common(args: argparse.Namespace) -> str | None:
    if args.timezone:
        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return f"--timezone {args.timezone!r}: unknown time zone; use an IANA name such as UTC or Europe/Berlin"
    if args.input_format:
        try:
            decoders.lookup(args.input_format)
        except ValueError as exc:
            return f"--input-format: {exc}"
    return None


def run_command(args: argparse.Namespace) -> int:
    problem = _check_common(args)
    if problem:
        return _error(problem)
    if args.command == "follow":
        return cmd_follow(args)
    return cmd_backfill(args)


# -- scan ----------------------------------------------------------------------------------------------------------

def scan_with_dask(args: argparse.Namespace, opts, warn_path):
    """Run the scan on Dask when ``--dask`` is given, or through fsspec when the paths are URLs; returns the
    ScanResult, or an int exit status on error, or None for a plain local scan (the caller scans as usual)."""
    dask = getattr(args, "dask", None)
    if not dask and not any("://" in p for p in opts.paths):
        return None  # a plain local scan: tlslog.distributed is not even imported (1-2 ms of start-up)
    from .distributed import DaskError, is_url, parse_spec, scan_on_dask, scan_urls

    urls = any(is_url(p) for p in opts.paths)
    if not dask and not urls:
        return None

    try:
        if not dask:
            if not all(is_url(p) for p in opts.paths):
                raise DaskError("give either local paths or fsspec URLs, not both in one scan")
            return scan_urls(opts)
        parse_spec(dask)
        return scan_on_dask(opts, dask, warn_path=warn_path)
    except (ValueError, DaskError) as exc:
        return _error(str(exc))


def export_scan(args: argparse.Namespace, store) -> int:
    """After a scan: --textfile and --push. Returns 0, or 1 if an export failed (the error is printed)."""
    if not (getattr(args, "textfile", None) or getattr(args, "push", None)):
        return 0
    from .exporters import ExportError, push, registry_for, write_textfile

    registry = registry_for(lambda: store, max_vhosts=args.max_vhosts)
    status = 0
    try:
        if args.textfile:
            write_textfile(args.textfile, registry)
    except ExportError as exc:
        status = _error(str(exc), 1)
    try:
        if args.push:
            push(args.push, args.job, registry)
    except ExportError as exc:
        status = _error(str(exc), 1)
    return status


# -- follow --------------------------------------------------------------------------------------------------------

def cmd_follow(args: argparse.Namespace) -> int:
    from . import positions
    from .exporters import ExportError, follow_families, parse_listen, registry_for, serve, write_textfile
    from .follow import Follower, FollowOptions, run

    for name in ("poll_interval", "checkpoint_interval", "drain_seconds"):
        if getattr(args, name) <= 0:
            return _error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be more than 0 seconds")
    if args.max_vhosts < 1:
        return _error(f"--max-vhosts {args.max_vhosts}: must be 1 or more")
    if not (args.listen or args.textfile):
        return _error("follow: nothing to export; give --listen HOST:PORT (for Prometheus to scrape) and/or "
                      "--textfile FILE (for node_exporter)")
    if args.listen:
        try:
            parse_listen(args.listen)
        except ValueError as exc:
            return _error(str(exc))
    snapshot = None
    if args.positions:
        try:
            snapshot = positions.load(args.positions)
        except positions.PositionsError as exc:
            return _error(str(exc))
    opts = FollowOptions(list(args.paths), args.input_format, args.timezone, args.start_at, args.drain_seconds)
    follower = Follower(opts, snapshot=snapshot)

    def extra():
        return follow_families(follower.files_followed, dict(follower.rotations), follower.read_errors)

    registry = registry_for(lambda: follower.store, max_vhosts=args.max_vhosts, lock=follower.lock, extra=extra)
    server = None
    if args.listen:
        try:
            server, _thread = serve(args.listen, registry)
        except ExportError as exc:
            return _error(str(exc))
        host, port = server.server_address[:2]
        print(f"tlslog: serving /metrics on http://{host}:{port}/metrics", file=sys.stderr, flush=True)

    failures: list[str] = []

    def checkpoint() -> None:
        try:
            if args.positions:
                positions.save(args.positions, follower.snapshot())
            if args.textfile:
                write_textfile(args.textfile, registry)
        except (OSError, ExportError) as exc:
            msg = str(exc) if isinstance(exc, ExportError) else f"--positions {args.positions}: cannot write: {exc}"
            if msg not in failures:  # say it once; keep following (the next checkpoint may succeed)
                failures.append(msg)
                print(f"tlslog: error: {msg}", file=sys.stderr, flush=True)

    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(follower, stop, poll_interval=args.poll_interval,
            checkpoint=checkpoint if (args.positions or args.textfile) else None,
            checkpoint_seconds=args.checkpoint_interval)
    finally:
        follower.close()
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0


# -- backfill ------------------------------------------------------------------------------------------------------

def cmd_backfill(args: argparse.Namespace) -> int:
    from .backfill import backfill, parse_step

    try:
        step = parse_step(args.step)
    except ValueError as exc:
        return _error(str(exc))
    if args.jobs < 1:
        return _error(f"--jobs {args.jobs}: must be 1 or more")
    try:
        store, timeline, n = backfill(list(args.paths), args.out, step, input_format=args.input_format,
                                      tz=args.timezone, jobs=args.jobs, warn=_warn_path)
    except ValueError as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"--out {args.out}: cannot write: {exc.strerror or exc}", 1)
    events = sum(timeline.buckets.values())
    print(f"tlslog: {args.out}: {n} samples of {events} events ({timeline.untimed} without a timestamp left out)",
          file=sys.stderr)
    if timeline.untimed:
        _warn_path(args.out, f"{timeline.untimed} event(s) had no timestamp in their log line and were left out")
    if not any(fs.readable for fs in store.files.values()):
        return _error("no input could be read", 1)
    return 0
