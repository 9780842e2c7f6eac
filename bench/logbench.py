"""`tlslog scan` against grep on a synthetic Apache 2.4 error log, timed by hyperfine.

Issue 3's targets: one process within 4x `grep -cE` (six patterns); the gzipped
file within 1.5x `zcat | grep -c`; `--jobs 2` on two files nearly 2x one job.
hyperfine runs with `--output=pipe`: GNU grep -c writing to /dev/null stops at
the first match and would look absurdly fast (see the benchmarking notes).
mtail is not installed here; its row from the issue is not re-measured.

The log comes from the analyzer's own generator `tlslog.synth` (it also returns the
true event counts, which `tlslog scan` must report: the benchmark checks it); tlslog is
part of the same installation, so there is no second generator to keep in step.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from tlslog import synth

GENERATOR_VERSION = 2  # bump when a generator's output changes, so cached logs are remade

# the TLS/proxy error lines of tlslog.synth's log, as six grep patterns, and one literal
TLSLOG_SYNTH_SIX = "AH02008|SSL Library Error|AH01996|AH02007|AH00957|AH01114"


def generator() -> tuple[str, Callable[[Path, int], dict | None], str, str]:
    """(name, write(path, lines) -> true event counts, grep literal, grep six patterns)."""
    return ("tlslog.synth", lambda path, n: dict(synth.write(str(path), n)), "AH02008", TLSLOG_SYNTH_SIX)


def _tlslog() -> list[str] | None:
    exe = Path(sys.executable).with_name("tlslog")
    argv = [str(exe)] if exe.exists() else None
    if argv is None:
        return None
    probe = subprocess.run([*argv, "scan", "--help"], capture_output=True, text=True)
    return argv if probe.returncode == 0 else None


def make_logs(directory: Path, lines: int) -> tuple[Path, Path, Path, dict | None]:
    """(log, copy of it, log.gz, true event counts or None), cached under `directory`
    by generator, size and version."""
    directory.mkdir(parents=True, exist_ok=True)
    name, write, _, _ = generator()
    log = directory / f"apache-error-{name.replace('.', '_')}-{lines}-v{GENERATOR_VERSION}.log"
    truth_file = log.with_suffix(".truth.json")
    if not log.exists():
        tmp = log.with_suffix(".tmp")
        truth = write(tmp, lines)
        truth_file.write_text(json.dumps(truth))
        tmp.rename(log)
    second = log.with_name(log.stem + "-b.log")
    if not second.exists():
        shutil.copyfile(log, second)
    gz = log.with_name(log.name + ".gz")
    if not gz.exists():
        with open(gz.with_suffix(".tmp"), "wb") as out:
            subprocess.run(["gzip", "-c", "-6", str(log)], stdout=out, check=True)
        gz.with_suffix(".tmp").rename(gz)
    truth = json.loads(truth_file.read_text()) if truth_file.exists() else None
    return log, second, gz, truth


def commands(log: Path, second: Path, gz: Path, tlslog: list[str] | None) -> dict[str, str]:
    q = shlex.quote
    _, _, literal, six_patterns = generator()
    lit, six = q(literal), q(six_patterns)
    cmds = {
        "cat": f"cat {q(str(log))}",
        "grep -c literal": f"grep -c {lit} {q(str(log))}",
        "grep -cE six": f"grep -cE {six} {q(str(log))}",
        "zcat | grep -c": f"zcat {q(str(gz))} | grep -c {lit}",
    }
    if tlslog:
        t = " ".join(q(a) for a in tlslog)
        cmds |= {
            "tlslog scan": f"{t} scan --format json {q(str(log))}",
            "tlslog scan .gz": f"{t} scan --format json {q(str(gz))}",
            "tlslog scan 2 files --jobs 1": f"{t} scan --format json --jobs 1 {q(str(log))} {q(str(second))}",
            "tlslog scan 2 files --jobs 2": f"{t} scan --format json --jobs 2 {q(str(log))} {q(str(second))}",
        }
    return cmds


def run(out: Path, lines: int = 2_000_000, quick: bool = False) -> dict:
    """Generate (or reuse) the logs, time every command, return figures and ratios."""
    out.mkdir(parents=True, exist_ok=True)
    log, second, gz, truth = make_logs(out.parent / "logbench", lines)
    tlslog = _tlslog()
    cmds = commands(log, second, gz, tlslog)
    preflight = {}
    for name, cmd in cmds.items():
        done = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        preflight[name] = {"exit": done.returncode, "stdout_head": done.stdout[:300], "stdout": done.stdout,
                           "stderr_tail": done.stderr[-500:]}
    usable = {n: c for n, c in cmds.items() if preflight[n]["exit"] in (0, 1) and "Traceback" not in preflight[n]["stderr_tail"]}
    # grep and friends take a fraction of a second: 1 warm-up + 5 runs. tlslog takes seconds and
    # its preflight run above already warmed the page cache: 3 runs (2 with --quick).
    fast = {n: c for n, c in usable.items() if not n.startswith("tlslog")}
    slow = {n: c for n, c in usable.items() if n.startswith("tlslog")}
    seconds: dict[str, float] = {}
    for label, group, opts in (("fast", fast, ["--warmup", "1", "--runs", "3" if quick else "5"]),
                               ("tlslog", slow, ["--warmup", "0", "--runs", "2" if quick else "3"])):
        if not group:
            continue
        export = out / f"logbench-hyperfine-{label}.json"
        argv = ["hyperfine", "--output=pipe", "--ignore-failure", "--style", "basic", *opts,
                "--export-json", str(export)]
        for name, cmd in group.items():
            argv += ["-n", name, cmd]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        seconds |= {r["command"]: r["median"] for r in json.loads(export.read_text())["results"]}
    line_count = lines

    def ratio(a: str, b: str) -> float | None:
        return seconds[a] / seconds[b] if a in seconds and b in seconds and seconds[b] else None

    # correctness beside speed: the scan must find exactly the generator's events
    truth_check = "no truth from this generator"
    if truth is not None and "tlslog scan" in usable:
        try:
            found = json.loads(preflight["tlslog scan"]["stdout"])["events"]
            wrong = {k: (found.get(k, 0), v) for k, v in truth.items() if found.get(k, 0) != v}
            extra = {k: n for k, n in found.items() if n and k not in truth}
            truth_check = "ok: every category matches" if not wrong and not extra else \
                f"MISMATCH: (found, expected) {wrong}, unexpected {extra}"
        except (ValueError, KeyError) as e:
            truth_check = f"could not read tlslog's JSON: {e}"
    for p in preflight.values():
        p.pop("stdout", None)
    return {
        "generator": generator()[0],
        "events_vs_truth": truth_check,
        "lines": line_count,
        "log_bytes": log.stat().st_size,
        "gz_bytes": gz.stat().st_size,
        "tlslog": " ".join(tlslog) if tlslog else None,
        "median_seconds": seconds,
        "lines_per_second": {n: line_count / s for n, s in seconds.items() if s},
        "ratios": {
            "tlslog scan / grep -cE six (target <= 4)": ratio("tlslog scan", "grep -cE six"),
            "tlslog scan .gz / zcat | grep -c (target <= 1.5)": ratio("tlslog scan .gz", "zcat | grep -c"),
            "--jobs 1 / --jobs 2 on two files (target ~2)": ratio("tlslog scan 2 files --jobs 1", "tlslog scan 2 files --jobs 2"),
        },
        "preflight": preflight,
        "skipped": {n: "failed its preflight run (see preflight)" for n in cmds if n not in usable}
                   | ({} if tlslog else {"tlslog scan": "tlslog scan is not available yet"})
                   | {"mtail": "not installed on this machine; the issue's figure (9.0 s) is not re-measured"},
    }


def _cell(text: str) -> str:
    """Markdown table cells cannot hold a bare `|`."""
    return text.replace("|", "\\|")


def table(lb: dict) -> str:
    lines = [f"{lb['lines']:,} lines from `{lb['generator']}`, {lb['log_bytes'] / 1e6:.0f} MB "
             f"({lb['gz_bytes'] / 1e6:.0f} MB gzipped); hyperfine medians, `--output=pipe`. "
             f"tlslog's counts against the generator's truth: {lb['events_vs_truth']}.",
             "", "| command | seconds | lines/s |", "|---|---|---|"]
    for name, s in lb["median_seconds"].items():
        rate = lb["lines_per_second"].get(name)
        lines.append(f"| `{_cell(name)}` | {s:.3f} | {'n/a' if rate is None else f'{rate / 1e6:.2f} M'} |")
    lines += ["", "| ratio | value |", "|---|---|"]
    for name, v in lb["ratios"].items():
        lines.append(f"| {_cell(name)} | {'n/a' if v is None else f'{v:.2f}'} |")
    if lb["skipped"]:
        lines += [""] + [f"- skipped `{n}`: {why}" for n, why in lb["skipped"].items()]
    return "\n".join(lines)
