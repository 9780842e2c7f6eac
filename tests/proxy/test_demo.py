"""`tlsfront demo`: throwaway certificate made once and reused, echo backend, proxy, URLs printed.

The repository's conf/demo.toml listens on fixed ports (8443, 8080, 8081, 9180); the test
runs a copy of it with those ports replaced by free ones, in a temporary "repository".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import TLSFRONT, Proc, echo_lines, free_ports, wait_listening

REPO = Path(__file__).resolve().parents[2]
FALLBACK = """
[server]
error_log = "../.state/demo/error.log"
access_log = "../.state/demo/access.log"

[admin]
listen = "127.0.0.1:9180"

[tls]
certificate = "../.state/demo/demo.crt"
key = "../.state/demo/demo.key"

[[vhost]]
listen = "127.0.0.1:8443"
server_name = "localhost"
tls = true
backends = ["http://127.0.0.1:8081"]

[[vhost]]
listen = "127.0.0.1:8080"
server_name = "localhost"
backends = ["http://127.0.0.1:8081"]
"""


def demo_config(root: Path) -> tuple[Path, dict[int, int]]:
    src = REPO / "conf" / "demo.toml"
    text = src.read_text() if src.exists() else FALLBACK
    fixed = (8443, 8080, 8081, 9180)
    mapping = dict(zip(fixed, free_ports(len(fixed))))
    for old, new in mapping.items():
        text = re.sub(rf"(?<![0-9]){old}(?![0-9])", str(new), text)
    if os.geteuid() == 0 and "allow_root" not in text:  # CI runs as root: say so, as an admin would
        text = text.replace("[server]\n", "[server]\nallow_root = true\n", 1)
    conf = root / "conf"
    conf.mkdir(parents=True)
    (conf / "demo.toml").write_text(text)
    return conf / "demo.toml", mapping


def run_demo(root: Path, cfg: Path, ports: dict[int, int], name: str) -> Proc:
    proc = Proc(name, [TLSFRONT, "demo", "-c", str(cfg)], root)
    for p in (ports[8443], ports[8080], ports[8081]):
        wait_listening("127.0.0.1", p, proc)
    return proc


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_demo_serves_and_reuses_its_certificate(tmp_path):
    cfg, ports = demo_config(tmp_path)
    proc = run_demo(tmp_path, cfg, ports, "demo1")
    try:
        cert = tmp_path / ".state" / "demo" / "demo.crt"
        key = tmp_path / ".state" / "demo" / "demo.key"
        assert cert.exists() and key.stat().st_mode & 0o077 == 0
        r = subprocess.run(["curl", "-sS", "--cacert", str(cert), f"https://127.0.0.1:{ports[8443]}/hello"],
                           capture_output=True, check=True, timeout=20)
        seen = echo_lines(r.stdout)
        assert seen[""] == ["GET /hello HTTP/1.1"] and seen["x-forwarded-proto"] == ["https"]
        assert seen["x-ssl-protocol"] and seen["backend"] == [f"127.0.0.1:{ports[8081]}"]
        r = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{ports[8080]}/plain"],
                           capture_output=True, check=True, timeout=20)
        assert echo_lines(r.stdout)["x-forwarded-proto"] == ["http"]
        deadline = time.monotonic() + 5
        while f"https://127.0.0.1:{ports[8443]}/" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = proc.output()
        assert f"https://127.0.0.1:{ports[8443]}/" in out and f"http://127.0.0.1:{ports[8080]}/" in out
        first = cert.read_bytes()
    finally:
        assert proc.stop() == 0, proc.output()
    proc = run_demo(tmp_path, cfg, ports, "demo2")
    try:
        assert cert.read_bytes() == first  # reused, not remade
    finally:
        assert proc.stop() == 0, proc.output()
