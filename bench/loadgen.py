"""The load generator: wrk, one JSON line of results from a Lua `done()` hook.

Why Lua and not wrk's text: `done(summary, latency)` gives exact counts and
percentiles in microseconds, with no unit parsing. Handshake scenarios also
count the `X-TLS-Resumed` response header per response, the server-side proof
that full-handshake runs did not resume and resumed runs did:
- nginx: `$ssl_session_reused` ("r" / ".");
- HAProxy: `ssl_fc_is_resumed` ("1" / "0");
- the Twisted baseline: SSL_session_reused ("1" / "0");
- tlsfront: the backend echoes the X-SSL-Session-Reused request header tlsfront
  sends it (mod_ssl's SSL_SESSION_RESUMED: "Resumed" / "Initial").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs

SHIM_SOURCE = Path(__file__).parent / "noresume.c"
SRCADDR_SOURCE = Path(__file__).parent / "srcaddr.c"
MARK = "BENCH_JSON "

_DONE = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  resumed, full, unknown = 0, 0, 0
end
function done(summary, latency, requests)
  local r, f, u = 0, 0, 0
  for _, t in ipairs(threads) do
    r = r + (t:get("resumed") or 0)
    f = f + (t:get("full") or 0)
    u = u + (t:get("unknown") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"resumed":%d,"full":%d,"unknown":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, r, f, u))
end
"""

# only in handshake scenarios: a Lua call per response costs wrk (CPU 1), not the front
_COUNT_RESUMED = r"""
local yes = { r = true, ["1"] = true, Resumed = true }
local no = { ["."] = true, ["0"] = true, Initial = true }
function response(status, headers, body)
  local v
  for k, val in pairs(headers) do
    if string.lower(k) == "x-tls-resumed" then v = val end
  end
  if yes[v] then resumed = resumed + 1
  elseif no[v] then full = full + 1
  else unknown = unknown + 1 end
end
"""


@dataclass
class WrkResult:
    requests: int
    duration_seconds: float
    bytes: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: dict[str, int]
    resumed: int  # responses whose X-TLS-Resumed said resumed (handshake scenarios only)
    full: int
    unknown: int
    argv: list[str] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_seconds if self.duration_seconds else 0.0


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk not found: run `bash bench/install-tools.sh` (Debian package wrk)")
    return path


def _compile(source: Path, out: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise RuntimeError("gcc not found: the bench needs it for its LD_PRELOAD shims (apt-get install gcc)")
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(out), str(source), "-ldl"], check=True)
    return out


def build_shim(out_dir: Path) -> Path:
    """Compile noresume.c into `out_dir/noresume.so`: no TLS session is ever offered."""
    return _compile(SHIM_SOURCE, out_dir / "noresume.so")


def build_srcaddr(out_dir: Path) -> Path:
    """Compile srcaddr.c into `out_dir/srcaddr.so`: wrk connects from 127.0.0.2..65."""
    return _compile(SRCADDR_SOURCE, out_dir / "srcaddr.so")


def write_script(out_dir: Path, count_resumed: bool) -> Path:
    path = out_dir / ("wrk-resumed.lua" if count_resumed else "wrk-stats.lua")
    path.write_text(_DONE + (_COUNT_RESUMED if count_resumed else ""))
    return path


def parse(stdout: str) -> dict:
    """The JSON object of the `BENCH_JSON` line of wrk's output.

    Raises RuntimeError with wrk's output when the line is missing (wrk failed).
    """
    for line in stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"wrk printed no {MARK.strip()} line; its output:\n{stdout[-2000:]}")


def run_wrk(url: str, *, connections: int, duration_seconds: float, script: Path,
            headers: tuple[str, ...] = (), preload: Path | tuple[Path, ...] | None = None,
            cpus: str | None = None, timeout_seconds: float = 10.0) -> WrkResult:
    """One wrk run (1 thread) pinned to `cpus`, with `preload` shims; returns counts and latencies."""
    argv = [wrk_binary(), "-t1", f"-c{connections}", f"-d{max(1, round(duration_seconds))}s",
            f"--timeout={timeout_seconds:g}s", "-s", str(script)]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    argv = procs.pinned(argv, cpus)
    env = None
    libs = [preload] if isinstance(preload, Path) else list(preload or ())
    if libs:
        env = dict(os.environ, LD_PRELOAD=" ".join(str(p) for p in libs))
    done = subprocess.run(argv, capture_output=True, text=True, env=env,
                          timeout=duration_seconds + timeout_seconds + 30)
    data = parse(done.stdout + done.stderr)
    return WrkResult(
        requests=data["requests"],
        duration_seconds=data["duration_us"] / 1e6,
        bytes=data["bytes"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        errors=data["errors"],
        resumed=data["resumed"],
        full=data["full"],
        unknown=data["unknown"],
        argv=argv,
    )
