"""Golden tests: `tlslog scan --format json` on the real-server corpus equals its ground truth.

The corpus (tests/data/logs/<case>/<file>) was produced by real Apache 2.4 mod_ssl, nginx 1.22
and HAProxy 2.6 servers driven by `python -m tests.corpus.build`; each file's truth
(tests/data/truth/<case>/<file>.truth.json) is what that driver *did*, counted as it did it,
never the analyzer's output (see tests/data/README.md). These tests read the committed files
only; they never start a server.

Compared exactly: `events` (every category of issue 3, zeros included), `lines`,
`unparsed_lines`. `status`, `protocols` and ciphers are compared after a small normalisation
that tolerates representation, not values: status codes are folded into classes ("503" ->
"5xx"), per-vhost protocol and cipher tables are summed (ciphers may sit at top level or in
each vhost's {"protocols": ..., "ciphers": ...}), zero entries are dropped, and requests
without TLS ("-", "(NONE)") have no protocol or cipher.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import zstandard

DATA = Path(__file__).resolve().parents[1] / "data"
LOGS, TRUTH = DATA / "logs", DATA / "truth"

# issue 3, "Categories (these exact names, in the JSON output and in metrics)"
ISSUE3_CATEGORIES = (
    "plain_http_on_tls_port", "client_rejected_cert", "no_shared_cipher", "protocol_mismatch",
    "client_cert_missing", "client_cert_invalid", "handshake_eof_or_reset", "handshake_timeout",
    "prng_not_seeded", "mutex_permission_denied", "key_cert_mismatch", "passphrase_failure",
    "cert_file_unreadable", "session_cache_error", "backend_unavailable", "backend_timeout",
    "other_tls_error",
)

LOG_FILES = sorted(p for p in LOGS.rglob("*") if p.is_file())
CASE_DIRS = sorted(p for p in LOGS.iterdir() if p.is_dir())


def _id(p: Path) -> str:
    return p.relative_to(LOGS).as_posix()


def truth_of(log: Path) -> dict:
    return json.loads((TRUTH / (_id(log) + ".truth.json")).read_text())


def tlslog_command() -> list[str]:
    """The installed `tlslog` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("tlslog")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from tlslog.cli import main; sys.exit(main())"]


def scan(*paths: Path | str, options: tuple[str, ...] = (), stdin: bytes | None = None) -> dict:
    """Run `tlslog scan --format json [options] PATH...`; fail with its stderr if it gives no JSON."""
    cmd = [*tlslog_command(), "scan", "--format", "json", *options, *map(str, paths)]
    r = subprocess.run(cmd, capture_output=True, input=stdin if stdin is not None else b"", timeout=120)
    r.stdout, r.stderr = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    try:
        out = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{' '.join(cmd)} exited {r.returncode} without JSON on stdout;\n"
                    f"stdout: {r.stdout[-1500:]!r}\nstderr: {r.stderr[-3000:]}")
    assert r.returncode == 0, f"exit {r.returncode} although the input is readable; stderr: {r.stderr[-2000:]}"
    return out


def status_classes(status: dict) -> dict[str, int]:
    """{"503": 2, "2xx": 1} -> {"5xx": 2, "2xx": 1}; zero entries dropped."""
    out: Counter = Counter()
    for key, n in (status or {}).items():
        k = str(key)
        out[f"{k[0]}xx" if re.fullmatch(r"\d{3}", k) else k] += int(n)
    return {k: v for k, v in sorted(out.items()) if v}


_PROTOCOL = re.compile(r"^(SSLv[23]|TLSv1(\.[0-3])?)$")
_NOT_A_NAME = ("-", "", "None", "none", "(NONE)")  # requests without TLS


def protocol_totals(protocols: dict) -> dict[str, int]:
    """Requests per TLS protocol, flat or per vhost: {"TLSv1.2": n}, {vhost: {"TLSv1.2": n}},
    {vhost: {"protocols": {...}, "ciphers": {...}}} or {"TLSv1.2": {vhost: n}}."""
    out: Counter = Counter()
    for key, value in (protocols or {}).items():
        if not isinstance(value, dict):
            out[str(key)] += int(value)
        elif _PROTOCOL.match(str(key)):
            out[str(key)] += sum(int(v) for v in value.values())
        else:
            inner = value.get("protocols", value)
            for proto, n in inner.items():
                if not isinstance(n, dict):
                    out[str(proto)] += int(n)
    return {k: v for k, v in sorted(out.items()) if v and k not in _NOT_A_NAME}


def cipher_totals(out: dict) -> dict[str, int]:
    """Requests per cipher, from a top-level "ciphers" table (flat or per vhost) or from
    per-vhost {"protocols": ..., "ciphers": ...} tables inside "protocols"."""
    totals: Counter = Counter()

    def add(table: dict) -> None:
        for name, n in table.items():
            if isinstance(n, dict):
                add(n)
            else:
                totals[str(name)] += int(n)

    if isinstance(out.get("ciphers"), dict):
        add(out["ciphers"])
    for value in (out.get("protocols") or {}).values():
        if isinstance(value, dict) and isinstance(value.get("ciphers"), dict):
            add(value["ciphers"])
    return {k: v for k, v in sorted(totals.items()) if v and k not in _NOT_A_NAME}


def expected_sum(logs: list[Path]) -> dict:
    events: Counter = Counter()
    status: Counter = Counter()
    protocols: Counter = Counter()
    ciphers: Counter = Counter()
    lines = unparsed = 0
    for log in logs:
        t = truth_of(log)
        events.update(t["events"])
        status.update(t["status"])
        protocols.update(t["protocols"])
        ciphers.update(t["ciphers"])
        lines += t["lines"]
        unparsed += t["unparsed_lines"]
    return {"events": {c: events[c] for c in ISSUE3_CATEGORIES}, "lines": lines, "unparsed_lines": unparsed,
            "status": {k: v for k, v in sorted(status.items()) if v},
            "protocols": {k: v for k, v in sorted(protocols.items()) if v},
            "ciphers": {k: v for k, v in sorted(ciphers.items()) if v}}


def assert_matches(got: dict, want: dict, what: str) -> None:
    """Expected before observed; one message listing every difference."""
    problems = []
    got_events = got.get("events", {})
    if set(got_events) != set(ISSUE3_CATEGORIES):
        problems.append(f"categories: missing {sorted(set(ISSUE3_CATEGORIES) - set(got_events))}, "
                        f"unknown {sorted(set(got_events) - set(ISSUE3_CATEGORIES))}")
    for c in ISSUE3_CATEGORIES:
        if want["events"][c] != got_events.get(c):
            problems.append(f"events[{c}]: expected {want['events'][c]}, got {got_events.get(c)}")
    for key in ("lines", "unparsed_lines"):
        if want[key] != got.get(key):
            problems.append(f"{key}: expected {want[key]}, got {got.get(key)}")
    if want["status"] != status_classes(got.get("status", {})):
        problems.append(f"status: expected {want['status']}, got {got.get('status')}")
    if want["protocols"] != protocol_totals(got.get("protocols", {})):
        problems.append(f"protocols: expected {want['protocols']}, got {got.get('protocols')}")
    if want["ciphers"] != cipher_totals(got):
        problems.append(f"ciphers: expected {want['ciphers']}, got {cipher_totals(got)}")
    assert not problems, f"{what}:\n  " + "\n  ".join(problems)


# ------------------------------------------------------------------ the corpus itself (no analyzer)

def test_every_log_has_a_truth_and_every_truth_a_log():
    logs = {_id(p) for p in LOG_FILES}
    truths = {p.relative_to(TRUTH).as_posix().removesuffix(".truth.json") for p in TRUTH.rglob("*.truth.json")}
    assert logs == truths, f"logs without truth: {sorted(logs - truths)}; truths without log: {sorted(truths - logs)}"
    assert len(logs) >= 15, "the corpus lost files"


@pytest.mark.parametrize("log", LOG_FILES, ids=_id)
def test_truth_file_is_well_formed(log: Path):
    t = truth_of(log)
    assert list(t["events"]) == list(ISSUE3_CATEGORIES), "every category, in issue 3's order"
    assert all(isinstance(n, int) and n >= 0 for n in t["events"].values())
    data = log.read_bytes()
    assert t["lines"] == data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0), \
        f"{log}: the log was edited without regenerating its truth"
    assert set(t["status"]) <= {"1xx", "2xx", "3xx", "4xx", "5xx"}
    assert all(_PROTOCOL.match(p) for p in t["protocols"])
    assert isinstance(t["ciphers"], dict) and all(isinstance(n, int) and n > 0 for n in t["ciphers"].values())
    assert sum(t["ciphers"].values()) in (0, sum(t["protocols"].values())), "one cipher per TLS request"


def test_corpus_covers_every_category_that_can_be_provoked():
    """All 17 categories occur somewhere in the corpus (PRNG and SSLMutex only in legacy/)."""
    total = expected_sum(LOG_FILES)["events"]
    assert [c for c in ISSUE3_CATEGORIES if not total[c]] == []


# ------------------------------------------------------------------ golden: the analyzer against the truth

@pytest.mark.parametrize("log", LOG_FILES, ids=_id)
def test_golden_file(log: Path):
    got = scan(log)
    assert_matches(got, expected_sum([log]), f"tlslog scan {_id(log)}")
    assert len(got.get("files", [])) == 1


@pytest.mark.parametrize("case", CASE_DIRS, ids=lambda p: p.name)
def test_golden_case_directory(case: Path):
    """A directory mixing formats (error + access + ssl_request; two HAProxy layouts): detected per file."""
    logs = sorted(p for p in case.rglob("*") if p.is_file())
    got = scan(case)
    assert_matches(got, expected_sum(logs), f"tlslog scan {case.name}/")
    assert len(got.get("files", [])) == len(logs)


def test_golden_whole_corpus_in_one_scan():
    got = scan(*CASE_DIRS)
    assert_matches(got, expected_sum(LOG_FILES), "tlslog scan <every case>")


def test_golden_whole_corpus_with_two_jobs():
    """issue 3: results are mergeable counters; two worker processes give the same answer."""
    got = scan(*CASE_DIRS, options=("--jobs", "2"))
    assert_matches(got, expected_sum(LOG_FILES), "tlslog scan --jobs 2 <every case>")


def test_golden_glob():
    """A glob given to tlslog itself (not expanded by a shell): every case's error.log."""
    logs = sorted(LOGS.glob("*/error.log"))
    assert len(logs) >= 6
    got = scan(str(LOGS / "*" / "error.log"))
    assert_matches(got, expected_sum(logs), "tlslog scan 'logs/*/error.log'")


@pytest.mark.parametrize("log", [LOGS / "apache24-event" / "error.log", LOGS / "nginx122" / "error.log",
                                 LOGS / "haproxy26" / "haproxy_syslog.log"], ids=_id)
def test_golden_standard_input(log: Path):
    """`-` reads standard input; the format is detected from the content alone."""
    got = scan("-", stdin=log.read_bytes())
    assert_matches(got, expected_sum([log]), f"tlslog scan - < {_id(log)}")


# zstandard is a project dependency (pyproject: ".zst archives for tlslog")
COMPRESSORS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress,
               "zst": lambda data: zstandard.ZstdCompressor().compress(data)}


@pytest.mark.parametrize("ext", sorted(COMPRESSORS))
@pytest.mark.parametrize("log", [LOGS / "apache24-event" / "error.log", LOGS / "nginx122" / "error.log"], ids=_id)
def test_golden_compressed_copy(log: Path, ext: str, tmp_path: Path):
    """The same log compressed gives the same answer (issue 3: .gz, .bz2, .xz, .zst)."""
    packed = tmp_path / f"{log.name}.{ext}"
    packed.write_bytes(COMPRESSORS[ext](log.read_bytes()))
    assert_matches(scan(packed), expected_sum([log]), f"tlslog scan {packed.name}")


def _rotate(lines: list[bytes], cuts: list[int], directory: Path, name: str) -> None:
    """Write lines as logrotate would leave them: <name>.2.gz (oldest), <name>.1, <name> (newest)."""
    a, b = cuts
    (directory / f"{name}.2.gz").write_bytes(gzip.compress(b"".join(lines[:a])))
    (directory / f"{name}.1").write_bytes(b"".join(lines[a:b]))
    (directory / name).write_bytes(b"".join(lines[b:]))


@pytest.mark.parametrize("where", ["between_events", "inside_an_event"])
def test_golden_rotated_set(where: str, tmp_path: Path):
    """issue 3: a rotated set is read oldest first, as one stream. Cut either between two
    connections, or between an AH02008 and its `SSL Library Error:` line (rotation does not
    wait for mod_ssl to finish an event)."""
    log = LOGS / "apache24-event" / "error.log"
    lines = log.read_bytes().splitlines(keepends=True)
    if where == "between_events":
        starts = [i for i, line in enumerate(lines) if b"AH01964" in line]
    else:
        starts = [i + 1 for i, line in enumerate(lines) if b"AH02008" in line]
    cuts = [starts[len(starts) // 3], starts[2 * len(starts) // 3]]
    _rotate(lines, cuts, tmp_path, "error_log")
    got = scan(tmp_path)
    assert_matches(got, expected_sum([log]), f"tlslog scan <rotated set, cut {where}>")
