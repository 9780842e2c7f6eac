"""SSLRandomSeed: `random_seed` entries applied to OpenSSL's PRNG, and its check.

Grammar (config_server.py reads it): ``"startup|connect builtin|file:/path|exec:/path [BYTES]"``;
e.g. ``random_seed = ["startup file:/dev/urandom 512", "connect builtin"]``. A PRNG that
OpenSSL says is not seeded is a clear error at start-up, never a hang. The master logs the
result line (TLSF0014): `last_seed_result()`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from OpenSSL._util import lib as _lib

from .model import RandomSeed


SEED_EXEC_TIMEOUT_SECONDS = 10.0
_last_seed_result: str | None = None


def last_seed_result() -> str | None:
    """The line the last successful `seed_random` of this process returned (None before):
    the PRNG is process state, and build_contexts() seeds it, so the master logs this
    line (TLSF0014) after building the Contexts instead of seeding a second time."""
    return _last_seed_result


def seed_random(seeds: tuple[RandomSeed, ...], context: str = "startup") -> str:
    """Apply `random_seed` entries of `context` and check the PRNG; return a log line.

    `builtin` adds nothing (OpenSSL 1.1.1+ seeds itself from the OS); `file:` reads at most
    the byte count (non-blocking: /dev/random must not hang start-up); `exec:` runs the
    program and takes its standard output. Raises RuntimeError when OpenSSL says the
    generator is not seeded: a clear error, never a hang.

    `connect` entries are validated and accepted for compatibility; OpenSSL's DRBG reseeds
    itself, so nothing is read per connection (that would cost a syscall per handshake).
    build_contexts() calls this for "startup"; serve may log the returned line.
    """
    added = 0
    sources = []
    for seed in seeds:
        if seed.context != context:
            continue
        count = seed.bytes or 256
        data = b""
        if seed.kind == "file" and seed.path is not None:
            data = _read_nonblocking(seed.path, count)
        elif seed.kind == "exec" and seed.path is not None:
            try:
                done = subprocess.run([str(seed.path), str(count)], capture_output=True,
                                      stdin=subprocess.DEVNULL, timeout=SEED_EXEC_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"random_seed {seed.source}: the program did not finish within "
                                   f"{SEED_EXEC_TIMEOUT_SECONDS:g} seconds") from None
            except OSError as exc:
                raise RuntimeError(f"random_seed {seed.source}: the program cannot run: "
                                   f"{exc.strerror or exc}") from None
            if done.returncode != 0:
                raise RuntimeError(f"random_seed {seed.source}: the program failed with exit status "
                                   f"{done.returncode}")
            data = done.stdout[:count]
        if data:
            _lib.RAND_add(data, len(data), float(len(data)))
            added += len(data)
        sources.append(seed.source if not data else f"{seed.source} ({len(data)} bytes)")
    if _lib.RAND_status() != 1:
        raise RuntimeError(
            "OpenSSL's random number generator is not seeded (RAND_status() = 0): check that "
            "/dev/urandom is readable, or add random_seed = [\"startup file:/dev/urandom 512\"]")
    used = ", ".join(sources) if sources else "builtin"
    global _last_seed_result
    _last_seed_result = f"PRNG seeded ({context}: {used}; {added} bytes added, RAND_status OK)"
    return _last_seed_result


def _read_nonblocking(path: Path, count: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise RuntimeError(f"random_seed file:{path}: {exc.strerror}") from None
    try:
        return os.read(fd, count)
    except BlockingIOError:
        return b""
    finally:
        os.close(fd)
