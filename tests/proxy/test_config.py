"""config.load(): the schema, every problem at once, key paths, fixes, relative paths."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from tlsfront import config, model
from tlsfront.errors import ConfigErrors, blocking_directory, explain_bind_error, explain_os_error


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def certs(pki, tmp_path):
    """Server certificate and key copied next to the config (relative paths resolve there)."""
    d = tmp_path / "pki"
    d.mkdir()
    for src in (pki.server_cert, pki.server_key, pki.server_rsa_cert, pki.server_rsa_key,
                pki.intermediate_cert, pki.client_ca_cert):
        shutil.copy(src, d / src.name)
    os.chmod(d / pki.server_key.name, 0o600)
    os.chmod(d / pki.server_rsa_key.name, 0o600)
    return d


GOOD = """
    [server]
    error_log = "logs/error.log"
    log_level = "debug"
    workers = 2
    random_seed = ["startup builtin", "startup file:/dev/urandom 512", "connect builtin"]

    [admin]
    listen = "127.0.0.1:9180"

    [tls]
    certificate = "pki/server.crt"
    key = "pki/server.key"
    chain = "pki/intermediate.crt"
    protocols = "all -SSLv3 -TLSv1 -TLSv1.1"

    [timeouts]
    backend_connect_seconds = 2

    [[vhost]]
    listen = "127.0.0.1:8443"
    tls = true
    server_name = "www.example.test"
    backends = ["http://127.0.0.1:8081", "http://backend.internal:9000"]

    [[vhost]]
    listen = "*:8443"
    server_name = "rsa.example.test"
    backends = ["http://127.0.0.1:8081"]
    [vhost.tls]
    certificate = "pki/server-rsa.crt"
    key = "pki/server-rsa.key"
    verify_client = "require"
    verify_depth = 2
    ca_certificate_file = "pki/client-ca.crt"
    [vhost.forwarding]
    trusted_proxies = ["10.0.0.0/8"]
    client_cert_header = true

    [[vhost]]
    listen = "[::1]:8080"
    server_name = "plain.example.test"
    server_aliases = ["*.plain.example.test"]
    backends = ["http://[::1]:8081"]

    [[quirk]]
    attribute = "User-Agent"
    pattern = ".*MSIE.*"
    set = ["nokeepalive", "ssl-unclean-shutdown", "downgrade-1.0", "force-response-1.0"]
"""


def test_good_config_loads_into_the_model(tmp_path, certs):
    cfg = config.load(write(tmp_path, GOOD))
    assert cfg.server.error_log == tmp_path / "logs/error.log"  # relative to the config's directory
    assert cfg.server.log_level == "debug" and cfg.server.workers == 2
    assert cfg.server.random_seed[1] == model.RandomSeed("startup", "file:/dev/urandom", 512)
    assert cfg.admin.listen == model.Address("127.0.0.1", 9180)
    assert cfg.timeouts.backend_connect_seconds == 2.0
    v0, v1, v2 = cfg.vhosts
    assert (v0.index, v0.listen, v0.server_name) == (0, model.Address("127.0.0.1", 8443), "www.example.test")
    assert v0.tls is cfg.tls_defaults  # `tls = true` inherits [tls] as a whole
    assert v0.tls.certs == (model.CertKey(certs / "server.crt", certs / "server.key",
                                          certs / "intermediate.crt"),)
    assert [b.port for b in v0.backends] == [8081, 9000]
    assert v1.listen.is_wildcard
    assert v1.tls.certs[0].cert_file == certs / "server-rsa.crt"
    assert v1.tls.certs[0].chain_file is None  # a vhost's certificate replaces the chain too
    assert v1.tls.protocols == "all -SSLv3 -TLSv1 -TLSv1.1"  # inherited key by key
    assert v1.tls.client == model.ClientAuth("require", 2, certs / "client-ca.crt", None, None)
    assert v1.forwarding.trusted_proxies == ("10.0.0.0/8",) and v1.forwarding.client_cert_header
    assert v2.tls is None and v2.listen == model.Address("::1", 8080)
    assert v2.backends[0].host == "::1"
    assert cfg.quirks[0].set[0] == "nokeepalive"
    assert cfg.warnings == ()


def test_every_problem_is_reported_at_once_with_key_paths(tmp_path, certs):
    path = write(tmp_path, """
        [server]
        log_levl = "info"
        workers = -1
        [tls]
        certificate = "pki/missing.crt"
        key = "pki/server.key"
        protocols = "+TLSv1.2 +TLSv1.4"
        [[vhost]]
        listen = "127.0.0.1:8443"
        tls = true
        backends = ["https://127.0.0.1:8081"]
        [[vhost]]
        listen = "127.0.0.1:99999"
        tls = { verify_client = "requir", certificat = "x" }
        backends = ["http://127.0.0.1:8081"]
        [[vhost]]
        listen = "example.com:80"
        [[quirk]]
        attribute = "User-Agent"
        pattern = "(MSIE"
        set = ["nokeepalive"]
        [[quirk]]
        attribute = "User-Agent"
        pattern = "Lynx"
        set = ["nokeepalve"]
    """)
    with pytest.raises(ConfigErrors) as info:
        config.load(path)
    got = {p.where.split(": ", 1)[1]: p for p in info.value.problems}
    assert set(got) == {
        "server.log_levl", "server.workers", "tls.certificate", "tls.protocols",
        "vhost[0].backends[0]", "vhost[1].listen", "vhost[1].tls.verify_client",
        "vhost[1].tls.certificat", "vhost[2].listen", "vhost[2].backends", "quirk[0].pattern",
        "quirk[1].set[0]",
    }
    assert all(p.where.startswith(f"{path}: ") for p in info.value.problems)
    assert "did you mean 'log_level'" in got["server.log_levl"].message
    assert "did you mean 'certificate'" in got["vhost[1].tls.certificat"].message
    assert "did you mean 'require'" in got["vhost[1].tls.verify_client"].message
    assert "'+TLSv1.4'" in got["tls.protocols"].message
    assert "99999" in got["vhost[1].listen"].message
    assert "did you mean 'nokeepalive'" in got["quirk[1].set[0]"].message
    assert "not an IP address" in got["vhost[2].listen"].message
    assert "missing.crt" in got["tls.certificate"].message
    text = str(info.value)
    assert text.startswith("12 problems in the configuration:")
    assert all(p.fix for p in info.value.problems), "every problem says how to fix it"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("x = ", "TOML syntax error"),
        ("[[vhost]]\nlisten = 8443\nbackends = []", "must be a string"),
        ("[server]\nworkers = 'two'\n[[vhost]]\nlisten='127.0.0.1:1'\nbackends=['http://a:1']", "must be an integer"),
        ("", "no [[vhost]]"),
        ("[vhost]\nlisten='127.0.0.1:1'", "array of tables"),
    ],
    ids=["syntax", "listen-int", "workers-str", "no-vhost", "vhost-not-array"],
)
def test_malformed_files(tmp_path, text, fragment):
    with pytest.raises(ConfigErrors) as info:
        config.load(write(tmp_path, text))
    assert fragment in str(info.value)


@pytest.mark.parametrize("raw, line", [
    (b"[server]\nworkers = 2\nworkers = 3\n", 3),  # tomllib: "Cannot overwrite a value (at line 3, column 12)"
    (b"[server]\nworkers = \n", 2),
    (b"[server]\nworkers = [1,\n", 3),  # "(at end of document)": the last line
    (b"# caf\xe9\n", 1),  # latin-1, not UTF-8: the line of the first bad byte
    (b"[server]\n\n# ok\n# caf\xe9\n", 4),
])
def test_a_file_refused_whole_names_its_line(tmp_path, raw, line):
    """A syntax error or a byte that is not UTF-8 is reported with its line (the `line` of the
    problem, which `tlsfront check` prints and editors jump to), not only inside the message."""
    path = tmp_path / "x.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigErrors) as info:
        config.load(path)
    (problem,) = info.value.problems
    assert problem.line == line, str(problem)
    assert f"(line {line})" in str(info.value)


@pytest.mark.parametrize(
    "protocols, insecure, fragment",
    [
        ("+SSLv3 +TLSv1.2", False, "SSLv3 was asked for, but"),
        ("all -TLSv1.3", False, "insecure"),
        ("+TLSv1 +TLSv1.2", True, "hole"),
        ("TLSv1 TLSv1.3", False, None),  # a bare name replaces: TLS 1.3 only, fine
        ("-TLSv1.2", False, "leaves no protocol"),
        ("TLSv1.2 TLS1.3", False, "unknown protocol 'TLS1.3'"),
    ],
)
def test_protocol_errors_name_the_string(tmp_path, certs, protocols, insecure, fragment):
    path = write(tmp_path, f"""
        [tls]
        certificate = "pki/server.crt"
        key = "pki/server.key"
        protocols = "{protocols}"
        insecure_legacy_protocols = {str(insecure).lower()}
        [[vhost]]
        listen = "127.0.0.1:8443"
        tls = true
        backends = ["http://127.0.0.1:8081"]
    """)
    if fragment is None:
        assert config.load(path).tls_defaults.protocols == protocols
        return
    with pytest.raises(ConfigErrors) as info:
        config.load(path)
    (problem,) = info.value.problems
    assert problem.where.endswith("tls.protocols")
    assert fragment in problem.message and repr(protocols) in problem.message
    if "SSLv3" in fragment:
        from OpenSSL import SSL

        assert SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode() + " cannot offer it" in problem.message


def test_legacy_protocols_allowed_only_when_insecure_is_said(tmp_path, certs):
    path = write(tmp_path, """
        [tls]
        certificate = "pki/server.crt"
        key = "pki/server.key"
        [[vhost]]
        listen = "127.0.0.1:8443"
        backends = ["http://127.0.0.1:8081"]
        [vhost.tls]
        protocols = "all -SSLv3"
        insecure_legacy_protocols = true
    """)
    cfg = config.load(path)
    assert cfg.vhosts[0].tls.insecure_legacy_protocols
    assert not cfg.tls_defaults.insecure_legacy_protocols


def test_vhost_conflicts_give_the_faq_reason(tmp_path, certs):
    path = write(tmp_path, """
        [tls]
        certificate = "pki/server.crt"
        key = "pki/server.key"
        [[vhost]]
        listen = "127.0.0.1:8443"
        tls = true
        server_name = "a.test"
        backends = ["http://127.0.0.1:8081"]
        [[vhost]]
        listen = "127.0.0.1:8443"
        tls = true
        server_name = "b.test"
        backends = ["http://127.0.0.1:8081"]
        [[vhost]]
        listen = "127.0.0.1:8443"
        server_name = "c.test"
        backends = ["http://127.0.0.1:8081"]
    """)
    with pytest.raises(ConfigErrors) as info:
        config.load(path)
    messages = {p.where.split(": ", 1)[1]: p for p in info.value.problems}
    assert set(messages) == {"vhost[1].listen", "vhost[2].listen"}
    two_tls = [p for p in info.value.problems if "two TLS vhosts" in p.message]
    assert len(two_tls) == 1
    assert "before any Host header" in two_tls[0].message
    assert "IP address" in two_tls[0].fix and "port" in two_tls[0].fix
    assert "plain-HTTP" in messages["vhost[2].listen"].message


def test_key_readable_by_others_is_a_warning(tmp_path, certs):
    os.chmod(certs / "server.key", 0o644)
    cfg = config.load(write(tmp_path, """
        [[vhost]]
        listen = "127.0.0.1:8443"
        backends = ["http://127.0.0.1:8081"]
        tls = { certificate = "pki/server.crt", key = "pki/server.key" }
    """))
    (warning,) = cfg.warnings
    assert "vhost[0].tls.key" in warning and "-rw-r--r--" in warning and "chmod 400" in warning


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ("startup file:/dev/random 64", "may block start-up"),
    ],
)
def test_random_seed_warnings(tmp_path, entry, fragment):
    cfg = config.load(write(tmp_path, f"""
        [server]
        random_seed = ["{entry}"]
        [[vhost]]
        listen = "127.0.0.1:8080"
        backends = ["http://127.0.0.1:8081"]
    """))
    assert any(fragment in w for w in cfg.warnings)


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ("startup", "is not 'startup|connect SOURCE [BYTES]'"),
        ("later builtin", "is not 'startup|connect"),
        ("startup file:/nonexistent/seed 512", "does not exist"),
        ("startup file:/dev/urandom", "needs a byte count"),
        ("startup file:/dev/urandom lots", "not a positive integer"),
        ("startup egd:/var/run/egd-pool", "EGD"),
        ("startup exec:/nonexistent/prog", "not executable"),
        ("connect dice", "unknown source"),
    ],
)
def test_random_seed_errors(tmp_path, entry, fragment):
    with pytest.raises(ConfigErrors) as info:
        config.load(write(tmp_path, f"""
            [server]
            random_seed = ["{entry}"]
            [[vhost]]
            listen = "127.0.0.1:8080"
            backends = ["http://127.0.0.1:8081"]
        """))
    (problem,) = info.value.problems
    assert problem.where.endswith("server.random_seed[0]")
    assert fragment in problem.message


def test_client_auth_needs_cas(tmp_path, certs):
    with pytest.raises(ConfigErrors) as info:
        config.load(write(tmp_path, """
            [[vhost]]
            listen = "127.0.0.1:8443"
            backends = ["http://127.0.0.1:8081"]
            tls = { certificate = "pki/server.crt", key = "pki/server.key", verify_client = "optional" }
        """))
    assert "ca_certificate_file" in info.value.problems[0].fix


def test_tls_vhost_without_certificate(tmp_path):
    with pytest.raises(ConfigErrors) as info:
        config.load(write(tmp_path, """
            [[vhost]]
            listen = "127.0.0.1:8443"
            tls = true
            backends = ["http://127.0.0.1:8081"]
        """))
    (problem,) = info.value.problems
    assert problem.where.endswith("vhost[0].tls.certificate") and "no certificate" in problem.message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:443", model.Address("127.0.0.1", 443)),
        ("*:666", model.Address("*", 666)),
        ("[::1]:8443", model.Address("::1", 8443)),
        ("[0:0::1]:1", model.Address("::1", 1)),
    ],
)
def test_parse_address(text, expected):
    assert config.parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:0", "::1:443", "localhost:443", "1.2.3.4:x"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        config.parse_address(text)


# --------------------------------------------------------------------------- OS error explanations


def _as_nobody(fn):
    """Run fn() in a forked child as uid/gid 65534 (root ignores permissions); return its text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = fn()
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            out = f"child raised {exc!r}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_permission_denied_names_the_parent_directory_without_x_bit(certs):
    """The FAQ's SSLMutex answer: name the parent directory lacking the x bit."""
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="tlsfront-perm-"))  # pytest's own tmp is mode 0700
    os.chmod(tmp_path, 0o755)
    shutil.copytree(certs, tmp_path / "pki")
    locked = tmp_path / "locked"
    inner = locked / "inner"
    inner.mkdir(parents=True)
    (inner / "server.crt").write_bytes((certs / "server.crt").read_bytes())
    os.chmod(inner / "server.crt", 0o644)
    os.chmod(inner, 0o755)
    os.chmod(locked, 0o754)  # r but no x for others: "Permission denied" on the file inside
    cfg = write(tmp_path, f"""
        [[vhost]]
        listen = "127.0.0.1:8443"
        backends = ["http://127.0.0.1:8081"]
        tls = {{ certificate = "{inner}/server.crt", key = "pki/server.key" }}
    """)
    os.chmod(cfg, 0o644)
    os.chmod(tmp_path / "pki", 0o755)

    def child() -> str:
        try:
            config.load(cfg)
        except ConfigErrors as exc:
            return str(exc)
        return "loaded"

    try:
        text = _as_nobody(child)
    finally:
        os.chmod(locked, 0o755)
        shutil.rmtree(tmp_path)
    assert f"parent directory {locked} lacks the x (search) bit" in text, text
    assert f"chmod a+x {locked}" in text
    assert "uid 65534" in text


def test_blocking_directory_and_missing_directory(tmp_path):
    assert blocking_directory(tmp_path / "a" / "b") is None
    message, fix = explain_os_error(tmp_path / "nodir" / "f", FileNotFoundError(2, "No such file"))
    assert f"the directory {tmp_path / 'nodir'} does not exist" in message


def test_explain_bind_error():
    import errno
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        s = socket.socket()
        with pytest.raises(OSError) as info:
            s.bind(("127.0.0.1", port))
        s.close()
    finally:
        holder.close()
    text = explain_bind_error(model.Address("127.0.0.1", port), info.value)
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in text
    assert f"sport = :{port}" in text
    text = explain_bind_error(model.Address("127.0.0.1", 443), PermissionError(errno.EACCES, "denied"))
    assert "below 1024" in text and "CAP_NET_BIND_SERVICE" in text
    s = socket.socket()
    with pytest.raises(OSError) as info:
        s.bind(("192.0.2.1", 0))  # TEST-NET-1: not an address of this machine (no packet is sent)
    s.close()
    assert "not an address of this machine" in explain_bind_error("192.0.2.1:8443", info.value)


def test_check_runtime_paths(tmp_path):
    cfg = config.load(write(tmp_path, """
        [server]
        error_log = "logs/error.log"
        access_log = "access.log"
        [[vhost]]
        listen = "127.0.0.1:8080"
        backends = ["http://127.0.0.1:8081"]
    """))
    errors, warnings = config.check_runtime_paths(cfg)
    assert warnings == []
    assert len(errors) == 1 and "server.error_log" in errors[0] and "mkdir -p" in errors[0]
    (tmp_path / "logs").mkdir()
    assert config.check_runtime_paths(cfg) == ([], [])
    (tmp_path / "access.log").mkdir()
    errors, _ = config.check_runtime_paths(cfg)
    assert len(errors) == 1 and "is a directory" in errors[0]



def test_explain_bind_error_unwraps_twisted_cannot_listen():
    import errno

    from twisted.internet.error import CannotListenError  # not the reactor

    exc = CannotListenError("127.0.0.1", 8443, OSError(errno.EADDRINUSE, "Address already in use"))
    text = explain_bind_error(model.Address("127.0.0.1", 8443), exc)
    assert text.startswith("cannot listen on 127.0.0.1:8443: address already in use")


def test_plain_and_tls_only_keys(tmp_path, certs):
    with pytest.raises(ConfigErrors) as info:
        config.load(write(tmp_path, """
            [[vhost]]
            listen = "127.0.0.1:8080"
            redirect_to_https = "https://www.example.test/"
            plain_http_answer = "redirect"
            hsts_max_age_seconds = 300
            [[vhost]]
            listen = "127.0.0.1:8443"
            backends = ["http://127.0.0.1:8081"]
            redirect_to_https = "www.example.test"
            tls = { certificate = "pki/server.crt", key = "pki/server.key" }
        """))
    got = sorted(p.where.split(": ", 1)[1] for p in info.value.problems)
    assert got == ["vhost[0].hsts_max_age_seconds", "vhost[0].plain_http_answer", "vhost[0].redirect_to_https",
                   "vhost[1].redirect_to_https"]
    cfg = config.load(write(tmp_path, """
        [[vhost]]
        listen = "127.0.0.1:8080"
        redirect_to_https = "www.example.test:8443"
    """))
    assert cfg.vhosts[0].redirect_to_https == "www.example.test:8443" and cfg.vhosts[0].backends == ()


@pytest.mark.parametrize("admin, vhost, clash", [("127.0.0.1:9180", "*:9180", True), ("*:9180", "127.0.0.2:9180", True),
                                                 ("127.0.0.1:9180", "127.0.0.2:9180", False),
                                                 ("127.0.0.1:9180", "127.0.0.1:9181", False)])
def test_admin_address_must_not_overlap_a_vhost(tmp_path, admin, vhost, clash):
    path = write(tmp_path, f"""
        [admin]
        listen = "{admin}"
        [[vhost]]
        listen = "{vhost}"
        backends = ["http://127.0.0.1:8081"]
    """)
    if not clash:
        assert config.load(path).admin.listen is not None
        return
    with pytest.raises(ConfigErrors) as info:
        config.load(path)
    assert "overlaps vhost[0]" in info.value.problems[0].message


def test_special_files_are_refused_without_blocking(tmp_path, certs):
    fifo = tmp_path / "cert.fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(ConfigErrors) as info:
        config.load(write(tmp_path, f"""
            [[vhost]]
            listen = "127.0.0.1:8443"
            backends = ["http://127.0.0.1:8081"]
            tls = {{ certificate = "{fifo}", key = "pki" }}
        """))
    messages = sorted(p.message for p in info.value.problems)
    assert messages == [f"{fifo} is not a regular file", f"{tmp_path / 'pki'} is not a regular file"]


def test_problems_carry_the_line_of_the_key(tmp_path, certs, pki):
    path = write(tmp_path, """
        [server]
        workers = -1

        [[vhost]]
        listen = "127.0.0.1:8443"
        backends = ["http://127.0.0.1:8081"]
        tls = { certificate = "pki/server.crt", key = "pki/nope.key" }

        [[vhost]]
        listen = "127.0.0.2:8443"
        backends = ["http://127.0.0.1:8081", "ftp://x"]
        [vhost.tls]
        certificate = "pki/server.crt"
        key = "pki/server.key"
        ciphers = "NOPE"
    """)
    with pytest.raises(ConfigErrors) as info:
        config.load(path)
    lines = {p.where.split(": ", 1)[1]: p.line for p in info.value.problems}
    assert lines == {"server.workers": 3, "vhost[0].tls.key": 8, "vhost[1].backends[1]": 12}
    assert "server.workers (line 3): must be 0 or more" in str(info.value)
    # tlsctx's problems get lines too (the ciphers of the second vhost)
    path.write_text(path.read_text().replace("workers = -1", "workers = 1").replace("pki/nope.key", "pki/server.key")
                    .replace(', "ftp://x"', ""))
    from tlsfront import tlsctx

    with pytest.raises(ConfigErrors) as info:
        tlsctx.build_contexts(config.load(path))
    (p,) = info.value.problems
    assert p.where.endswith("vhost[1].tls.ciphers") and p.line == 16


@pytest.mark.parametrize("separator", ["\u2028", "\u0085", "\u2029"], ids=["LS", "NEL", "PS"])
@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_line_numbers_count_lines_as_toml_does(tmp_path, separator, eol):
    """TOML allows U+2028, NEL and U+2029 in comments and strings and ends a line only at LF
    or CRLF; str.splitlines() also breaks at those three, and every later line was reported
    one too far (found by tests/hardening/test_fuzz_config.py once it checked the line's text)."""
    path = tmp_path / "x.toml"
    path.write_bytes(eol.join([f"# a note{separator}with a line separator", "[[vhost]]",
                               f'server_name = "a{separator}b"', 'listen = "nonsense"', ""]).encode())
    with pytest.raises(ConfigErrors) as info:
        config.load(path)
    lines = {p.where.split(": ", 1)[1]: p.line for p in info.value.problems}
    assert lines["vhost[0].listen"] == 4 and lines["vhost[0].backends"] == 2, lines
