"""The static backend behind every front: one plain-HTTP nginx process.

Why nginx: the backend must cost the shared CPU 1 as little as possible, so the
fastest static server at hand is the fairest choice; every front reaches it over
keep-alive connections. It serves `/2b.txt` ("ok") and `/1m.bin` (1 MiB).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import procs
from bench.render import render

SMALL_PATH = "/2b.txt"
BULK_PATH = "/1m.bin"
BULK_BYTES = 1024 * 1024


def nginx_binary() -> str:
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(path).exists():
        raise RuntimeError("nginx not found: run `bash bench/install-tools.sh` (Debian package nginx)")
    return path


@dataclass
class Backend:
    port: int
    proc: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        procs.stop(self.proc)


def start_backend(workdir: Path, cpus: str | None) -> Backend:
    """Write the docroot and config under `workdir/backend`, start nginx pinned to `cpus`."""
    d = workdir / "backend"
    docroot = d / "www"
    docroot.mkdir(parents=True, exist_ok=True)
    (docroot / SMALL_PATH.lstrip("/")).write_bytes(b"ok")
    (docroot / BULK_PATH.lstrip("/")).write_bytes(bytes(range(256)) * (BULK_BYTES // 256))
    port = procs.free_port()
    conf = render("backend-nginx.conf", d / "nginx.conf", dir=d, port=port, docroot=docroot)
    argv = procs.pinned([nginx_binary(), "-p", str(d), "-c", str(conf), "-e", str(d / "backend-error.log")], cpus)
    proc = procs.start(argv, d / "backend.out")
    procs.wait_port("127.0.0.1", port, 10, proc)
    return Backend(port=port, proc=proc, workdir=d)
