"""The corpus generator still runs, and regenerating gives the committed truth.

Runs `python -m tests.corpus.build --only nginx,haproxy --out <tmp>` against the real
nginx and HAProxy (about 15 s: the handshake and backend timeouts are real) and compares
each new truth with the committed one: the driver is fixed, so the counts (events, status,
protocols) must be identical although timestamps, pids and ports differ. Apache is left out
to keep this quick; its driver shares the client code exercised here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRUTH = REPO / "tests" / "data" / "truth"

_missing = [t for t in ("nginx", "haproxy", "openssl", "curl", "setpriv") if not shutil.which(t)]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="LOUD SKIP: the corpus build needs root (servers run as www-data)"),
    pytest.mark.skipif(bool(_missing), reason=f"LOUD SKIP: missing tools {_missing}; run tests/install-sysdeps.sh"),
    pytest.mark.timeout(240),
]


def test_regenerated_nginx_and_haproxy_truths_equal_the_committed_ones(tmp_path: Path):
    r = subprocess.run([sys.executable, "-m", "tests.corpus.build", "--only", "nginx,haproxy", "--out", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=220)
    assert r.returncode == 0, f"corpus build failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    new = sorted((tmp_path / "truth").rglob("*.truth.json"))
    names = [p.relative_to(tmp_path / "truth").as_posix() for p in new]
    assert sorted(names) == sorted(["haproxy26/haproxy_errorlogformat.log.truth.json",
                                    "haproxy26/haproxy_syslog.log.truth.json",
                                    "nginx122-level-error/error.log.truth.json",
                                    "nginx122/access.log.truth.json", "nginx122/error.log.truth.json"])
    for name, path in zip(names, new):
        got, want = json.loads(path.read_text()), json.loads((TRUTH / name).read_text())
        for key in ("events", "status", "protocols", "ciphers"):
            assert got[key] == want[key], \
                f"{name}: {key} changed on regeneration: committed {want[key]}, new {got[key]}"
        assert (tmp_path / "logs" / name.removesuffix(".truth.json")).stat().st_size > 0
