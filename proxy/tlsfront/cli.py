"""The `tlsfront` command: serve, demo, check, version, cert.

    tlsfront serve -c FILE [--stderr]   run in the foreground
    tlsfront demo -c FILE               the `make run` demo (throwaway certificate, demo backend)
    tlsfront check -c FILE              apachectl configtest: load everything, report every problem
    tlsfront version                    tlsfront, Python, Twisted, pyOpenSSL, cryptography, OpenSSL
    tlsfront cert SUBCOMMAND ...        the FAQ's openssl recipes (genkey, csr, selfsign, ...)

Errors never show a traceback: a paragraph naming the file or key and the fix,
exit status 1 (set TLSFRONT_TRACEBACK=1 to see the traceback of an internal error).
`check` and `version` never import the Twisted reactor.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Sequence

from . import __version__
from .errors import ConfigErrors, in_file_order


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 1 like every other tlsfront error (argparse uses 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML configuration")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tlsfront",
        description="A TLS front end for legacy HTTP applications (mod_ssl + mod_proxy's job).",
    )
    parser.add_argument("-V", "--version", action="version", version=f"tlsfront {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    p = sub.add_parser("serve", help="run the proxy in the foreground")
    _add_config(p)
    p.add_argument("--stderr", action="store_true", help="also log to standard error")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="the demo: throwaway certificate, demo backend, the proxy")
    _add_config(p)
    p.add_argument("--stderr", action="store_true", help="also log to standard error")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("check", help="check a configuration (certificates, keys, paths) and exit")
    _add_config(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("version", help="versions of tlsfront and the libraries in use")
    p.set_defaults(func=cmd_version)

    from . import certtool

    certtool.add_parser(sub)
    return parser


def _tls_io_ok(command: str) -> bool:
    from . import tlsio

    try:
        tlsio.mode()
    except ValueError as exc:
        print(f"tlsfront {command}: {exc}", file=sys.stderr)
        return False
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    from . import config as config_mod

    if not _tls_io_ok("serve"):
        return 2
    cfg = config_mod.load(args.config)
    from . import serve  # lazily: it imports the Twisted reactor

    return serve.main(cfg, args) or 0


def cmd_demo(args: argparse.Namespace) -> int:
    if not _tls_io_ok("demo"):
        return 2
    from . import demo  # lazily: the data path's module, reactor and all

    return demo.main(args) or 0


def cmd_check(args: argparse.Namespace) -> int:
    """Load everything as `serve` would, without listening; print every problem."""
    from . import config as config_mod
    from . import tlsctx
    from .vhosts import VHostTable

    cfg, collector = config_mod.load_partial(args.config)
    if cfg is None:  # unreadable, or not TOML: nothing more to check
        collector.raise_if_any()
    assert cfg is not None
    warnings = list(cfg.warnings)
    found = list(collector.problems)
    # The vhosts that were valid still get their certificates and keys checked, so one run
    # shows every problem (a vhost whose `tls` table had errors was dropped: not checked twice).
    bad = {p.where.split(": ", 1)[-1].split(".", 1)[0] for p in collector.problems}
    checkable = tuple(v for v in cfg.vhosts if f"vhost[{v.index}]" not in bad)
    try:
        contexts, ctx_warnings = tlsctx.build_contexts_with_warnings(replace(cfg, vhosts=checkable))
        warnings += ctx_warnings
    except ConfigErrors as exc:
        found += exc.problems
        warnings += [str(w) for w in exc.warnings]
        contexts = {}
    problems = [str(p) for p in in_file_order(found)]
    path_errors, path_warnings = config_mod.check_runtime_paths(cfg)
    problems += path_errors
    warnings += path_warnings
    try:
        seeded = tlsctx.seed_random(cfg.server.random_seed, "startup")
    except RuntimeError as exc:
        problems.append(f"{cfg.path}: server.random_seed: {exc}")
        seeded = ""
    problems = list(dict.fromkeys(problems))  # the loader and tlsctx may both see a missing file
    warnings = list(dict.fromkeys(warnings))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        n = len(problems)
        print(f"{n} problem{'s' if n != 1 else ''} in the configuration:\n", file=sys.stderr)
        print("\n\n".join(problems), file=sys.stderr)
        return 1
    table = VHostTable(cfg.vhosts)
    n_tls = sum(1 for v in cfg.vhosts if v.is_tls)
    print(f"{cfg.path}: Syntax OK")
    print(f"  {len(cfg.vhosts)} vhost(s): {n_tls} TLS ({len(contexts)} contexts built), "
          f"{len(cfg.vhosts) - n_tls} plain HTTP")
    for v in cfg.vhosts:
        kind = "https" if v.is_tls else "http"
        backends = ", ".join(str(b) for b in v.backends) or (f"redirect to https://{v.redirect_to_https}"
                                                             if v.redirect_to_https else "-")
        print(f"  vhost[{v.index}] {kind}://{v.listen} {v.server_name} -> {backends}")
        if v.tls is not None:
            print(f"      {_tls_summary(v.tls)}")
    print(f"  listening sockets: {', '.join(str(a) for a in table.bind_addresses())}")
    from . import affinity, master  # plain sockets and os only: no reactor

    n = master.worker_count(cfg)
    grouped = [str(a) for a in table.bind_addresses() if affinity.wants_affinity(cfg, a, n)]
    print(f"  workers: {n}" + (" (one per CPU)" if not cfg.server.workers else "")
          + (f"; client-address affinity (session_cache = \"shared\") on {', '.join(grouped)}"
             if grouped else ""))
    if cfg.admin.listen is not None:
        print(f"  admin: http://{cfg.admin.listen}/")
    if seeded:
        print(f"  {seeded}")
    if warnings:
        print(f"  {len(warnings)} warning(s), shown above")
    return 0


def _tls_summary(tls) -> str:
    """One line per TLS vhost: protocol range, certificates (key, subject, expiry), client auth."""
    from . import keys, protocols

    rng = protocols.parse(tls.protocols)
    minimum = rng.minimum if tls.insecure_legacy_protocols else max(rng.minimum, "TLSv1.2", key=protocols.ORDER.index)
    parts = [f"{minimum}..{rng.maximum}" if minimum != rng.maximum else minimum]
    for pair in tls.certs:
        leaf = keys.load_certificates(pair.cert_file)[0]
        parts.append(f"{keys.key_type_name(leaf.public_key())} {leaf.subject.rfc4514_string()} "
                     f"until {leaf.not_valid_after_utc:%Y-%m-%d}")
    if tls.client.verify != "none":
        parts.append(f"client certificates: {tls.client.verify} (depth {tls.client.depth})")
    parts.append(f"session cache {tls.session_cache}, tickets {'on' if tls.session_tickets and tls.session_cache != 'off' else 'off'}")
    return "; ".join(parts)


def cmd_version(args: argparse.Namespace) -> int:
    from . import versions

    print(versions.render())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except ConfigErrors as exc:
        for w in exc.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(f"tlsfront {args.command}: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("tlsfront: interrupted", file=sys.stderr)
        status = 1
    except BrokenPipeError:
        status = 1
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - last resort: never a traceback for the user
        if os.environ.get("TLSFRONT_TRACEBACK"):
            raise
        print(f"tlsfront {args.command}: internal error: {type(exc).__name__}: {exc}\n"
              "    this is a bug in tlsfront; run again with TLSFRONT_TRACEBACK=1 and report the "
              "traceback with the output of `tlsfront version`", file=sys.stderr)
        status = 1
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
