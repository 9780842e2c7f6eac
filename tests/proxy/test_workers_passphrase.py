"""Pass phrases are asked once, by the master, on the terminal (mod_ssl's builtin dialog):
not once per worker, not again on SIGHUP when the pass phrase still works, not on a
ticket-key rotation (the decrypted keys are reused)."""

from __future__ import annotations

import io
import json
import os
import time
import urllib.error
import urllib.request

import pexpect
from cryptography.hazmat.primitives import serialization

from helpers import TLSFRONT, free_ports

CONFIG = """
[server]
allow_root = true
error_log = "{d}/error.log"
workers = 2
shutdown_grace_seconds = 2
session_ticket_rotation_seconds = 2

[admin]
listen = "127.0.0.1:{p_admin}"

[tls]
certificate = "{pki.server_cert}"
key = "{key}"
passphrase_dialog = "builtin"

[[vhost]]
listen = "127.0.0.1:{p_tls}"
server_name = "localhost"
tls = true
backends = ["http://127.0.0.1:9"]
"""


def _generation(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            state = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        state = json.loads(exc.read())
    except OSError:
        return 0
    return state["generation"] if state["workers"]["ready"] == 2 else 0


def _wait_generation(port: int, at_least: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        g = _generation(port)
        if g >= at_least:
            return g
        time.sleep(0.1)
    raise AssertionError(f"generation {at_least} not reached")


def test_asked_once_for_workers_reloads_and_rotations(pki, tmp_path):
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    enc = tmp_path / "enc.key"
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"hunter2")))
    enc.chmod(0o600)
    ports = dict(zip(["p_tls", "p_admin"], free_ports(2)))
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG.format(d=tmp_path, pki=pki, key=enc, **ports))
    out = io.BytesIO()
    child = pexpect.spawn(TLSFRONT, ["serve", "-c", str(cfg)], timeout=20, env=os.environ | {"TERM": "dumb"})
    child.logfile_read = out
    try:
        child.expect("Enter pass phrase:")
        child.sendline("hunter2")
        g = _wait_generation(ports["p_admin"], 1)
        child.kill(1)  # SIGHUP: a reload; the known pass phrase is tried before asking
        g = _wait_generation(ports["p_admin"], g + 1)
        _wait_generation(ports["p_admin"], g + 1)  # a rotation (every 2 s)
        child.kill(15)
        child.expect(pexpect.EOF, timeout=20)
    finally:
        if child.isalive():
            child.terminate(force=True)
    text = out.getvalue().decode(errors="replace")
    assert text.count("Enter pass phrase:") == 1, text
    log = (tmp_path / "error.log").read_text()
    assert "TLSF0006: configuration reloaded" in log and "TLSF0012: session ticket keys rotated" in log
