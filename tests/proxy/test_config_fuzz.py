"""The loader on arbitrary data: it reports problems, it never raises anything else (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsfront import config, protocols

KEYS = sorted(set(config.TLS_KEYS) | set(config._VHOST_KEYS) | {
    "server", "admin", "tls", "timeouts", "limits", "vhost", "quirk", "listen", "error_log", "workers",
    "log_level", "random_seed", "attribute", "pattern", "set", "trusted_proxies", "backend_connect_seconds",
    "max_header_count", "user", "bogus"})
SCALARS = st.one_of(
    st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "127.0.0.1:8443", "*:80", "[::1]:1", "http://127.0.0.1:1", "ftp://x", "none",
                     "require", "optional_no_ca", "TLSv1.2", "all -SSLv3", "+SSLv3", "NOPE", "startup builtin",
                     "exec:/nonexistent", "file:/dev/urandom 8", "/nonexistent/file", "MSIE", "(", "nokeepalive",
                     "env:X", "builtin", "10.0.0.0/8", "x" * 3]),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=4)),
    max_leaves=12,
)
TABLE = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)
# Shaped like a real file (so the fuzzing reaches vhosts, [vhost.tls] and quirks), and shapeless.
DOCS = st.one_of(
    st.fixed_dictionaries({}, optional={
        "server": TABLE, "admin": TABLE, "tls": TABLE, "timeouts": TABLE, "limits": TABLE,
        "vhost": st.lists(st.one_of(TABLE, st.builds(lambda t, v: {**t, "tls": v}, TABLE, st.one_of(TABLE, VALUES))),
                          max_size=3),
        "quirk": st.lists(TABLE, max_size=2),
    }),
    TABLE,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_loader_reports_problems_and_never_raises(tmp_path_factory, data):
    cfg, collector = config.from_data(data, "/nonexistent/fuzz.toml")
    for p in collector.problems + collector.warnings:
        assert p.where.startswith("/nonexistent/fuzz.toml")
        assert p.message
    assert cfg is not None


@given(st.lists(st.sampled_from(["all", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "TLSv1.0", "TLS9"]),
                max_size=6),
       st.lists(st.sampled_from(["", "+", "-"]), min_size=6, max_size=6))
def test_protocol_parser_raises_only_protocol_error_and_gives_ranges(names, ops):
    text = " ".join(op + n for op, n in zip(ops, names))
    try:
        rng = protocols.parse(text)
    except protocols.ProtocolError as exc:
        assert exc.fix and repr(text) in str(exc)
        return
    order = [protocols.ORDER.index(v) for v in rng.versions]
    assert order == list(range(order[0], order[0] + len(order)))  # contiguous, oldest first
    assert "SSLv3" not in rng.versions
