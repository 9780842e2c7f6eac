"""Helpers for the issue 9 tests that run real tools (Pushgateway, Prometheus, promtool, tlslog follow):
free ports, starting a daemon on 127.0.0.1 and waiting until it answers, polling for a condition (no fixed sleeps)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")
#: the tlslog command of the interpreter running the tests (the venv's, with the package installed editable)
TLSLOG = [sys.executable, "-m", "tlslog.cli"]


from ports import free_port  # noqa: E402,F401  - leased: no pick-then-bind race (tests/ports.py)


def tool(name: str) -> str:
    """Path of a system tool; a loud skip if it is not installed (make test installs it: tests/install-sysdeps.sh)."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        pytest.skip(f"{name} is not installed (run `make sysdeps`); this test needs the real tool")
    return path


def wait_for(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``condition`` until it returns something true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition} (last error: {last_exc})")


def http_get(url: str, timeout: float = 5.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as exc:  # e.g. 503 while starting: close its response (ResourceWarning)
        exc.close()
        raise


class Daemon:
    """A process started for one test, stopped (SIGTERM, then SIGKILL) at the end; its output kept for failures."""

    def __init__(self, argv: list[str], log_path: str, **kw) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")
        try:
            self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, **kw)
        except BaseException:  # e.g. the program is missing: no open file left for a later test's
            self.log.close()   # ResourceWarning (an error there under filterwarnings = error)
            raise

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def metric_values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples ``name`` of an exposition, keyed by their sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def by_label(values: dict, label: str, drop: tuple[str, ...] = ("job", "instance")) -> dict[str, float]:
    """Sum samples by one label (the others summed over; Pushgateway's job/instance ignored)."""
    out: dict[str, float] = {}
    for labels, v in values.items():
        d = dict(labels)
        out[d.get(label, "")] = out.get(d.get(label, ""), 0) + v
    return out
