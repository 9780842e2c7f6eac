"""Regenerate tests/data/ from real servers: `python -m tests.corpus.build [--only apache,nginx,haproxy]`.

Run as root from the repository root (the servers drop to www-data, so that file modes
bite); needs apache2 (mod_ssl), nginx, haproxy, openssl and curl from Debian. About a
minute. Each server runs on free 127.0.0.1 ports with its own config in a temp dir and is
stopped at the end. Every log file gets `<file>.truth.json`, counted from what the driver
did (see common.Tally), cross-checked against one grep per category (check_signatures).
The hand-made `legacy/` files are not touched.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from . import apache, haproxy, nginx
from .common import (
    RUN_USER, LogDisagrees, Tally, check_signatures, chown_tree, count_lines, fresh_case, make_pki, retrying,
    write_truth,
)

DATA = Path(__file__).resolve().parent.parent / "data"  # logs/<case>/<file> and truth/<case>/<file>.truth.json

# One crude signature per category in Apache 2.4 + OpenSSL 3 wording: (regex, category).
APACHE_SIGNATURES = {
    "plain_http_on_tls_port": r"AH01996: SSL handshake failed: HTTP spoken on HTTPS port",
    "client_rejected_cert": r"SSL Library Error: .*alert unknown ca",
    "no_shared_cipher": r"SSL Library Error: .*no shared cipher",
    "protocol_mismatch": r"SSL Library Error: .*unsupported protocol",
    "client_cert_missing": r"SSL Library Error: .*peer did not return a certificate",
    # AH02276 at info (with subject/issuer); at LogLevel warn httpd says AH02039 at [ssl:error]
    "client_cert_invalid": r"(AH02276|AH02039): Certificate Verification: Error",
    "handshake_eof_or_reset": r"AH02006: SSL handshake stopped",
    "handshake_timeout": r"AH01382: Request handshake read timeout",
    "backend_unavailable": r"AH01114: HTTP: failed to make connection to backend",
    "backend_timeout": r"AH01102: error reading status line",
}
APACHE_STARTUP_SIGNATURES = {
    "key_cert_mismatch": r"AH02565: Certificate and private key .* do not match",
    "passphrase_failure": r"AH02580: Init: Pass phrase incorrect",
    "cert_file_unreadable": r"AH02562: Failed to configure certificate .*\n.*Permission denied",
    "mutex_permission_denied": r"\(13\)Permission denied: AH00023: Couldn't create the ssl-cache mutex",
    "session_cache_error": r"AH01874: Could not initialize session cache",
}

# httpd 2.2's error_log layout (no module, no pid/tid, errno before the client) on 2.4 messages
ERRORLOGFORMAT_22 = r"[%t] [%l] %E: [client\ %a] %M"


# httpd's default LogLevel is warn: of the provoked failures only mod_proxy's errors
# (AH01114, AH01102 at [proxy_http:error]) and the client certificate verification errors
# (AH02039 at [ssl:error]) reach the log; mod_ssl's handshake reports (AH02008, AH01996,
# AH02006) and mod_reqtimeout's AH01382 are [info]. What is not in the log is not an event.
VISIBLE_AT_WARN = {"backend_unavailable", "backend_timeout", "client_cert_invalid"}


def _apache_truths(out: Path, t: Tally, *, access: bool, warn_only: bool = False) -> None:
    if warn_only:
        hidden = {c: n for c, n in t.events.items() if c not in VISIBLE_AT_WARN}
        check_signatures(out / "error.log", {c: (APACHE_SIGNATURES[c], 0) for c in hidden}
                         | {"any mod_ssl library error": (r"SSL Library Error|AH02008", 0)})
        t.notes.append({"provoked_but_not_logged_at_warn": dict(sorted(hidden.items()))})
        for c in hidden:
            del t.events[c]
    expected = {name: (APACHE_SIGNATURES[name], n) for name, n in t.events.items()}
    check_signatures(out / "error.log", expected)
    write_truth(out / "error.log", events=t.events, extra=t.notes[0] if t.notes else None)
    if not access:
        (out / "access.log").unlink()
        (out / "access_common.log").unlink()
        (out / "other_vhosts_access.log").unlink()
        (out / "ssl_request.log").unlink()
        return
    requests = sum(t.status.values())
    for name in ("access.log", "access_common.log", "other_vhosts_access.log"):
        if count_lines(out / name) != requests:
            raise RuntimeError(f"{out / name}: {count_lines(out / name)} lines, driver made {requests} requests")
        write_truth(out / name, status=t.status)
    # ssl_request_log has no status field; requests without TLS (plain HTTP) show "-"
    check_signatures(out / "ssl_request.log", {
        p: (rf"^\[[^]]+\] \S+ {p} ", n) for p, n in t.protocols.items()
    } | {"no TLS": (r"^\[[^]]+\] \S+ - - ", t.events["plain_http_on_tls_port"])})
    write_truth(out / "ssl_request.log", protocols=t.protocols, ciphers=t.ciphers)


def build_apache(root: Path, work: Path, pki) -> None:
    runs = (  # case, MPM, ErrorLogFormat, keep access logs, concurrent clients, LogLevel
        ("apache24-event", "event", None, True, False, "info ssl:info"),
        ("apache24-prefork", "prefork", None, False, False, "info ssl:info"),
        ("apache24-errorlogformat22", "event", ERRORLOGFORMAT_22, False, False, "info ssl:info"),
        ("apache24-concurrent", "event", None, False, True, "info ssl:info"),
        ("apache24-loglevel-warn", "event", None, False, False, "warn"),
    )
    for name, mpm, fmt, access, concurrent, level in runs:

        def once(mpm=mpm, fmt=fmt, access=access, name=name, concurrent=concurrent, level=level) -> Tally:
            out = fresh_case(root, name)
            t = apache.run_main(out, work / f"{name}-{uuid.uuid4().hex[:6]}", pki, mpm=mpm, error_log_format=fmt,
                                concurrent=concurrent, log_level=level)
            _apache_truths(out, t, access=access, warn_only=(level == "warn"))
            if concurrent and apache.interleavings(out / "error.log") == 0:
                raise LogDisagrees(f"{out}/error.log: no interleaved lines; the case would test nothing")
            return t

        # interleaving is a race: the concurrent case may need a few runs to show one
        t = retrying(once, attempts=10 if concurrent else 3)
        print(f"{name}: {dict(t.events)} status {dict(t.status)} protocols {dict(t.protocols)}")
    out = fresh_case(root, "apache24-startup")
    t = apache.run_startup_failures(out, work, pki)
    check_signatures(out / "error_startup.log", {k: (APACHE_STARTUP_SIGNATURES[k], n) for k, n in t.events.items()})
    check_signatures(out / "error_startup.log", {"AH00016/AH00020": (r"AH000(16|20): Configuration Failed",
                                                                     sum(t.events.values()))})
    write_truth(out / "error_startup.log", events=t.events)
    print(f"apache24-startup: {dict(t.events)}")


BUILDERS = {"apache": build_apache,
            "nginx": lambda r, w, p: retrying(lambda: nginx.build(r, w / f"n-{uuid.uuid4().hex[:6]}", p)),
            # HAProxy 2.6 loses about 1 client alert in 10 (logs fc_err 34 without the OpenSSL
            # reason: the client's close races the alert); a run has 2, so allow more reruns
            "haproxy": lambda r, w, p: retrying(lambda: haproxy.build(r, w / f"h-{uuid.uuid4().hex[:6]}", p),
                                                attempts=6)}


# server -> the commands its driver runs (Debian packages: apache2, nginx, haproxy, openssl, curl)
TOOLS = {"apache": ("apache2", "openssl", "curl", "setpriv"), "nginx": ("nginx", "openssl", "curl", "setpriv"),
         "haproxy": ("haproxy", "openssl", "curl", "setpriv")}


def preflight(wanted: list[str]) -> str | None:
    """Why the build cannot run here (None if it can): not root, or a tool missing."""
    if os.geteuid() != 0:
        return ("must run as root: the servers are started as www-data (setpriv) so that a mode-000 "
                "certificate and a mutex directory without x really fail; "
                "run: sudo .venv/bin/python -m tests.corpus.build")
    missing = sorted({t for w in wanted for t in TOOLS[w] if not shutil.which(t)})
    if missing:
        return (f"missing commands {', '.join(missing)}: "
                "install them with `bash tests/install-sysdeps.sh` (Debian packages)")
    try:
        pwd.getpwnam(RUN_USER)
    except KeyError:
        return f"user {RUN_USER!r} does not exist (Debian creates it with the apache2 package)"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.corpus.build", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BUILDERS), help="comma-separated: " + ", ".join(BUILDERS))
    ap.add_argument("--out", type=Path, default=DATA,
                    help="root of logs/ and truth/ (default: tests/data; the legacy/ case is never touched)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, keys) for inspection")
    args = ap.parse_args(argv)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(wanted) - set(BUILDERS))
    if unknown:
        ap.error(f"unknown server(s) {', '.join(unknown)}: choose from {', '.join(BUILDERS)}")
    problem = preflight(wanted)
    if problem:
        print(f"tests.corpus.build: {problem}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tlslog-corpus-"))
    try:
        pki = make_pki(work / "pki")
        chown_tree(work)  # the servers run as www-data and read the keys
        for w in wanted:
            BUILDERS[w](args.out, work, pki)
    except LogDisagrees as e:
        print(f"tests.corpus.build: {w}: the server's log kept disagreeing with the driver after retries; "
              "its logs/ and truth/ are incomplete; run again (git checkout tests/data restores the "
              f"committed corpus). {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
