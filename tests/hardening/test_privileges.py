"""Privileges and files (issue 11), with a real `tlsfront serve` started as root.

tests/proxy/test_workers_privileges.py (the workers engineer's) already checks: the workers'
real uid is nobody, requests are served, metrics are summed, SIGUSR1 reopens chowned logs,
workers die with the master. This file extends it, without repeating it:

- every credential of a worker, not only the real uid: real/effective/saved/filesystem
  uid and gid, supplementary groups (no root group left over), no capabilities;
- the keys were read *before* the switch: the key file is root-only (0600), TLS works, and
  no worker holds the key file open;
- the pid file (the master's pid, not writable by others) and the logs (0640, owned by the
  worker user, not readable by others: they hold client addresses);
- refusing to serve as root: `user`/`group` naming root without `allow_root` is a start-up
  error with the fix in the message, and so is a root master with no `user` at all;
  `allow_root = true` serves as root;
- a private key readable by others: a warning naming the file and `chmod 400`, from
  `tlsfront check` and at `serve` start-up. (No strict setting exists to refuse instead:
  see docs/hardening.md.)
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import wait_ready
from helpers import TLSFRONT, Proc, free_ports, start_proxy
from rawclient import Reader

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users (CI runs as root)")

CONFIG = """
[server]
error_log = "{d}/logs/error.log"
access_log = "{d}/logs/access.log"
ssl_request_log = "{d}/logs/ssl_request.log"
pid_file = "{d}/run/tlsfront.pid"
workers = 1
shutdown_grace_seconds = 1
{server}

[admin]
listen = "127.0.0.1:{p_admin}"

[tls]
certificate = "{d}/server.crt"
key = "{d}/server.key"
chain = "{d}/chain.crt"

[[vhost]]
listen = "127.0.0.1:{p_tls}"
server_name = "app.test"
tls = true
backends = ["http://127.0.0.1:{p_backend}"]
"""


def _status(pid: int) -> dict[str, list[str]]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        out[name] = value.split()
    return out


@pytest.fixture()
def site(pki, recorder):
    """A world-searchable directory (nobody must reach the logs) with root-only key copies."""
    d = Path(tempfile.mkdtemp(prefix="tlsfront-hardening-priv-"))
    d.chmod(0o755)
    for sub in ("logs", "run"):
        (d / sub).mkdir()
        (d / sub).chmod(0o755)
    shutil.copy(pki.server_cert, d / "server.crt")
    shutil.copy(pki.intermediate_cert, d / "chain.crt")
    shutil.copy(pki.server_key, d / "server.key")
    (d / "server.key").chmod(0o600)
    ports = dict(zip(("p_tls", "p_admin"), free_ports(2)))
    ports["p_backend"] = recorder.port
    yield d, ports, pki
    shutil.rmtree(d, ignore_errors=True)


def _config(d: Path, ports: dict, server: str = "") -> Path:
    cfg = d / "tlsfront.toml"
    cfg.write_text(CONFIG.format(d=d, server=server, **ports))
    return cfg


def _get(front_port: int, ca: Path, path: bytes) -> int:
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", front_port), timeout=5),
                         server_hostname="localhost") as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        return Reader(s).answer().status


def _worker_pids(admin_port: int) -> list[int]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=5) as r:
        return json.loads(r.read())["workers"]["pids"]


def test_worker_credentials_keys_pid_file_and_log_modes(site, tmp_path):
    d, ports, pki = site
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    cfg = _config(d, ports, 'user = "nobody"\ngroup = "nogroup"')
    proxy = start_proxy(tmp_path, cfg, [("127.0.0.1", ports["p_tls"]), ("127.0.0.1", ports["p_admin"])])
    try:
        wait_ready(ports["p_admin"], proxy)
        assert _get(ports["p_tls"], pki.ca_cert, b"/as-nobody") == 200
        (pid,) = _worker_pids(ports["p_admin"])
        st = _status(pid)
        assert st["Uid"] == [str(nobody)] * 4  # real, effective, saved, filesystem
        assert st["Gid"] == [str(nogroup)] * 4
        assert st["Groups"] == [str(nogroup)]  # root's supplementary groups are gone
        assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0
        # The key is root-only and TLS works: it was read before the switch. The worker
        # keeps no descriptor on it either.
        key = d / "server.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_uid == 0
        targets = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                targets.append(os.readlink(fd))
            except OSError:
                pass
        assert str(key) not in targets
        # pid file: the master's pid (the process to signal), not writable by others.
        pid_file = d / "run" / "tlsfront.pid"
        assert pid_file.read_text() == f"{proxy.pid}\n"
        assert stat.S_IMODE(pid_file.stat().st_mode) & 0o022 == 0
        # logs: 0640 (client addresses are personal data), owned by the worker user that writes them
        for name in ("error.log", "access.log", "ssl_request.log"):
            p = d / "logs" / name
            assert stat.S_IMODE(p.stat().st_mode) == 0o640, (name, oct(p.stat().st_mode))
            assert p.stat().st_uid == nobody, name
        assert "/as-nobody" in (d / "logs" / "access.log").read_text()
    finally:
        assert proxy.stop() == 0
    assert not (d / "run" / "tlsfront.pid").exists()  # removed at a clean stop


def _serve_status(cfg: Path, tmp_path: Path, timeout: float = 20.0) -> tuple[int | None, str]:
    """Run `tlsfront serve`; (exit status, output) if it exits within `timeout`, else (None, output)."""
    p = subprocess.Popen([TLSFRONT, "serve", "-c", str(cfg)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        p.terminate()
        out, _ = p.communicate(timeout=10)
        return None, out


REFUSED = [
    pytest.param('user = "root"', id="user root"),
    pytest.param('user = "root"\ngroup = "nogroup"', id="user root group nogroup"),
    pytest.param('user = "nobody"\ngroup = "root"', id="user nobody group root"),
    # no `user` at all: the workers would keep root's credentials (conf/tlsfront.toml:
    # "Refuse to serve as root unless this is true"); the project's e2e configs say
    # allow_root = true explicitly, since CI runs as root.
    pytest.param("", id="no user"),
]


@pytest.mark.parametrize("server", REFUSED)
def test_refuses_to_serve_as_root_without_allow_root(site, tmp_path, server):
    d, ports, _ = site
    status, out = _serve_status(_config(d, ports, server), tmp_path, timeout=5)
    assert status == 1, out
    assert "refusing to serve as root" in out and "allow_root = true" in out and "user" in out, out
    assert "Traceback" not in out
    assert not (d / "run" / "tlsfront.pid").exists()


def test_allow_root_serves_as_root(site, tmp_path):
    d, ports, pki = site
    cfg = _config(d, ports, "allow_root = true")
    proxy = start_proxy(tmp_path, cfg, [("127.0.0.1", ports["p_tls"]), ("127.0.0.1", ports["p_admin"])])
    try:
        wait_ready(ports["p_admin"], proxy)
        assert _get(ports["p_tls"], pki.ca_cert, b"/as-root") == 200
        (pid,) = _worker_pids(ports["p_admin"])
        assert _status(pid)["Uid"][1] == "0"
    finally:
        assert proxy.stop() == 0


def test_key_readable_by_others_is_warned_about(site, tmp_path):
    d, ports, pki = site
    key = d / "server.key"
    key.chmod(0o644)
    cfg = _config(d, ports, 'user = "nobody"\ngroup = "nogroup"')
    check = subprocess.run([TLSFRONT, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    text = check.stdout + check.stderr
    assert f"the private key {key} is accessible by group or others" in text
    assert f"chmod 400 {key}" in text
    proxy = Proc("warned", [TLSFRONT, "serve", "-c", str(cfg)], tmp_path)
    try:
        wait_ready(ports["p_admin"], proxy)
        assert f"chmod 400 {key}" in proxy.output()  # said at start-up too, then serves
        assert _get(ports["p_tls"], pki.ca_cert, b"/warned") == 200
    finally:
        proxy.stop()
    key.chmod(0o600)
    quiet = subprocess.run([TLSFRONT, "check", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    assert "accessible by group or others" not in quiet.stdout + quiet.stderr
