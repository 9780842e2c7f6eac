"""The fronts under test: how each is configured, started and stopped.

Every front gets the same certificate files, the same backend, the same cipher
list and groups, a session cache and tickets, and listens on a free port of
127.0.0.1. `workers` means worker processes (nginx, tlsfront), threads for
HAProxy (`nbthread`, its own model) and is ignored by the single-process baseline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import procs
from bench.certs import CertFiles
from bench.render import render

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RunningFront:
    name: str
    port: int
    proc: subprocess.Popen
    workdir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        procs.stop(self.proc)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str] | None = None
    startup_seconds: float = 15.0


def _binary(name: str) -> str:
    path = shutil.which(name) or f"/usr/sbin/{name}"
    if not Path(path).exists():
        raise RuntimeError(f"{name} not found: run `bash bench/install-tools.sh`")
    return path


def nginx(d: Path, cert: CertFiles, port: int, backend_port: int, workers: int) -> Launch:
    conf = render("nginx.conf", d / "nginx.conf", dir=d, port=port, backend_port=backend_port,
                  workers=workers, fullchain=cert.fullchain, key=cert.key)
    return Launch([_binary("nginx"), "-p", str(d), "-c", str(conf), "-e", str(d / "nginx-error.log")])


def haproxy(d: Path, cert: CertFiles, port: int, backend_port: int, workers: int) -> Launch:
    conf = render("haproxy.cfg", d / "haproxy.cfg", dir=d, port=port, backend_port=backend_port,
                  workers=workers, combined=cert.combined)
    # -db: foreground, no master process; the process is the whole front
    return Launch([_binary("haproxy"), "-db", "-f", str(conf)])


def apache(d: Path, cert: CertFiles, port: int, backend_port: int, workers: int) -> Launch:
    conf = render("apache.conf", d / "apache.conf", dir=d, port=port, backend_port=backend_port,
                  workers=workers, max_request_workers=64 * workers, fullchain=cert.fullchain, key=cert.key)
    # the key is read by the root parent; the children run as www-data and need nothing under d
    return Launch([_binary("apache2"), "-d", str(d), "-f", str(conf), "-DFOREGROUND"])


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def twisted_baseline(d: Path, cert: CertFiles, port: int, backend_port: int, workers: int) -> Launch:
    return Launch(
        [sys.executable, "-m", "bench.baseline_twisted", "--port", str(port),
         "--cert", str(cert.cert), "--key", str(cert.key), "--chain", str(cert.chain),
         "--backend", f"http://127.0.0.1:{backend_port}"],
        env=_python_env(),
    )


def tlsfront(d: Path, cert: CertFiles, port: int, backend_port: int, workers: int) -> Launch:
    conf = render("tlsfront.toml", d / "tlsfront.toml", dir=d, port=port, backend_port=backend_port,
                  workers=workers, cert=cert.cert, key=cert.key, chain=cert.chain)
    exe = Path(sys.executable).with_name("tlsfront")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "tlsfront.cli"]
    return Launch([*argv, "serve", "-c", str(conf)], env=_python_env())


def tlsfront_memory(d: Path, cert: CertFiles, port: int, backend_port: int, workers: int) -> Launch:
    """tlsfront with Twisted's TLSMemoryBIOProtocol instead of TLS on the socket (tlsio.py):
    the comparison behind that choice (docs/benchmarks.md, "The TLS layer")."""
    launch = tlsfront(d, cert, port, backend_port, workers)
    launch.env["TLSFRONT_TLS_IO"] = "memory"
    return launch


# name -> how to launch it; the order is the interleaving order of a round
FRONTS: dict[str, Callable[[Path, CertFiles, int, int, int], Launch]] = {
    "nginx": nginx,
    "haproxy": haproxy,
    "apache": apache,
    "twisted": twisted_baseline,
    "tlsfront": tlsfront,
    "tlsfront-memory": tlsfront_memory,
}
# tlsfront-memory only on request (--fronts): the evidence for one design choice
DEFAULT_FRONTS = tuple(name for name in FRONTS if name != "tlsfront-memory")
# with workers=2, the single-process baseline has nothing to add, and Apache's row is context:
# the issue compares tlsfront with two workers against nginx (and HAProxy) with two
TWO_WORKER_FRONTS = ("nginx", "haproxy", "tlsfront")


def start_front(name: str, workdir: Path, cert: CertFiles, backend_port: int, workers: int,
                cpus: str | None) -> RunningFront:
    """Configure and start front `name` pinned to `cpus`; returns once it accepts connections."""
    d = workdir / f"{name}-w{workers}"
    d.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    launch = FRONTS[name](d, cert, port, backend_port, workers)
    proc = procs.start(procs.pinned(launch.argv, cpus), d / "front.out", cwd=d, env=launch.env)
    try:
        procs.wait_port("127.0.0.1", port, launch.startup_seconds, proc)
    except RuntimeError as e:
        procs.stop(proc)
        tail = (d / "front.out").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{name} did not start: {e}\n--- {d / 'front.out'} (end) ---\n{tail}") from None
    return RunningFront(name=name, port=port, proc=proc, workdir=d)
