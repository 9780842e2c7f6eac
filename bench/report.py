"""Medians, ratios and the markdown table of a bench run.

Ratios are always taken inside one run (the machine is shared; absolute
figures drift between time windows, ratios within an interleaved round hold).
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from bench.scenarios import SCENARIOS

METRICS = ("requests_per_second", "p50_ms", "p99_ms", "cpu_per_unit_us", "units_per_cpu_second",
           "rss_worker_mib", "rss_total_mib", "cpu_seconds", "units", "processes")
RSS_TARGET_MIB = 80  # issue 4: RSS per worker after the keep-alive run


def summarize(trials: list[dict]) -> dict[tuple[int, str, str], dict]:
    """{(workers, scenario, front): {metric: median, "reps": n, "checks": [...], "errors": n}}."""
    groups: dict[tuple[int, str, str], list[dict]] = defaultdict(list)
    for t in trials:
        if "error" not in t:
            groups[(t["workers"], t["scenario"], t["front"])].append(t)
    out = {}
    for key, ts in groups.items():
        row = {m: statistics.median(t.get(m, 0) for t in ts) for m in METRICS}
        row["reps"] = len(ts)
        row["checks"] = sorted({t["resumption_check"] for t in ts})
        row["wrk_errors"] = sum(sum(t["errors"].values()) for t in ts)
        out[key] = row
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def _get(summary, workers, scenario, front, metric):
    row = summary.get((workers, scenario, front))
    return row[metric] if row else None


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def ratio_table(summary: dict, subject: str = "tlsfront") -> str:
    """The one table of ratios: `subject`'s CPU per unit over nginx's and HAProxy's, per scenario.

    Also the issue's own ratio (nginx CPU per unit / subject's: higher is better)
    and its target.
    """
    lines = [
        f"| workers | scenario | {subject}/nginx CPU per unit | {subject}/HAProxy CPU per unit "
        f"| nginx/{subject} (issue ratio) | target | met | {subject}/nginx p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workers in sorted({k[0] for k in summary}):
        for name, sc in SCENARIOS.items():
            mine = _get(summary, workers, name, subject, "cpu_per_unit_us")
            if mine is None:
                continue
            ng = _get(summary, workers, name, "nginx", "cpu_per_unit_us")
            hp = _get(summary, workers, name, "haproxy", "cpu_per_unit_us")
            issue = ratio(ng, mine)
            target = sc.target_vs_nginx if workers == 1 else None
            met = "" if target is None or issue is None else ("yes" if issue >= target else "NO")
            p99 = ratio(_get(summary, workers, name, subject, "p99_ms"), _get(summary, workers, name, "nginx", "p99_ms"))
            lines.append(
                f"| {workers} | {name} | {_fmt(ratio(mine, ng))} | {_fmt(ratio(mine, hp))} | {_fmt(issue)} "
                f"| {'>= ' + _fmt(target) if target else ''} | {met} | {_fmt(p99)} |"
            )
    rss = _get(summary, 1, "keepalive", subject, "rss_worker_mib")
    p99 = ratio(_get(summary, 1, "keepalive", subject, "p99_ms"), _get(summary, 1, "keepalive", "nginx", "p99_ms"))
    if rss is not None:
        lines.append("")
        lines.append(f"- {subject} peak RSS per worker after the keep-alive run: {rss:.1f} MiB "
                     f"(target < {RSS_TARGET_MIB}: {'yes' if rss < RSS_TARGET_MIB else 'NO'})")
    if p99 is not None:
        lines.append(f"- {subject} p99 at 50 keep-alive connections: {p99:.2f} x nginx's "
                     f"(target <= 3: {'yes' if p99 <= 3 else 'NO'})")
    return "\n".join(lines)


def raw_table(summary: dict) -> str:
    """Every (workers, scenario, front): medians of the raw figures."""
    lines = [
        "| workers | scenario | front | req/s | p50 ms | p99 ms | front CPU per unit | units per front CPU s "
        "| peak RSS/worker MiB | processes | reps | resumption check | wrk errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (workers, name, front), row in sorted(summary.items(), key=lambda kv: (kv[0][0], list(SCENARIOS).index(kv[0][1]), kv[0][2])):
        unit = SCENARIOS[name].unit
        per = f"{row['cpu_per_unit_us']:.0f} µs/req" if unit == "requests" else f"{row['cpu_per_unit_us'] / 1000:.2f} ms/MiB"
        lines.append(
            f"| {workers} | {name} | {front} | {_fmt(row['requests_per_second'], 0)} | {_fmt(row['p50_ms'])} "
            f"| {_fmt(row['p99_ms'])} | {per} | {_fmt(row['units_per_cpu_second'], 0)} {unit} "
            f"| {_fmt(row['rss_worker_mib'], 1)} | {row['processes']:.0f} | {row['reps']} | {', '.join(row['checks'])} | {row['wrk_errors']} |"
        )
    return "\n".join(lines)


def baseline_table(summary: dict) -> str:
    """The HTTP-layer question: tlsfront (httptools) against the plain twisted.web + Agent proxy."""
    lines = ["| scenario | twisted.web+Agent CPU per unit / tlsfront's | twisted.web+Agent / nginx |", "|---|---|---|"]
    for name in SCENARIOS:
        tw = _get(summary, 1, name, "twisted", "cpu_per_unit_us")
        if tw is None:
            continue
        lines.append(f"| {name} | {_fmt(ratio(tw, _get(summary, 1, name, 'tlsfront', 'cpu_per_unit_us')))} "
                     f"| {_fmt(ratio(tw, _get(summary, 1, name, 'nginx', 'cpu_per_unit_us')))} |")
    return "\n".join(lines)


def machine_md(m: dict, args: dict, seconds: float | None) -> str:
    """The machine and versions, as a markdown list (for docs/benchmarks.md)."""
    cpu = m.get("cpu", {})
    lines = [
        f"- date: {m.get('date_utc')}; run took {seconds / 60:.1f} min" if seconds else f"- date: {m.get('date_utc')}",
        f"- CPU: {cpu.get('Model name', '?')}, {cpu.get('CPU(s)', '?')} CPUs "
        f"({cpu.get('Thread(s) per core', '?')} thread per core), hypervisor {cpu.get('Hypervisor vendor', 'none')}; "
        f"{m.get('memory_gib')} GiB; kernel {m.get('kernel')}; Python {m.get('python')}",
        f"- load average at start: {' '.join(m.get('loadavg_start', []))} (the machine was shared with other test runs)",
        "- versions: " + "; ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
        + f"; tlsfront at commit {m.get('git_commit', '?')}",
        f"- run: `python -m bench.run` reps={args.get('reps')}, duration={args.get('duration')} s, "
        f"warm-up={args.get('warmup')} s, workers={args.get('workers')}, fronts={','.join(args.get('fronts', []))}",
    ]
    return "\n".join(lines)


def work_table(summary: dict, workers: int = 1) -> str:
    """The issue's table: work done per CPU second of the front, one row per front."""
    names = [n for n in SCENARIOS if any(k[0] == workers and k[1] == n for k in summary)]
    heads = [f"{n} ({'MiB' if SCENARIOS[n].unit == 'MiB' else 'requests'})" for n in names]
    lines = [f"| front (workers={workers}) | " + " | ".join(heads) + " |", "|---" * (len(names) + 1) + "|"]
    for front in dict.fromkeys(k[2] for k in summary if k[0] == workers):
        cells = [_fmt(_get(summary, workers, n, front, "units_per_cpu_second"), 0) for n in names]
        lines.append(f"| {front} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
