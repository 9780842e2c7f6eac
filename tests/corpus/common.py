"""Shared machinery for the corpus drivers: ports, PKI, backends, clients, tallies, truth files.

The ground truth of every corpus file is what the *driver* did, counted as it did it
(`Tally.hit`), never what an analyzer says. After each run `check_signatures` greps the
log for one crude signature per category and refuses to write a truth the server's own
log contradicts (a server that logged nothing for a trigger, or twice): the grep is a
consistency check, the count still comes from the driver.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from tlsfront import certgen

# issue 3's categories, in its order; every truth file lists all of them.
CATEGORIES: tuple[str, ...] = (
    "plain_http_on_tls_port",
    "client_rejected_cert",
    "no_shared_cipher",
    "protocol_mismatch",
    "client_cert_missing",
    "client_cert_invalid",
    "handshake_eof_or_reset",
    "handshake_timeout",
    "prng_not_seeded",
    "mutex_permission_denied",
    "key_cert_mismatch",
    "passphrase_failure",
    "cert_file_unreadable",
    "session_cache_error",
    "backend_unavailable",
    "backend_timeout",
    "other_tls_error",
)

RUN_USER = "www-data"  # servers drop to this user so that chmod 000 and mutex dirs bite


_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # tests/ (ports.py), also under `python -m tests.corpus.build`
    sys.path.insert(0, _TESTS)
from ports import free_port  # noqa: E402,F401  - leased: the server binds it later, no race (tests/ports.py)


def _listening_ports() -> set[int]:
    """Ports in LISTEN state on IPv4 (from /proc/net/tcp, state 0A), without connecting."""
    ports = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "0A":
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def wait_port(port: int, timeout_seconds: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """Poll until 127.0.0.1:port is listening (fail early if `proc` died).

    Never connects: a probe connection that closes at once is itself a handshake EOF,
    which the servers log and which would then be missing from the truth.
    """
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} before listening on {port}: {err}")
        if port in _listening_ports():
            time.sleep(0.2)  # the listener exists; let the workers start accepting
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_seconds}s")


def chown_tree(path: Path, user: str = RUN_USER) -> None:
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            shutil.chown(name, user, user)


# ---------------------------------------------------------------- PKI

@dataclass
class CorpusPKI:
    """Certificates for the corpus servers and clients (made fresh per build, never committed)."""

    dir: Path
    ca: Path  # signs the server leaf; curl does NOT trust it, so curl rejects the server
    server_cert: Path  # EC P-256, localhost + 127.0.0.1, chain included
    server_key: Path
    other_key: Path  # a key that does not match server_cert
    enc_key: Path  # server_key encrypted with pass phrase "right-pass"
    client_ca: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path
    stranger_cert: Path  # client certificate from a CA the server does not know
    stranger_key: Path
    combined_pem: Path  # HAProxy: cert + key in one file


def make_pki(d: Path) -> CorpusPKI:
    d.mkdir(parents=True, exist_ok=True)
    root = certgen.issue("corpus root CA", is_ca=True, days=3650)
    server = certgen.issue("localhost", issuer=root, dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    other = certgen.issue("other.test", issuer=root)
    client_ca = certgen.issue("corpus client CA", is_ca=True, days=3650)
    client = certgen.issue("alice", issuer=client_ca, client=True)
    now = dt.datetime.now(dt.timezone.utc)
    expired = certgen.issue("bob-expired", issuer=client_ca, client=True,
                            not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))
    stranger_ca = certgen.issue("unknown CA", is_ca=True)
    stranger = certgen.issue("mallory", issuer=stranger_ca, client=True)
    certgen.write_file(d / "ca.crt", root.cert_pem())
    certgen.write_file(d / "server.crt", server.cert_pem() + root.cert_pem())
    certgen.write_file(d / "server.key", server.key_pem(), mode=0o600)
    certgen.write_file(d / "other.key", other.key_pem(), mode=0o600)
    certgen.write_file(d / "server-enc.key", server.key_pem(b"right-pass"), mode=0o600)
    certgen.write_file(d / "server.pem", server.cert_pem() + root.cert_pem() + server.key_pem(), mode=0o600)
    certgen.write_file(d / "client-ca.crt", client_ca.cert_pem())
    for name, issued in (("client", client), ("expired", expired), ("stranger", stranger)):
        issued.write(d / f"{name}.crt", d / f"{name}.key")
    return CorpusPKI(d, d / "ca.crt", d / "server.crt", d / "server.key", d / "other.key",
                     d / "server-enc.key", d / "client-ca.crt", d / "client.crt", d / "client.key",
                     d / "expired.crt", d / "expired.key", d / "stranger.crt", d / "stranger.key",
                     d / "server.pem")


# ---------------------------------------------------------------- backends

class _OkHandler(BaseHTTPRequestHandler):
    """A backend that answers 200 "ok" (or 404 under /missing)."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        code = 404 if self.path.startswith("/missing") else 200
        body = b"ok\n" if code == 200 else b"not here\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def backends() -> Iterator[dict[str, int]]:
    """Three backends: `ok` (answers), `dead` (refuses: nothing listens), `silent` (accepts, never answers).

    `silent` is a listening socket nobody accepts on: the kernel completes the TCP
    handshake from the backlog, so the proxy connects and then waits for a status line
    that never comes (its read timeout fires: backend_timeout).
    """
    ok = ThreadingHTTPServer(("127.0.0.1", 0), _OkHandler)
    ok.daemon_threads = True
    t = threading.Thread(target=ok.serve_forever, daemon=True)
    t.start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        yield {"ok": ok.server_address[1], "dead": free_port(), "silent": silent.getsockname()[1]}
    finally:
        ok.shutdown()
        ok.server_close()
        silent.close()


# ---------------------------------------------------------------- clients

def status_class(code: int) -> str:
    return f"{code // 100}xx"


def plain_http(port: int) -> int:
    """Speak plain HTTP to a TLS port; return the status the server answered (0: none)."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\nUser-Agent: corpus-plain\r\n\r\n")
        data = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(4096):
                data += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else 0


def curl_untrusting(port: int, path: str = "/") -> int:
    """curl without the CA: it rejects the server's certificate and sends an alert (unknown ca)."""
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "5", f"https://127.0.0.1:{port}{path}"],
                       capture_output=True)
    return r.returncode  # 60: peer certificate cannot be authenticated


def s_client(port: int, *args: str) -> int:
    """`openssl s_client` with extra args, stdin closed; return its exit code."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args],
                       input=b"", capture_output=True, timeout=10)
    return r.returncode


@dataclass
class Response:
    status: int  # 0: no HTTP response (handshake refused)
    protocol: str  # as the client negotiated it, e.g. TLSv1.3 ("" if no handshake)
    cipher: str
    error: str = ""


def drive_successes(pki, main: int, verify: int, paths, t) -> None:
    """The requests every driver makes first, tallied in `t`: each (path, status) over TLS 1.3
    and TLS 1.2 on `main`, then one request with a valid client certificate on `verify`."""
    for path, want in paths:
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            r = tls_request(main, path, ca=pki.ca, version=version)
            assert r.status == want, (path, r)
            t.request(r)
    r = tls_request(verify, "/", ca=pki.ca, cert=(pki.client_cert, pki.client_key))
    assert r.status == 200, r
    t.request(r)


def provoke_refusals(port: int, t) -> None:
    """The client-side handshake failures every server sees alike, tallied in `t`: curl
    rejecting the certificate twice (alert unknown ca), two cipher lists and two protocols
    the server refuses (no shared cipher, protocol mismatch)."""
    for _ in range(2):
        assert curl_untrusting(port) == 60
        t.hit("client_rejected_cert")
    for args, category in (
        (("-tls1_2", "-cipher", "AES128-SHA256:AES256-SHA"), "no_shared_cipher"),
        (("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"), "no_shared_cipher"),
        (("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"), "protocol_mismatch"),
        (("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"), "protocol_mismatch"),
    ):
        assert s_client(port, *args) != 0
        t.hit(category)


def tls_request(port: int, path: str = "/", *, ca: Path | None = None, cert: tuple[Path, Path] | None = None,
                version: ssl.TLSVersion | None = None, ciphers: str | None = None,
                timeout_seconds: float = 10.0) -> Response:
    """One HTTP/1.0 request over TLS with Python's ssl; report status, protocol and cipher."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    if ciphers:
        ctx.set_ciphers(ciphers)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    proto = cipher = ""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout_seconds) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as s:
            proto, cipher = s.version() or "", s.cipher()[0]
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: corpus-client\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except (OSError, ssl.SSLError) as e:
        return Response(0, proto, cipher, f"{type(e).__name__}: {e}")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return Response(int(m.group(1)) if m else 0, proto, cipher)


def connect_close(port: int, *, send: bytes = b"", reset: bool = False) -> None:
    """Connect, optionally send some bytes (a truncated ClientHello), then close (FIN) or reset (RST)."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    if send:
        s.sendall(send)
    time.sleep(0.1)
    if reset:
        # SO_LINGER with a zero timeout turns close() into a RST (RFC 793 abort)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def idle_until_closed(port: int, wait_seconds: float = 8.0) -> None:
    """Connect and send nothing until the server gives up (a handshake timeout)."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.settimeout(wait_seconds)
        with contextlib.suppress(OSError):
            s.recv(1)


def client_hello_prefix() -> bytes:
    """The first bytes of a real ClientHello (made with Python's ssl over a MemoryBIO), cut short."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    return hello[: len(hello) // 2]


# ---------------------------------------------------------------- truth

@dataclass
class Tally:
    """What the driver triggered against one server, to become the truth of its log files."""

    events: Counter = field(default_factory=Counter)
    status: Counter = field(default_factory=Counter)  # by class, "2xx"
    protocols: Counter = field(default_factory=Counter)  # requests per TLS protocol
    ciphers: Counter = field(default_factory=Counter)  # requests per cipher (OpenSSL names)
    notes: list[str] = field(default_factory=list)

    def hit(self, category: str, n: int = 1) -> None:
        assert category in CATEGORIES, category
        self.events[category] += n

    def request(self, r: Response, *, tls: bool = True) -> None:
        """Count one request that got an HTTP response (it is in the access logs)."""
        if not r.status:
            raise RuntimeError(f"expected an HTTP response, got none: {r.error}")
        self.status[status_class(r.status)] += 1
        if tls:
            self.protocols[r.protocol] += 1
            self.ciphers[r.cipher] += 1


def count_lines(path: Path) -> int:
    data = path.read_bytes()
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def fresh_case(root: Path, case: str) -> Path:
    """Empty `<root>/logs/<case>` and `<root>/truth/<case>`; return the logs directory."""
    for tree in ("logs", "truth"):
        shutil.rmtree(root / tree / case, ignore_errors=True)
    out = root / "logs" / case
    out.mkdir(parents=True)
    return out


def truth_path(log: Path) -> Path:
    """`<root>/logs/<case>/<file>` -> `<root>/truth/<case>/<file>.truth.json`.

    Truths live in their own tree so that `tlslog scan <root>/logs/<case>` reads logs only.
    """
    parts = Path(log).parts
    i = len(parts) - 1 - parts[::-1].index("logs")
    return Path(*parts[:i], "truth", *parts[i + 1:-1], parts[-1] + ".truth.json")


def write_truth(log: Path, *, events: Counter | None = None, status: Counter | None = None,
                protocols: Counter | None = None, ciphers: Counter | None = None,
                extra: dict | None = None) -> dict:
    """Write `<log>.truth.json`: the golden answer for `tlslog scan --format json <log>`."""
    events = events or Counter()
    truth = {
        "events": {c: int(events.get(c, 0)) for c in CATEGORIES},
        "lines": count_lines(log),
        "unparsed_lines": 0,
        "status": {k: v for k, v in sorted((status or Counter()).items()) if v},
        "protocols": {k: v for k, v in sorted((protocols or Counter()).items()) if v},
        "ciphers": {k: v for k, v in sorted((ciphers or Counter()).items()) if v},
    }
    if extra:
        truth["_notes"] = extra
    dest = truth_path(log)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(truth, indent=2, sort_keys=False) + "\n")
    return truth


class LogDisagrees(RuntimeError):
    """The server's log does not show what the driver did (a lost alert, a race): run again."""


def retrying(build_once, attempts: int = 3):
    """Run `build_once()` until its logs agree with its driver (a few races are real:
    e.g. a client's alert lost when its close turns into a RST); give up after `attempts`."""
    for attempt in range(1, attempts + 1):
        try:
            return build_once()
        except LogDisagrees as e:
            if attempt == attempts:
                raise
            print(f"attempt {attempt}: {e}; running again", file=sys.stderr)
    return None


def check_signatures(log: Path, expected: dict[str, tuple[str, int]]) -> None:
    """Refuse a truth the log contradicts: each regex must match exactly the expected number of lines."""
    text = log.read_text(errors="replace")
    bad = []
    for name, (pattern, want) in expected.items():
        got = len(re.findall(pattern, text, flags=re.M))
        if got != want:
            bad.append(f"{name}: /{pattern}/ matched {got} lines, the driver triggered {want}")
    if bad:
        raise LogDisagrees(f"{log}: the log disagrees with the driver:\n  " + "\n  ".join(bad))


def run_bg(cmd: list[str], *, user: str | None = RUN_USER, **kw) -> subprocess.Popen:
    if user:
        # setpriv execs the server in place, so proc.pid is the server's own pid
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *cmd]
    return subprocess.Popen(cmd, **kw)


def stop(proc: subprocess.Popen, timeout_seconds: float = 10.0) -> None:
    """SIGTERM the server we started, by its pid; SIGKILL if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
