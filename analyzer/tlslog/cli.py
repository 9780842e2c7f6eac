"""``tlslog``: find, classify and explain TLS and proxy errors in server logs.

Usage::

    tlslog scan PATH... [--format table|json|prometheus] [--timezone TZ] [--jobs N] [--input-format NAME]
    tlslog catalog

``PATH`` is a file (plain, .gz, .bz2, .xz, .zst), a directory, a glob or ``-`` (standard input). Exit status: 0 when
at least one input could be read, 1 when none could, 2 for a usage error. Problems with single inputs are warnings on
standard error (once per file); the scan goes on.
"""

from __future__ import annotations

import argparse
import sys
import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import __version__, cli_exports, decoders
from .catalog import render_catalog


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tlslog", description="Find, classify and explain TLS and proxy errors in "
                                "tlsfront, Apache, nginx and HAProxy logs.")
    p.add_argument("--version", action="version", version=f"tlslog {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scan", help="scan logs and report events per category")
    s.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, glob or - for standard input")
    s.add_argument("--format", choices=("table", "json", "prometheus"), default=None,
                   help="output format (default: table on a terminal, json otherwise)")
    s.add_argument("--timezone", metavar="TZ", default=None,
                   help="time zone of log timestamps that carry none (Apache, nginx, HAProxy); default: local")
    s.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="worker processes (default 1)")
    s.add_argument("--input-format", metavar="NAME", default=None,
                   help=f"skip detection; one of: {', '.join(sorted(decoders.FORMATS))}")
    s.add_argument("--max-vhosts", type=int, default=50, metavar="N",
                   help="prometheus output: distinct vhost label values before 'other' (default 50)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
    sub.add_parser("catalog", help="list the event categories with description and remedy")
    cli_exports.add_scan_options(s)  # issue 9: --textfile, --push/--job, --dask; follow and backfill commands
    cli_exports.add_commands(sub)
    return p


def _error(msg: str) -> int:
    print(f"tlslog: error: {msg}", file=sys.stderr)
    return 2


class _Progress:
    """A one-line progress bar on standard error: only on a terminal, only for large inputs (64 MiB or more) and
    only once a scan has run for a second, so that small scans and pipelines never see it."""

    MIN_BYTES = 64 << 20

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()
        self.shown = False
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < self.MIN_BYTES:
            return
        now = time.monotonic()
        if now - self.started < 1.0 or (now - self.last < 0.2 and done < total):
            return
        self.last = now
        width = 30
        frac = min(1.0, done / max(total, 1))
        filled = int(width * frac)
        rate = done / max(now - self.started, 1e-6) / 1e6
        sys.stderr.write(f"\rtlslog: [{'#' * filled}{'.' * (width - filled)}] {frac:4.0%} "
                         f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB {rate:,.0f} MB/s ")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 78 + "\r")
            sys.stderr.flush()


def cmd_scan(args: argparse.Namespace) -> int:
    from .prometheus import render_prometheus
    from .render import render_json, render_table
    from .scan import ScanOptions, scan

    if args.timezone:
        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return _error(f"--timezone {args.timezone!r}: unknown time zone; use an IANA name such as UTC or "
                          "Europe/Berlin")
    if args.input_format:
        try:
            decoders.lookup(args.input_format)
        except ValueError as exc:
            return _error(f"--input-format: {exc}")
    if args.jobs < 1:
        return _error(f"--jobs {args.jobs}: must be 1 or more")
    if args.max_vhosts < 1:
        return _error(f"--max-vhosts {args.max_vhosts}: must be 1 or more")
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    progress = _Progress(sys.stderr.isatty() and not args.no_progress)

    def warn_path(path: str, msg: str) -> None:
        print(f"tlslog: warning: {path}: {msg}", file=sys.stderr)

    opts = ScanOptions(list(args.paths), args.input_format, args.timezone, args.jobs, progress=progress)
    result = cli_exports.scan_with_dask(args, opts, warn_path)
    if isinstance(result, int):
        return result
    if result is None:
        result = scan(opts, warn_path=warn_path)
    progress.close()
    for fs in result.files:
        for w in fs.warnings:
            print(f"tlslog: warning: {fs.path}: {w}", file=sys.stderr)
    if fmt == "json":
        text = render_json(result)
    elif fmt == "prometheus":
        text = render_prometheus(result.store, max_vhosts=args.max_vhosts)
    else:
        text = render_table(result, tz=args.timezone)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    if not result.anything_read:
        print("tlslog: error: no input could be read", file=sys.stderr)
        return 1
    return cli_exports.export_scan(args, result.store)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "catalog":
            sys.stdout.write(render_catalog())
            return 0
        if args.command in cli_exports.COMMANDS:
            return cli_exports.run_command(args)
        return cmd_scan(args)
    except KeyboardInterrupt:
        print("tlslog: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
