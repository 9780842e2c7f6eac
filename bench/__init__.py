"""`make bench`: tlsfront against nginx, HAProxy, Apache and a plain Twisted proxy, on one machine.

Run `python -m bench.run --help`. Everything is measured as the FRONT's CPU seconds
per unit of work (requests, MiB), compared as ratios inside one interleaved round,
because the machine is small and shared (see docs/benchmarks.md).

Modules:
- `procs`: process trees, CPU seconds and peak RSS from /proc, free ports, pinning.
- `certs`: one throwaway certificate set (ECDSA P-256 and RSA-2048) per run.
- `backend`: the static backend (a plain-HTTP nginx, 1 process, 2-byte and 1 MiB files).
- `fronts`: how each front is configured, started and asked whether sessions resumed.
- `loadgen`: wrk runs, the no-resumption LD_PRELOAD shim, wrk output parsing.
- `scenarios`: the table of scenarios.
- `report`: medians, ratios, the markdown table, JSON.
- `logbench`: `tlslog scan` against grep and mtail, timed by hyperfine.
- `baseline_twisted`: a naive twisted.web + Agent reverse proxy (the "plain Twisted" row).
"""
