"""`make run` (tlsfront demo -c conf/demo.toml) with the default worker count shows
resumption across workers: conf/demo.toml copied with free ports, nothing else changed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import TLSFRONT, Proc, free_ports, wait_listening

DEMO = Path(__file__).resolve().parents[2] / "conf" / "demo.toml"
OPENSSL = shutil.which("openssl")


@pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
def test_demo_uses_every_cpu_and_resumes(tmp_path):
    text = DEMO.read_text()
    assert not re.search(r"^\s*workers\s*=", text, re.M), "conf/demo.toml should use the default worker count"
    ports = dict(zip(("8443", "8080", "9180", "8081"), free_ports(4)))
    for old, new in ports.items():
        text = text.replace(f":{old}", f":{new}")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "demo.toml").write_text(text)
    proc = Proc("demo", [TLSFRONT, "demo", "-c", str(conf / "demo.toml")], tmp_path)
    try:
        wait_listening("127.0.0.1", ports["8443"], proc)
        wait_listening("127.0.0.1", ports["9180"], proc)
        # /readyz answers 200 once ONE worker is ready (the listener serves): poll until every
        # worker is, or the deadline; waiting for the first 200 only raced the second worker's start.
        want = os.cpu_count() or 1
        deadline = time.monotonic() + 30
        state: dict = {}
        while state.get("workers", {}).get("configured") != want or state["workers"]["ready"] != want:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports['9180']}/readyz", timeout=2) as r:
                    state = json.loads(r.read())
            except urllib.error.HTTPError as exc:  # 503 until a worker is ready: still a state
                state = json.loads(exc.read())
            except OSError:
                pass
        assert state.get("workers", {}).get("configured") == want, f"/readyz: {state}\n{proc.output()}"
        assert state["workers"]["ready"] == want, f"after 30 s: {state}\n{proc.output()}"
        out = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{ports['8443']}", "-tls1_2",
                              "-no_ticket", "-reconnect"], input=b"", capture_output=True, timeout=30).stdout
        assert re.findall(rb"^(New|Reused), ", out, re.M) == [b"New"] + [b"Reused"] * 5
    finally:
        proc.popen.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.popen.wait(30) == 0, proc.output()
        proc.stop()
    assert "Traceback" not in proc.output()
