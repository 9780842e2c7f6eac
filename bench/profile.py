"""Profile a front's worker under load with py-spy: where does the time go?

Starts the backend and one front (pinned as in the bench), drives it with wrk
in one scenario, samples the front's process with `py-spy record --format raw`
(collapsed stacks) for `--seconds`, and prints, for the reactor thread, the functions with the most
samples: self (the frame on top) and inclusive (anywhere on the stack), and the
share per area (TLS, HTTP parsing, reactor, ...).

py-spy is not a dependency of tlsfront: `.venv/bin/pip install py-spy` first.

Usage: python -m bench.profile [--front tlsfront] [--scenario keepalive] [--seconds 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench import backend as backend_mod
from bench import certs, fronts, loadgen, procs
from bench.scenarios import SCENARIOS

# (substring of a frame, area): first match wins; frames look like "func (file.py:line)"
AREAS = (
    ("twisted/protocols/tls.py", "Twisted TLS (TLSMemoryBIOProtocol)"),
    ("OpenSSL/SSL.py", "pyOpenSSL calls (encrypt/decrypt, BIO)"),
    ("httptools", "httptools parser"),
    ("tlsfront/http1.py", "tlsfront http1 (parse/serialise)"),
    ("tlsfront/headers.py", "tlsfront headers (hop-by-hop, X-Forwarded, X-SSL)"),
    ("tlsfront/tlsfacts.py", "tlsfront tlsfacts (X-SSL-* values)"),
    ("tlsfront/frontend.py", "tlsfront frontend glue"),
    ("tlsfront/backend.py", "tlsfront backend pool/glue"),
    ("tlsfront/metrics.py", "tlsfront metrics"),
    ("tlsfront/logfiles.py", "tlsfront logs"),
    ("tlsfront/logformat.py", "tlsfront logs"),
    ("twisted/internet/epollreactor.py", "reactor: epoll_ctl/epoll_wait"),
    ("twisted/internet/tcp.py", "reactor: socket send/recv"),
    ("twisted/internet/abstract.py", "reactor: socket send/recv"),
    ("twisted/python/util.py", "reactor: socket send/recv"),  # untilConcludes wraps send()
    ("twisted/internet/base.py", "reactor: timers, calls"),
    ("twisted/internet/posixbase.py", "reactor: loop"),
    ("twisted/web", "twisted.web (server and client)"),
    ("twisted/internet/defer.py", "Deferreds"),
    ("twisted/logger", "twisted.logger"),
)


def area(frame: str) -> str:
    for needle, name in AREAS:
        if needle in frame:
            return name
    return "other"


def summarize(collapsed: str, top: int = 25) -> str:
    """A text report from py-spy's raw (collapsed) output: `frame;frame;frame COUNT` lines."""
    self_count: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if "threading.py" in frames[0]:
            continue  # a thread-pool thread (DNS, logging), idle in Condition.wait: not the reactor
        total += n
        self_count[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
        # the innermost frame that belongs to a known area names where the time went
        for f in reversed(frames):
            if area(f) != "other":
                areas[area(f)] += n
                break
        else:
            areas["other"] += n
    if not total:
        return "no samples (is the front a Python process? did py-spy have permission?)"
    out = [f"{total} samples", "", "share by area (innermost known frame):"]
    out += [f"  {n / total:6.1%}  {a}" for a, n in areas.most_common()]
    out += ["", f"top {top} self (on-CPU frame):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in self_count.most_common(top)]
    out += ["", f"top {top} inclusive:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def syscalls(args) -> int:
    """System calls of the front's tree per request, under wrk (strace slows the front: counts, not time)."""
    sc = SCENARIOS[args.scenario]
    with tempfile.TemporaryDirectory(prefix="tlsfront-profile-") as tmp:
        work = Path(tmp)
        cs = certs.make_cert_set(work / "certs")
        be = backend_mod.start_backend(work, "1")
        shim = loadgen.build_shim(work) if sc.no_resumption else None
        script = loadgen.write_script(work, bool(sc.expect))
        f = fronts.start_front(args.front, work, cs[sc.cert], be.port, 1, "0")
        try:
            pids = [str(p) for p in procs.tree(f.pid)]
            out = work / "strace.txt"
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), *sum((["-p", p] for p in pids), [])],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            r = loadgen.run_wrk(f"https://127.0.0.1:{f.port}{sc.path}", connections=sc.connections,
                                duration_seconds=args.seconds, script=script, headers=sc.headers,
                                preload=shim, cpus="1")
            tracer.send_signal(2)
            tracer.wait(10)
            text = out.read_text()
            if not text.strip():
                print(f"strace wrote nothing for pids {pids}", file=sys.stderr)
        finally:
            f.stop()
            be.stop()
    print(f"{args.front} {args.scenario}: {r.requests} requests under strace")
    print(f"{'calls/request':>14}  syscall")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls = int(parts[3])
            if calls / max(1, r.requests) >= 0.05:
                print(f"{calls / max(1, r.requests):14.2f}  {parts[-1]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--front", default="tlsfront", choices=list(fronts.FRONTS),
                   help="py-spy needs a Python front (tlsfront, twisted); --syscalls takes any")
    p.add_argument("--scenario", default="keepalive", choices=list(SCENARIOS))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--out", type=Path, default=Path("bench/results/profile"))
    p.add_argument("--syscalls", action="store_true",
                   help="count system calls per request with `strace -c -f` instead of sampling with py-spy")
    args = p.parse_args(argv)
    if args.syscalls:
        return syscalls(args)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    sc = SCENARIOS[args.scenario]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tlsfront-profile-") as tmp:
        work = Path(tmp)
        cs = certs.make_cert_set(work / "certs")
        be = backend_mod.start_backend(work, "1")
        shim = loadgen.build_shim(work) if sc.no_resumption else None
        script = loadgen.write_script(work, bool(sc.expect))
        f = fronts.start_front(args.front, work, cs[sc.cert], be.port, 1, "0")
        try:
            url = f"https://127.0.0.1:{f.port}{sc.path}"
            result: dict = {}
            load = threading.Thread(target=lambda: result.update(r=loadgen.run_wrk(
                url, connections=sc.connections, duration_seconds=args.seconds + 4, script=script,
                headers=sc.headers, preload=shim, cpus="1")))
            load.start()
            # profile the busiest process of the front's tree: the worker, not a master
            first = procs.sample(f.pid)
            time.sleep(1.5)
            busy = procs.sample(f.pid)
            worker = max(busy.per_pid, key=lambda p: busy.per_pid[p] - first.per_pid.get(p, 0.0))
            print(f"profiling pid {worker} of the front's {len(busy.per_pid)} process(es)")
            raw = args.out / f"{args.front}-{args.scenario}.collapsed.txt"
            subprocess.run([spy, "record", "--pid", str(worker), "--duration", str(int(args.seconds)),
                            "--rate", str(args.rate), "--format", "raw", "--output", str(raw)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            load.join()
        finally:
            f.stop()
            be.stop()
    report = summarize(raw.read_text())
    (args.out / f"{args.front}-{args.scenario}.summary.txt").write_text(report)
    r = result.get("r")
    if r:
        print(f"load: {r.requests_per_second:.0f} req/s under py-spy ({args.rate} samples/s)")
    print(report)
    print(f"\ncollapsed stacks: {raw} (flamegraph.pl or speedscope read them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
