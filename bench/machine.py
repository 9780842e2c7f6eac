"""What machine and which versions a bench run used (for docs/benchmarks.md)."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from pathlib import Path


def _cmd(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e.__class__.__name__})"
    return (done.stdout + done.stderr).strip()


def _word(text: str, index: int) -> str:
    """Word `index` of the first line ("HAProxy version 2.6.12 ..." -> "2.6.12"), or the line."""
    words = text.splitlines()[0].split() if text else []
    return words[index] if len(words) > index else text


def steal_jiffies() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat: the hypervisor's share of our time."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[7] if len(fields) > 7 else 0, sum(fields)


def describe() -> dict:
    lscpu = _cmd(["lscpu"])
    keep = ("Architecture", "CPU(s)", "Model name", "Thread(s) per core", "Core(s) per socket",
            "Hypervisor vendor", "L2 cache", "L3 cache")
    cpu = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in lscpu.splitlines()) if k.strip() in keep}
    try:
        import OpenSSL
        import twisted
        from cryptography.hazmat.backends.openssl.backend import backend as ossl
        py_versions = {"twisted": twisted.__version__, "pyopenssl": OpenSSL.__version__,
                       "openssl (cryptography, tlsfront)": _word(ossl.openssl_version_text(), 1)}
    except ImportError as e:
        py_versions = {"error": str(e)}
    try:
        import httptools
        py_versions["httptools"] = httptools.__version__
    except ImportError:
        pass
    with open("/proc/meminfo") as f:
        mem = f.readline().split()[1]
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "versions": {
            "nginx": _cmd(["nginx", "-v"]).replace("nginx version: nginx/", ""),
            "haproxy": _word(_cmd(["haproxy", "-v"]), 2),
            "wrk": _word(_cmd(["wrk", "-v"]), 1),
            "openssl (system)": _word(_cmd(["openssl", "version"]), 1),
            "hyperfine": _word(_cmd(["hyperfine", "--version"]), 1),
            **py_versions,
        },
        "git_commit": _cmd(["git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "--short", "HEAD"]),
    }
