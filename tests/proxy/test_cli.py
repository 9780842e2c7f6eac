"""The `tlsfront` command: check, version, errors without tracebacks, no reactor for check/version."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tlsfront import cli

TLSFRONT = str(Path(sys.executable).with_name("tlsfront"))


def run(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([TLSFRONT, *argv], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, **kw)


def good_config(tmp_path: Path, pki, extra: str = "") -> Path:
    (tmp_path / "logs").mkdir(exist_ok=True)
    p = tmp_path / "ok.toml"
    p.write_text(textwrap.dedent(f"""
        [server]
        allow_root = true
        error_log = "logs/error.log"
        [admin]
        listen = "127.0.0.1:9180"
        [tls]
        certificate = "{pki.server_cert}"
        key = "{pki.server_key}"
        chain = "{pki.intermediate_cert}"
        [[vhost]]
        listen = "127.0.0.1:8443"
        tls = true
        backends = ["http://127.0.0.1:8081"]
        [[vhost]]
        listen = "*:8080"
        backends = ["http://127.0.0.1:8081"]
    """) + textwrap.dedent(extra))
    return p


def test_check_ok(tmp_path, pki):
    done = run("check", "-c", str(good_config(tmp_path, pki)))
    assert done.returncode == 0, done.stderr
    assert "Syntax OK" in done.stdout
    assert "vhost[0] https://127.0.0.1:8443" in done.stdout and "vhost[1] http://*:8080" in done.stdout
    assert "RAND_status OK" in done.stdout
    assert "TLSv1.2..TLSv1.3; EC CN=localhost until " in done.stdout
    assert done.stderr == ""


def test_check_reports_certificate_problems_of_every_vhost(tmp_path, pki):
    p = good_config(tmp_path, pki, f"""
        [[vhost]]
        listen = "127.0.0.2:8443"
        backends = ["http://127.0.0.1:8081"]
        tls = {{ certificate = "{pki.server_cert}", key = "{pki.other_key}" }}
        [[vhost]]
        listen = "127.0.0.3:8443"
        backends = ["http://127.0.0.1:8081"]
        tls = {{ certificate = "{pki.server_cert}", key = "{pki.server_key}", ciphers = "NOPE" }}
    """)
    (tmp_path / "logs").rmdir()
    done = run("check", "-c", str(p))
    assert done.returncode == 1
    assert "3 problems in the configuration" in done.stderr
    assert re.search(r"vhost\[2\]\.tls\.key \(line \d+\): the private key", done.stderr)
    assert "does not match" in done.stderr
    assert "vhost[3].tls.ciphers" in done.stderr
    assert "server.error_log: the directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_with_a_bad_config_exits_1_without_traceback(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[[vhost]]\nlisten = '127.0.0.1:8443'\ntls = true\nbackend = ['http://127.0.0.1:1']\n")
    done = run("serve", "-c", str(p))
    assert done.returncode == 1
    assert "unknown key 'backend' (did you mean 'backends'?)" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("check", "-c", str(tmp_path / "missing.toml"))
    assert done.returncode == 1 and "cannot read the configuration" in done.stderr


def test_version_names_every_component():
    done = run("version")
    assert done.returncode == 0
    for name in ("tlsfront:", "Python:", "Twisted:", "pyOpenSSL:", "cryptography:", "OpenSSL (TLS, via cryptography):"):
        assert name in done.stdout
    from OpenSSL import SSL

    assert SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode() in done.stdout


@pytest.mark.parametrize("argv", [["version"], ["check", "-c", "CONFIG"]])
def test_check_and_version_never_import_the_reactor(tmp_path, pki, argv):
    """Importing twisted.internet.reactor before the fork breaks workers (facts file)."""
    argv = [a.replace("CONFIG", str(good_config(tmp_path, pki))) for a in argv]
    code = ("import sys\nfrom tlsfront import cli\nstatus = cli.main(%r)\n"
            "print('REACTOR' if 'twisted.internet.reactor' in sys.modules else 'NO-REACTOR', status)" % argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "NO-REACTOR 0", done.stderr


def test_internal_error_has_no_traceback(monkeypatch, capsys):
    from tlsfront import versions

    def boom() -> str:
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(versions, "render", boom)
    assert cli.main(["version"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: synthetic failure" in err and "TLSFRONT_TRACEBACK=1" in err
    assert "Traceback" not in err


def test_usage_errors_exit_1_with_usage():
    done = run("check")
    assert done.returncode == 1 and "-c/--config" in done.stderr
    done = run("cert", "genkey", "--type", "dsa", "-o", "x")
    assert done.returncode == 1 and "invalid choice: 'dsa'" in done.stderr


def test_check_shows_config_and_certificate_problems_together(tmp_path, pki):
    p = good_config(tmp_path, pki, f"""
        [[vhost]]
        listen = "127.0.0.2:8443"
        backends = ["http://127.0.0.1:8081"]
        tls = {{ certificate = "{pki.server_cert}", key = "{pki.other_key}" }}
        [[vhost]]
        listen = "127.0.0.3:8443"
        backends = ["ftp://127.0.0.1:8081"]
        tls = {{ certificate = "{pki.server_cert}", key = "{pki.server_key}", protocols = "SSLv3" }}
        [[vhost]]
        listen = "127.0.0.4:8443"
        backends = ["http://127.0.0.1:8081"]
        tls = {{ certificate = "{tmp_path}/missing.crt", key = "{pki.server_key}" }}
    """)
    done = run("check", "-c", str(p))
    assert done.returncode == 1
    err = done.stderr
    assert "4 problems in the configuration" in err, err
    assert re.search(r"vhost\[2\]\.tls\.key \(line \d+\): the private key", err)  # found by building the Context
    assert "vhost[3].backends[0]" in err and "vhost[3].tls.protocols" in err  # found by the loader
    assert err.count("missing.crt: no such file") == 1  # the loader's, not repeated


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_bad_tls_io_variable_is_refused_by_name(tmp_path, pki, command):
    import os
    argv = [command, "-c", str(good_config(tmp_path, pki))]
    done = run(*argv, env={**os.environ, "TLSFRONT_TLS_IO": "bio"})
    assert done.returncode == 2
    assert done.stderr == (f"tlsfront {command}: environment variable TLSFRONT_TLS_IO='bio' is not one of "
                           "socket, memory: unset it for the default (socket)\n")
