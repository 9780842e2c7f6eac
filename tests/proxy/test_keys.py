"""keys: pass-phrase dialogs (builtin through a pseudo-terminal, exec:, file:, env:) and key/cert match."""

from __future__ import annotations

import io
import os
import shutil
import time
import subprocess
import sys
import textwrap
from pathlib import Path

import pexpect
import pytest
from cryptography.hazmat.primitives import serialization

from tlsfront import certgen, keys

TLSFRONT = str(Path(sys.executable).with_name("tlsfront"))
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="LOUD SKIP: the openssl command is not installed")


def encrypt(src: Path, dst: Path, phrase: bytes) -> Path:
    key = serialization.load_pem_private_key(src.read_bytes(), None)
    certgen.write_file(dst, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.BestAvailableEncryption(phrase)), mode=0o600)
    return dst


@pytest.fixture
def enc(pki, tmp_path):
    """Two encrypted keys with the same pass phrase (EC and RSA), and a third with another one."""
    return (encrypt(pki.server_key, tmp_path / "ec.key", b"hunter2"),
            encrypt(pki.server_rsa_key, tmp_path / "rsa.key", b"hunter2"),
            encrypt(pki.other_key, tmp_path / "other.key", b"different"))


def load(path: Path, dialog: str, **kw) -> keys.PrivateKey:
    return keys.KeyLoader(**kw).load(path, dialog=dialog, server="www.example.test:443", key_type="EC")


def test_env_dialog(enc, monkeypatch):
    monkeypatch.setenv("TLSF_PASS", "hunter2")
    assert load(enc[0], "env:TLSF_PASS").public_key()
    monkeypatch.setenv("TLSF_PASS", "nope")
    with pytest.raises(keys.KeyProblem, match=r"wrong pass phrase for the private key .*ec.key \(passphrase_dialog = \"env:TLSF_PASS\"\)"):
        load(enc[0], "env:TLSF_PASS")
    monkeypatch.delenv("TLSF_PASS")
    with pytest.raises(keys.KeyProblem, match="environment variable TLSF_PASS is not set") as info:
        load(enc[0], "env:TLSF_PASS")
    assert "export TLSF_PASS" in info.value.fix


def test_file_dialog_reads_the_first_line(enc, tmp_path):
    f = tmp_path / "pass.txt"
    f.write_text("hunter2\nignored\n")
    assert load(enc[1], f"file:{f}").key_size == 2048
    with pytest.raises(keys.KeyProblem, match="cannot read the pass-phrase file .*nonexistent"):
        load(enc[1], f"file:{tmp_path}/nonexistent")


def test_exec_dialog_gets_server_and_key_type(enc, tmp_path):
    log = tmp_path / "argv.txt"
    prog = tmp_path / "ask-pass"
    prog.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\necho hunter2\n")
    prog.chmod(0o755)
    assert load(enc[0], f"exec:{prog}")
    assert log.read_text() == "www.example.test:443 EC\n"


@pytest.mark.parametrize(
    "script, mode, fragment",
    [
        ("#!/bin/sh\necho 'vault sealed' >&2\nexit 3\n", 0o755, "failed with exit status 3 for .*: vault sealed"),
        ("#!/bin/sh\necho wrong\n", 0o755, "wrong pass phrase for the private key .*exec:"),
        ("#!/bin/sh\necho hunter2\n", 0o644, "is not executable"),
        ("#!/bin/sh\nsleep 5\n", 0o755, "did not answer within"),
    ],
    ids=["fails", "wrong", "not-executable", "hangs"],
)
def test_exec_dialog_failures_name_key_and_program(enc, tmp_path, monkeypatch, script, mode, fragment):
    monkeypatch.setattr(keys, "EXEC_TIMEOUT_SECONDS", 0.5)
    prog = tmp_path / "ask-pass"
    prog.write_text(script)
    prog.chmod(mode)
    with pytest.raises(keys.KeyProblem, match=fragment) as info:
        load(enc[0], f"exec:{prog}")
    assert str(enc[0]) in info.value.message
    assert info.value.fix


def test_a_pass_phrase_that_worked_is_tried_on_the_next_key_first(enc):
    asked = []

    def dialog(req: keys.PassphraseRequest) -> bytes | None:
        asked.append(req.key_file.name)
        return {"other.key": b"different"}.get(req.key_file.name, b"hunter2")

    loader = keys.KeyLoader(override=dialog)
    for path in enc:
        loader.load(path, dialog="builtin", server="x:443")
    loader.load(enc[0], dialog="builtin", server="y:443")  # cached: not asked again
    assert asked == ["ec.key", "other.key"]


def test_unencrypted_key_never_asks(pki):
    loader = keys.KeyLoader(override=lambda req: pytest.fail("asked for a pass phrase"))
    assert loader.load(pki.server_key)


def test_not_a_key(pki, tmp_path):
    with pytest.raises(keys.KeyProblem, match="holds a certificate, not a private key"):
        load(pki.server_cert, "builtin")
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(keys.KeyProblem, match="not a readable private key"):
        load(junk, "builtin")


# --------------------------------------------------------------------------- builtin through a terminal


def two_vhost_config(tmp_path: Path, pki, enc, dialog: str = "builtin") -> Path:
    cfg = tmp_path / "tty.toml"
    cfg.write_text(textwrap.dedent(f"""
        [tls]
        passphrase_dialog = "{dialog}"
        [[vhost]]
        listen = "127.0.0.1:8443"
        server_name = "one.test"
        backends = ["http://127.0.0.1:8081"]
        tls = {{ certificate = "{pki.server_cert}", key = "{enc[0]}" }}
        [[vhost]]
        listen = "127.0.0.2:8443"
        server_name = "two.test"
        backends = ["http://127.0.0.1:8081"]
        tls = {{ certificate = "{pki.server_rsa_cert}", key = "{enc[1]}" }}
    """))
    return cfg


def test_builtin_dialog_asks_once_on_the_terminal(tmp_path, pki, enc):
    cfg = two_vhost_config(tmp_path, pki, enc)
    child = pexpect.spawn(TLSFRONT, ["check", "-c", str(cfg)], timeout=20, env=os.environ | {"TERM": "dumb"})
    child.expect("In order to read them you have to provide the pass phrases.")
    child.expect(r"Server one.test:8443 \(EC\)")
    child.expect("Enter pass phrase:")
    child.sendline("wrong")
    child.expect("Pass phrase incorrect")
    child.expect("Enter pass phrase:")
    child.sendline("hunter2")
    # The second key has the same pass phrase: tried first, not asked (mod_ssl's behaviour).
    index = child.expect(["Syntax OK", "Enter pass phrase:"])
    assert index == 0, "asked twice"
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_builtin_dialog_gives_up_after_three_attempts(tmp_path, pki, enc):
    cfg = two_vhost_config(tmp_path, pki, enc)
    child = pexpect.spawn(TLSFRONT, ["check", "-c", str(cfg)], timeout=20)
    for _ in range(3):
        child.expect(r"Server one.test:8443 \(EC\)")
        child.expect("Enter pass phrase:")
        child.sendline("wrong")
    # The next key is asked for on its own (check reports every problem), without the preamble again.
    child.expect(r"Server two.test:8443 \(RSA\)")
    assert b"provide the pass phrases" not in child.before
    child.expect("Enter pass phrase:")
    child.sendline("hunter2")
    child.expect(pexpect.EOF)
    child.close()
    text = child.before.decode()
    assert f"vhost[0].tls.key (line 8): wrong pass phrase for the private key {enc[0]}" in text
    assert "after 3 attempts" in text and "vhost[1]" not in text
    assert "Traceback" not in text
    assert child.exitstatus == 1


def test_builtin_dialog_without_a_terminal_is_a_clear_error(tmp_path, pki, enc):
    cfg = two_vhost_config(tmp_path, pki, enc)
    done = subprocess.run([TLSFRONT, "check", "-c", str(cfg)], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, start_new_session=True, timeout=30)  # new session: no controlling tty
    assert done.returncode == 1
    assert "needs a terminal to ask for its pass phrase, but tlsfront has none" in done.stderr
    assert str(enc[0]) in done.stderr and "vhost[0].tls.key" in done.stderr
    assert "Traceback" not in done.stderr


def test_exec_dialog_end_to_end_with_check(tmp_path, pki, enc):
    prog = tmp_path / "pp"
    prog.write_text("#!/bin/sh\necho hunter2\n")
    prog.chmod(0o755)
    # A relative program resolves against the config's directory, not $PATH nor the cwd.
    cfg = two_vhost_config(tmp_path, pki, enc, dialog="exec:pp")
    done = subprocess.run([TLSFRONT, "check", "-c", str(cfg)], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, start_new_session=True, timeout=30, cwd="/")
    assert done.returncode == 0, done.stderr
    assert "Syntax OK" in done.stdout


# --------------------------------------------------------------------------- fingerprints vs openssl


@needs_openssl
def test_modulus_md5_is_the_faqs_openssl_pipeline(pki):
    cert = keys.load_certificates(pki.server_rsa_cert)[0]
    modulus = subprocess.run([OPENSSL, "x509", "-noout", "-modulus", "-in", str(pki.server_rsa_cert)],
                             capture_output=True, check=True).stdout
    md5 = subprocess.run([OPENSSL, "md5"], input=modulus, capture_output=True, check=True).stdout.decode()
    assert md5.split()[-1] == keys.modulus_md5(cert.public_key())
    assert keys.modulus_md5(keys.load_certificates(pki.server_cert)[0].public_key()) is None  # EC: no modulus


@needs_openssl
def test_fingerprint_is_sha256_of_spki_as_openssl_computes_it(pki):
    pub = subprocess.run([OPENSSL, "x509", "-noout", "-pubkey", "-in", str(pki.server_cert)],
                         capture_output=True, check=True).stdout
    der = subprocess.run([OPENSSL, "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True,
                         check=True).stdout
    digest = subprocess.run([OPENSSL, "sha256", "-r"], input=der, capture_output=True, check=True).stdout
    expected = digest.split()[0].decode().upper()
    got = keys.fingerprint(keys.load_certificates(pki.server_cert)[0].public_key()).replace(":", "")
    assert got == expected


def test_check_match(pki):
    cert = keys.load_certificates(pki.server_cert)[0]
    good = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    bad = serialization.load_pem_private_key(pki.server_rsa_key.read_bytes(), None)
    keys.check_match(cert, pki.server_cert, good, pki.server_key)
    with pytest.raises(keys.KeyProblem) as info:
        keys.check_match(cert, pki.server_cert, bad, pki.server_rsa_key)
    assert "EC P-256" in info.value.message and "RSA 2048 bits" in info.value.message
    assert "tlsfront cert match" in info.value.fix


@needs_openssl
@pytest.mark.parametrize("traditional", [True, False], ids=["Proc-Type DES-EDE3", "PKCS8 des3"])
def test_keys_from_the_faqs_openssl_genrsa_des3(tmp_path, traditional):
    """`openssl genrsa -des3 -out server.key` (the FAQ's recipe), both PEM encodings OpenSSL writes."""
    key = tmp_path / "server.key"
    subprocess.run([OPENSSL, "genrsa", "-des3", "-passout", "pass:faq-pass", *(["-traditional"] if traditional else []),
                    "-out", str(key), "2048"], capture_output=True, check=True)
    if traditional:
        assert "Proc-Type: 4,ENCRYPTED" in key.read_text()
    phrase_file = tmp_path / "pp"
    phrase_file.write_text("faq-pass\n")
    loaded = load(key, f"file:{phrase_file}")
    modulus = subprocess.run([OPENSSL, "rsa", "-in", str(key), "-passin", "pass:faq-pass", "-noout", "-modulus"],
                             capture_output=True, check=True, text=True).stdout.strip()
    assert modulus == "Modulus=%X" % loaded.public_key().public_numbers().n


def _free_port() -> int:
    from ports import free_port  # leased: no pick-then-bind race (tests/ports.py)

    return free_port()


def test_serve_asks_once_in_the_master_before_workers_start(tmp_path, pki, enc):
    """`tlsfront serve` with two workers and an encrypted key: one prompt, then both workers serve."""
    import ssl
    import urllib.error
    import urllib.request

    port = _free_port()
    (tmp_path / "logs").mkdir()
    cfg = tmp_path / "serve.toml"
    cfg.write_text(textwrap.dedent(f"""
        [server]
        allow_root = true
        error_log = "logs/error.log"
        workers = 2
        [[vhost]]
        listen = "127.0.0.1:{port}"
        server_name = "localhost"
        backends = ["http://127.0.0.1:{_free_port()}"]
        tls = {{ certificate = "{pki.server_cert}", key = "{enc[0]}", chain = "{pki.intermediate_cert}" }}
    """))
    child = pexpect.spawn(TLSFRONT, ["serve", "-c", str(cfg)], timeout=30)
    seen = io.BytesIO()
    child.logfile_read = seen
    try:
        child.expect(rf"Server localhost:{port} \(EC\)")
        child.expect("Enter pass phrase:")
        child.sendline("hunter2")
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        deadline = time.monotonic() + 30  # workers start after the prompt; the machine may be busy
        status: int | str | None = None
        while time.monotonic() < deadline and child.isalive():
            try:
                urllib.request.urlopen(f"https://localhost:{port}/", context=ctx, timeout=5)
                status = 200
            except urllib.error.HTTPError as exc:
                status = exc.code  # 502: the backend is down, but TLS worked with the decrypted key
            except OSError as exc:  # URLError, refused, reset while starting
                status = repr(exc)
                child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.2)
                continue
            break
        assert status == 502, (status, seen.getvalue()[-2000:])
        assert child.isalive()
    finally:
        child.kill(15)
        child.expect(pexpect.EOF)
        child.close()
    assert seen.getvalue().count(b"Enter pass phrase") == 1  # asked once, in the master
