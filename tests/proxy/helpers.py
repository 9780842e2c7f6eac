"""Process and port helpers for end-to-end tests: real processes, real sockets, 127.x only."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:  # tests/ (ports.py) for code that imports helpers from elsewhere
    sys.path.insert(0, _TESTS)
from ports import free_port, free_ports  # noqa: E402,F401  - leased ports: no pick-then-bind race

VENV_BIN = Path(sys.executable).parent
TLSFRONT = str(VENV_BIN / "tlsfront")


def wait_listening(host: str, port: int, proc: "Proc | None" = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s"
                       + (f"; {proc.name} said:\n{proc.output()}" if proc else ""))


_LIVE: set["Proc"] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Children a failed fixture set-up never stopped: stop them (by pid) when pytest exits."""
    for proc in list(_LIVE):
        proc.stop(timeout=5)


class Proc:
    """A child process whose output goes to a file; stopped by its pid only."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.out"
        self._log = open(self.log_path, "wb")
        try:
            self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                          env=env or os.environ.copy())
        except BaseException:  # the program is missing: no open file left behind (ResourceWarning)
            self._log.close()
            raise
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def status_kib(self, field: str) -> int:
        """A field of /proc/PID/status in KiB (VmRSS now, VmHWM peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self, timeout: float = 10.0) -> int:
        _LIVE.discard(self)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def start_backend(log_dir: Path, port: int, host: str = "127.0.0.1", name: str | None = None,
                  record: Path | None = None) -> Proc:
    """The demo echo backend; with `record`, every request it receives is appended there."""
    argv = [sys.executable, "-m", "tlsfront.demo_backend", str(port), host]
    if record is not None:
        argv.append(str(record))
    proc = Proc(name or f"backend-{port}", argv, log_dir)
    try:
        wait_listening(host, port, proc)
    except Exception:
        proc.stop()
        raise
    return proc


def start_proxy(log_dir: Path, config_path: Path, wait_for: list[tuple[str, int]],
                name: str = "tlsfront", env: dict | None = None) -> Proc:
    """`tlsfront serve -c config_path`, once it listens on `wait_for`; `env`: extra variables."""
    proc = Proc(name, [TLSFRONT, "serve", "-c", str(config_path)], log_dir,
                env={**os.environ, **env} if env else None)
    try:
        for host, port in wait_for:
            wait_listening(host, port, proc)
    except Exception:
        proc.stop()
        raise
    return proc


def tcp_pair() -> tuple[socket.socket, socket.socket, tuple[str, int]]:
    """A connected 127.0.0.1 TCP pair: (server side, non-blocking; client side; the client's
    address as the server sees it), for tests that drive a Twisted transport by hand."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    client = socket.create_connection(lsock.getsockname())
    server, addr = lsock.accept()
    lsock.close()
    server.setblocking(False)
    return server, client, addr


def client_context(cafile: Path | None = None, verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


_STREAMS: dict[int, tuple[object, object, list]] = {}


def read_response(sock, method: bytes = b"GET") -> tuple[int, bytes, dict[bytes, bytes], bytes]:
    """Read one response from a blocking socket with tlsfront's own parser: (status, version, headers, body).

    Bytes of the next response that arrive with this one are kept for the next call
    on the same socket (pipelined answers often share a read).
    """
    from tlsfront.http1 import END, ResponseReader

    state = _STREAMS.get(id(sock))
    if state is None or state[0] is not sock:
        state = (sock, ResponseReader(), [])
        _STREAMS[id(sock)] = state
    _, reader, pending = state
    if not pending:
        reader.expect(method)
    head = None
    body = bytearray()

    def take() -> bool:
        nonlocal head
        while pending:
            ev = pending.pop(0)
            if ev is END:
                return True
            if type(ev) is bytes:
                body.extend(ev)
            else:
                head = ev
        return False

    done = take()
    while not done:
        data = sock.recv(65536)
        if not data:
            if head is not None and head.until_close:
                break
            raise ConnectionError(f"connection closed after {len(body)} body bytes")
        pending.extend(reader.feed(data))
        done = take()
    if method == b"HEAD":  # the parser stops after a HEAD answer: a fresh one for the next
        _STREAMS.pop(id(sock), None)
    headers = {n.lower(): v for n, v in head.headers}
    return head.status, head.version, headers, bytes(body)


def echo_lines(body: bytes) -> dict[str, list[str]]:
    """The demo backend's echo: header name (lower) -> values, plus the request line under ''."""
    lines = body.decode("latin-1").splitlines()
    out: dict[str, list[str]] = {"": [lines[0]]}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        out.setdefault(name.lower(), []).append(value)
    return out


def wait_until(predicate, what: str, timeout: float = 20.0, interval: float = 0.05,
               proc: "Proc | None" = None, details=None):
    """Poll `predicate` until it returns something true (returned) or `timeout` s pass.

    On timeout: AssertionError naming `what`, with `details()` (e.g. a log tail) and the output
    of `proc`; when `proc` exits meanwhile, that is said at once instead of waiting out the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode} while waiting for "
                                 f"{what}:\n{proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            extra = details() if details else (proc.output()[-3000:] if proc else "")
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"\n{extra}" if extra else ""))
        time.sleep(interval)


def prometheus_ready(port: int) -> bool:
    """Prometheus's /-/ready: 200 once its TSDB is open (its query API answers 503 before)."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def wait_prometheus_ready(port: int, proc: "Proc | None" = None, timeout: float = 60.0) -> None:
    """Wait until Prometheus on 127.0.0.1:`port` is ready, not merely listening."""
    wait_until(lambda: prometheus_ready(port), f"prometheus on 127.0.0.1:{port} ready (/-/ready)",
               timeout=timeout, interval=0.2, proc=proc)


def reference_state(tmp: Path, pki) -> Path:
    """The files conf/tlsfront.toml (the reference configuration) names, made from the `pki` fixture in
    tmp/.state/example/ (certificates, keys 0600, chain, client CA, an empty CRL of the client CA, logs/,
    ca/): a copy of the reference in tmp/conf/ then loads and serves as shipped. Returns that directory."""
    import datetime as dt
    import shutil

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    d = tmp / ".state" / "example"
    (d / "logs").mkdir(parents=True)
    (d / "ca").mkdir()
    for src, name in ((pki.server_cert, "server.crt"), (pki.server_key, "server.key"),
                      (pki.server_rsa_cert, "server-rsa.crt"), (pki.server_rsa_key, "server-rsa.key"),
                      (pki.intermediate_cert, "chain.pem"), (pki.client_ca_cert, "client-ca.pem")):
        shutil.copy(src, d / name)
    (d / "server.key").chmod(0o600)
    (d / "server-rsa.key").chmod(0o600)
    ca_key = serialization.load_pem_private_key((pki.dir / "client-ca.key").read_bytes(), None)
    now = dt.datetime.now(dt.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(x509.load_pem_x509_certificate(pki.client_ca_cert.read_bytes()).subject)
           .last_update(now).next_update(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
    (d / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return d
