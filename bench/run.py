"""`python -m bench.run`: run the bench, print the ratio table, write JSON + markdown.

Order: for each worker count, for each scenario, three repetitions, and in each
repetition every front once (A B C A B C): a time window that is slow for one
front is slow for all. Each trial starts the front fresh, warms it up (not
measured), reads the front tree's CPU from /proc, runs wrk, reads it again, and
stops the front. Pinning with workers=1: front on CPU 0; wrk and the backend on
CPU 1. With workers=2 the front and wrk may use both CPUs (there is no third);
that round runs nginx, HAProxy and tlsfront only.

Examples:
    python -m bench.run                                  # everything (~15 min)
    python -m bench.run --quick --only keepalive --fronts nginx,tlsfront
    python -m bench.run --only logbench                  # tlslog scan vs grep only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

from bench import backend as backend_mod
from bench import certs, fronts, loadgen, machine, procs, report
from bench.scenarios import SCENARIOS, SCENARIOS_2_WORKERS, Scenario

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
# what the options default to, for the full run and for --quick
FULL = {"workers": "1,2", "reps": 3, "duration": 5.0, "warmup": 1.0, "log_lines": 2_000_000}
QUICK = {"workers": "1", "reps": 1, "duration": 2.0, "warmup": 0.5, "log_lines": 200_000}


def check_resumption(sc: Scenario, r: loadgen.WrkResult) -> str:
    """What the server said about resumption, against what the scenario needs."""
    if sc.expect is None:
        return "n/a"
    seen = r.resumed + r.full
    if seen == 0:
        return "unverified (no X-TLS-Resumed header)"
    if sc.expect == "full":
        return "ok: 0 resumed" if r.resumed == 0 else f"FAILED: {r.resumed} of {seen} resumed"
    # a resumed run starts with one full handshake per connection
    share = r.resumed / seen
    return f"ok: {share:.0%} resumed" if share >= 0.9 else f"FAILED: only {share:.0%} resumed"


def run_trial(front: str, sc: Scenario, workers: int, rep: int, ctx: dict) -> dict:
    base = {"front": front, "scenario": sc.name, "workers": workers, "rep": rep}
    front_cpus, load_cpus = ("0", "1") if workers == 1 else ("0-1", "0-1")
    try:
        f = fronts.start_front(front, ctx["workdir"], ctx["certs"][sc.cert], ctx["backend"].port, workers, front_cpus)
    except (RuntimeError, OSError) as e:
        return {**base, "error": str(e)}
    try:
        url = f"https://127.0.0.1:{f.port}{sc.path}"
        shims = (ctx["srcaddr"], ctx["shim"]) if sc.no_resumption else (ctx["srcaddr"],)
        wrk = dict(connections=sc.connections, headers=sc.headers, cpus=load_cpus, preload=shims,
                   script=ctx["script_resumed"] if sc.expect else ctx["script_stats"])
        if ctx["warmup"] > 0:
            loadgen.run_wrk(url, duration_seconds=ctx["warmup"], **wrk)
        steal0 = machine.steal_jiffies()
        before = procs.sample(f.pid)
        r = loadgen.run_wrk(url, duration_seconds=ctx["duration"], **wrk)
        after = procs.sample(f.pid)
        steal1 = machine.steal_jiffies()
        rss_worker, rss_total = procs.tree_rss(f.pid)
        processes = len(procs.tree(f.pid))
        if f.proc.poll() is not None:
            return {**base, "error": f"{front} exited with {f.proc.returncode} during the run (see {f.workdir}/front.out)"}
    except (RuntimeError, OSError, ValueError) as e:
        return {**base, "error": str(e)}
    finally:
        f.stop()
    cpu = procs.cpu_delta(before, after)
    # per process, largest first: shows whether the load reached every worker
    split = sorted((round(t - before.per_pid.get(p, 0.0), 2) for p, t in after.per_pid.items()), reverse=True)
    units = r.requests if sc.unit == "requests" else r.bytes / MIB
    return {
        **base,
        "requests": r.requests,
        "duration_seconds": r.duration_seconds,
        "requests_per_second": r.requests_per_second,
        "p50_ms": r.p50_ms,
        "p99_ms": r.p99_ms,
        "mean_ms": r.mean_ms,
        "errors": r.errors,
        "resumed": r.resumed,
        "full": r.full,
        "unknown": r.unknown,
        "resumption_check": check_resumption(sc, r),
        "cpu_seconds": cpu,
        "units": units,
        "unit": sc.unit,
        "cpu_per_unit_us": cpu / units * 1e6 if units else float("inf"),
        "units_per_cpu_second": units / cpu if cpu else 0.0,
        "rss_worker_mib": rss_worker / MIB,
        "rss_total_mib": rss_total / MIB,
        "processes": processes,  # the front's tree: shows whether `workers` was acted on
        "cpu_seconds_by_process": split,
        "steal_share": (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1]),
        "wrk_argv": r.argv,
    }


def plan(args) -> list[tuple[int, Scenario, int, str]]:
    """(workers, scenario, rep, front) in the interleaved order."""
    out = []
    for workers in args.workers:
        names = [n for n in args.only if n in SCENARIOS]
        if workers != 1:
            names = [n for n in names if n in SCENARIOS_2_WORKERS]
        fr = [f for f in args.fronts if workers == 1 or f in fronts.TWO_WORKER_FRONTS]
        for name in names:
            for rep in range(1, args.reps + 1):
                for front in fr:
                    out.append((workers, SCENARIOS[name], rep, front))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0],
                                epilog=__doc__.split("Examples:")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    every = [*SCENARIOS, "logbench"]
    p.add_argument("--only", default=",".join(every),
                   help=f"comma-separated scenarios (default all): {', '.join(every)}")
    p.add_argument("--fronts", default=",".join(fronts.DEFAULT_FRONTS),
                   help=f"comma-separated fronts, in interleaving order, of {', '.join(fronts.FRONTS)} "
                        f"(default {','.join(fronts.DEFAULT_FRONTS)})")
    p.add_argument("--workers", default=None, help="worker counts to run (default 1,2; --quick: 1)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; --quick: 1)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of measured load per trial (default 5; --quick: 2)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds of unmeasured load first (default 1; --quick: 0.5)")
    p.add_argument("--quick", action="store_true",
                   help="for iterating: 1 repetition, 2 s trials, workers=1, a 200,000-line log for logbench")
    p.add_argument("--log-lines", type=int, default=None,
                   help="lines of the synthetic log for logbench (default 2,000,000; --quick: 200,000)")
    p.add_argument("--out", type=Path, default=None, help="directory for results (default bench/results/<time>)")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.fronts = [s.strip() for s in args.fronts.split(",") if s.strip()]
    args.workers = [int(w) for w in str(args.workers).split(",") if w.strip()]
    bad = [s for s in args.only if s not in every] + [f for f in args.fronts if f not in fronts.FRONTS]
    if bad:
        p.error(f"unknown scenario or front {', '.join(bad)}: scenarios are {', '.join(every)}; "
                f"fronts are {', '.join(fronts.FRONTS)}")
    if any(w not in (1, 2) for w in args.workers):
        p.error(f"--workers {args.workers}: only 1 and 2 make sense on this 2-core layout")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / stamp
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine.describe(), "args": {k: (str(v) if isinstance(v, Path) else v)
                                                              for k, v in vars(args).items()}}
    trials: list[dict] = []
    todo = plan(args)
    if todo:
        with tempfile.TemporaryDirectory(prefix="tlsfront-bench-") as tmp:
            work = Path(tmp)
            ctx = {
                "workdir": work, "duration": args.duration, "warmup": args.warmup,
                "certs": certs.make_cert_set(work / "certs"),
                "shim": loadgen.build_shim(work),
                "srcaddr": loadgen.build_srcaddr(work),
                "script_stats": loadgen.write_script(work, False),
                "script_resumed": loadgen.write_script(work, True),
                "backend": backend_mod.start_backend(work, "1"),
            }
            t0 = time.monotonic()
            try:
                for i, (workers, sc, rep, front) in enumerate(todo, 1):
                    t = run_trial(front, sc, workers, rep, ctx)
                    trials.append(t)
                    if "error" in t:
                        print(f"[{i}/{len(todo)}] w{workers} {sc.name} rep {rep} {front}: ERROR {t['error']}",
                              file=sys.stderr, flush=True)
                    else:
                        print(f"[{i}/{len(todo)}] w{workers} {sc.name} rep {rep} {front}: "
                              f"{t['requests_per_second']:.0f} req/s, {t['cpu_per_unit_us']:.0f} µs CPU/{sc.unit[:-1] if sc.unit == 'requests' else sc.unit}, "
                              f"p99 {t['p99_ms']:.1f} ms, {t['resumption_check']}", flush=True)
            finally:
                ctx["backend"].stop()
            results["proxy_seconds"] = time.monotonic() - t0
    results["trials"] = trials
    summary = report.summarize(trials)
    results["summary"] = [{"workers": k[0], "scenario": k[1], "front": k[2], **v} for k, v in summary.items()]
    text = ["## Machine", "", report.machine_md(results["machine"], results["args"], results.get("proxy_seconds")), ""]
    if summary:
        subject = "tlsfront" if any(k[2] == "tlsfront" for k in summary) else args.fronts[-1]
        text += [f"## Ratios ({subject}; CPU per unit of work, medians of {args.reps})", "",
                 report.ratio_table(summary, subject), "",
                 "## Work per front CPU second (medians; the issue's table)", "",
                 *[report.work_table(summary, w) + "\n" for w in args.workers],
                 "## Raw figures (medians)", "", report.raw_table(summary), ""]
        if any(k[2] == "twisted" for k in summary):
            text += ["## The HTTP layer: plain twisted.web + Agent against tlsfront", "", report.baseline_table(summary), ""]
    if "logbench" in args.only:
        from bench import logbench
        lb = logbench.run(out, lines=args.log_lines, quick=args.quick)
        results["logbench"] = lb
        text += ["## tlslog scan against grep and mtail", "", logbench.table(lb), ""]
    results["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    md = "\n".join(text)
    (out / "results.md").write_text(md)
    print()
    print(md)
    print(f"results: {out / 'results.json'} and {out / 'results.md'}")
    failed = [t for t in trials if "error" in t or t.get("resumption_check", "").startswith("FAILED")]
    if failed:
        print(f"{len(failed)} trial(s) failed or did not pass the resumption check: see results.json", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
