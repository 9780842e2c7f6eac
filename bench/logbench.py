"""`tlslog scan` against grep on a synthetic Apache 2.4 error log, timed by hyperfine.

Issue 3's targets: one process within 4x `grep -cE` (six patterns); the gzipped
file within 1.5x `zcat | grep -c`; `--jobs 2` on two files nearly 2x one job.
hyperfine runs with `--output=pipe`: GNU grep -c writing to /dev/null stops at
the first match and would look absurdly fast (see the benchmarking notes).

Issue 3 also measured "mtail in one-shot mode with six counters 9.0 s" and asks the scan
to be at least 7 times faster. mtail (Debian's 3.0.0~rc50, installed by
bench/install-tools.sh) runs the program bench/templates/six.mtail, one counter per
pattern of TLSLOG_SYNTH_SIX, as

    mtail --one_shot --one_shot_format json --logtostderr --address 127.0.0.1 --port 0
          --progs bench/templates/six.mtail --logs LOG

(one-shot mode still opens its HTTP listener, on [::]:3903 by default: hence the
loopback address and a port the kernel picks). Its counters must equal `grep -c` of
their patterns; the results say whether they do. mtail is not pinned to one core: its Go
runtime uses both (CPU seconds above wall seconds in the table), which flatters it against
the one-process scan, so the wall-clock ratio is the conservative one.

The log comes from the analyzer's own generator `tlslog.synth` (it also returns the
true event counts, which `tlslog scan` must report: the benchmark checks it); tlslog is
part of the same installation, so there is no second generator to keep in step.
"""

from __future__ import annotations

import json
import re
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

# the same six patterns as an mtail program, one counter each (read back by mtail_rules)
MTAIL_PROGRAM = Path(__file__).with_name("templates") / "six.mtail"
_MTAIL_RULE = re.compile(r"^/(?P<pattern>(?:[^/\\\n]|\\.)+)/\s*\{\s*(?P<counter>\w+)\+\+\s*\}", re.M)


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


def _mtail() -> str | None:
    """The mtail executable when it is installed and runs, else None."""
    exe = shutil.which("mtail")
    if exe is None:
        return None
    probe = subprocess.run([exe, "--version"], capture_output=True, text=True)
    return exe if probe.returncode == 0 and "mtail version" in probe.stdout + probe.stderr else None


def mtail_rules(program: Path = MTAIL_PROGRAM) -> dict[str, str]:
    """{counter: pattern} of an mtail program written as rules `/PATTERN/ {` `COUNTER++` `}`.

    >>> mtail_rules()["ssl_library_error"]
    'SSL Library Error'
    """
    return {m["counter"]: m["pattern"] for m in _MTAIL_RULE.finditer(program.read_text())}


def mtail_program_problem(program: Path = MTAIL_PROGRAM) -> str | None:
    """Why `program` cannot stand for grep's six patterns, or None when it can."""
    want = TLSLOG_SYNTH_SIX.split("|")
    have = sorted(mtail_rules(program).values())
    if have != sorted(want):
        return (f"{program}: its rules count {have}, not the six patterns of TLSLOG_SYNTH_SIX {want}; "
                f"write one rule `/PATTERN/ {{` NEWLINE `COUNTER++` NEWLINE `}}` per pattern")
    return None


def mtail_counts(stdout: str) -> dict[str, int]:
    """{counter: value} from `mtail --one_shot --one_shot_format json`'s output, whose shape is
    {name: [{"Name": name, "LabelValues": [{"Value": {"Value": 12, ...}}], ...}], ...}
    (an unlabelled counter has one LabelValue; a counter never incremented may have none)."""
    counts = {}
    for name, metrics in json.loads(stdout).items():
        counts[name] = sum(int(lv["Value"]["Value"]) for m in metrics for lv in m.get("LabelValues") or [])
    return counts


def check_mtail(stdout: str, log: Path, program: Path = MTAIL_PROGRAM) -> str:
    """'ok: ...' when every counter of mtail's one-shot JSON equals `grep -cE PATTERN log`,
    else 'MISMATCH: ...' naming each counter, its pattern, (mtail, grep)."""
    try:
        found = mtail_counts(stdout)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"could not read mtail's JSON: {e!r}"
    wrong = {}
    rules = mtail_rules(program)
    for counter, pattern in rules.items():
        done = subprocess.run(["grep", "-cE", "-e", pattern, str(log)], capture_output=True, text=True)
        if done.returncode not in (0, 1):
            return f"grep -cE {pattern!r} failed: {done.stderr.strip()}"
        expected = int(done.stdout)
        if found.get(counter, 0) != expected:
            wrong[counter] = (pattern, found.get(counter, 0), expected)
    if wrong:
        return f"MISMATCH: counter: (pattern, mtail, grep -c) {wrong}"
    return f"ok: each of the {len(rules)} counters equals grep -c of its pattern"


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


def commands(log: Path, second: Path, gz: Path, tlslog: list[str] | None,
             mtail: str | None = None) -> dict[str, str]:
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
    if mtail:
        # --logs is a comma-separated list of globs: the generated log's name holds neither
        cmds["mtail"] = (f"{q(mtail)} --one_shot --one_shot_format json --logtostderr --address 127.0.0.1 "
                         f"--port 0 --progs {q(str(MTAIL_PROGRAM))} --logs {q(str(log))}")
    return cmds


def run(out: Path, lines: int = 2_000_000, quick: bool = False) -> dict:
    """Generate (or reuse) the logs, time every command, return figures and ratios."""
    out.mkdir(parents=True, exist_ok=True)
    log, second, gz, truth = make_logs(out.parent / "logbench", lines)
    tlslog = _tlslog()
    mtail = _mtail()
    mtail_problem = mtail_program_problem() if mtail else None
    cmds = commands(log, second, gz, tlslog, None if mtail_problem else mtail)
    preflight = {}
    for name, cmd in cmds.items():
        done = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        preflight[name] = {"exit": done.returncode, "stdout_head": done.stdout[:300], "stdout": done.stdout,
                           "stderr_tail": done.stderr[-500:]}
    # grep exits 1 when nothing matched, a count all the same; mtail's 1 is a failure (its program
    # did not compile, a log could not be read)
    usable = {n: c for n, c in cmds.items()
              if preflight[n]["exit"] in ((0,) if n == "mtail" else (0, 1)) and "Traceback" not in preflight[n]["stderr_tail"]}
    # grep and friends take a fraction of a second: 1 warm-up + 5 runs. tlslog takes seconds and
    # its preflight run above already warmed the page cache: 3 runs (2 with --quick). mtail takes
    # about ten times tlslog's time (6 s on 2M lines): its own group, 2 runs (1 with --quick).
    fast = {n: c for n, c in usable.items() if not n.startswith(("tlslog", "mtail"))}
    slow = {n: c for n, c in usable.items() if n.startswith("tlslog")}
    slowest = {n: c for n, c in usable.items() if n == "mtail"}
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for label, group, opts in (("fast", fast, ["--warmup", "1", "--runs", "3" if quick else "5"]),
                               ("tlslog", slow, ["--warmup", "0", "--runs", "2" if quick else "3"]),
                               ("mtail", slowest, ["--warmup", "0", "--runs", "1" if quick else "2"])):
        if not group:
            continue
        export = out / f"logbench-hyperfine-{label}.json"
        argv = ["hyperfine", "--output=pipe", "--ignore-failure", "--style", "basic", *opts,
                "--export-json", str(export)]
        for name, cmd in group.items():
            argv += ["-n", name, cmd]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(export.read_text())["results"]
        seconds |= {r["command"]: r["median"] for r in results}
        # user+system of the command and its children, mean over the runs: tells whether a
        # command used more than one core (mtail's Go runtime may; --jobs 2 should)
        cpu |= {r["command"]: r["user"] + r["system"] for r in results}
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
    mtail_check, mtail_found = "mtail did not run", None
    if "mtail" in usable:
        mtail_check = check_mtail(preflight["mtail"]["stdout"], log)
        try:
            mtail_found = mtail_counts(preflight["mtail"]["stdout"])
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # check_mtail has said why
    for p in preflight.values():
        p.pop("stdout", None)
    return {
        "generator": generator()[0],
        "events_vs_truth": truth_check,
        "mtail_vs_grep": mtail_check,
        "mtail_counts": mtail_found,
        "mtail_program": str(MTAIL_PROGRAM) if "mtail" in cmds else None,
        "lines": line_count,
        "log_bytes": log.stat().st_size,
        "gz_bytes": gz.stat().st_size,
        "tlslog": " ".join(tlslog) if tlslog else None,
        "median_seconds": seconds,
        "cpu_seconds": cpu,
        # the two-file commands read the log and its copy: twice the lines
        "lines_per_second": {n: line_count * (2 if "2 files" in n else 1) / s for n, s in seconds.items() if s},
        "ratios": {
            "tlslog scan / grep -cE six (target <= 4)": ratio("tlslog scan", "grep -cE six"),
            "tlslog scan .gz / zcat | grep -c (target <= 1.5)": ratio("tlslog scan .gz", "zcat | grep -c"),
            "--jobs 1 / --jobs 2 on two files (target ~2)": ratio("tlslog scan 2 files --jobs 1", "tlslog scan 2 files --jobs 2"),
            # the words, "twice the single-process rate": lines/s of --jobs 2 on two files against lines/s of
            # one process on one file (the first ratio also counts the start-up once in --jobs 1, twice the work)
            "lines/s: --jobs 2 on two files / one process on one file (target ~2)":
                2 * one_vs_two if (one_vs_two := ratio("tlslog scan", "tlslog scan 2 files --jobs 2")) else None,
            "mtail / tlslog scan (target >= 7)": ratio("mtail", "tlslog scan"),
        },
        "preflight": preflight,
        "skipped": {n: "failed its preflight run (see preflight)" for n in cmds if n not in usable}
                   | ({} if tlslog else {"tlslog scan": "tlslog scan is not available yet"})
                   | ({"mtail": MTAIL_ABSENT} if not mtail else {})
                   | ({"mtail": mtail_problem} if mtail_problem else {}),
    }


MTAIL_ABSENT = ("not installed on this machine (`bash bench/install-tools.sh` installs the Debian package); "
                "the issue's figure (9.0 s) is not re-measured")


def _cell(text: str) -> str:
    """Markdown table cells cannot hold a bare `|`."""
    return text.replace("|", "\\|")


def table(lb: dict) -> str:
    lines = [f"{lb['lines']:,} lines from `{lb['generator']}`, {lb['log_bytes'] / 1e6:.0f} MB "
             f"({lb['gz_bytes'] / 1e6:.0f} MB gzipped); hyperfine medians, `--output=pipe`. "
             f"tlslog's counts against the generator's truth: {lb['events_vs_truth']}. "
             f"mtail's counters against `grep -c`: {lb.get('mtail_vs_grep', 'n/a')}.",
             "", "| command | seconds | lines/s | CPU s (mean user+sys) |", "|---|---|---|---|"]
    for name, s in lb["median_seconds"].items():
        rate = lb["lines_per_second"].get(name)
        c = lb.get("cpu_seconds", {}).get(name)
        lines.append(f"| `{_cell(name)}` | {s:.3f} | {'n/a' if rate is None else f'{rate / 1e6:.2f} M'} "
                     f"| {'n/a' if c is None else f'{c:.3f}'} |")
    lines += ["", "| ratio | value |", "|---|---|"]
    for name, v in lb["ratios"].items():
        lines.append(f"| {_cell(name)} | {'n/a' if v is None else f'{v:.2f}'} |")
    if lb["skipped"]:
        lines += [""] + [f"- skipped `{n}`: {why}" for n, why in lb["skipped"].items()]
    return "\n".join(lines)
