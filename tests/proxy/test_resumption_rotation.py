"""Session-ticket key rotation (`server.session_ticket_rotation_seconds`): on schedule, the
master builds new Contexts (new ticket keys) and replaces the workers as on a reload.

What docs/sessions.md promises and this checks with a real client:
- a ticket resumes until the rotation that follows it, and not after;
- a new ticket from the new keys resumes again;
- requests sent across two rotations all succeed (rolling replacement);
- rotation is logged (TLSF0012) and is not counted as a configuration reload.
"""

from __future__ import annotations

import re
import socket
import ssl

import pytest

from helpers import echo_lines, read_response
from stack import ADMIN_TLS_ONE_VHOST, Load, start_stack

ROTATION_SECONDS = 3

CONFIG = """
[server]
allow_root = true
error_log = "{d}/error.log"
pid_file = "{d}/tlsfront.pid"
workers = 2
shutdown_grace_seconds = 5
session_ticket_rotation_seconds = {rotation}
""" + ADMIN_TLS_ONE_VHOST


_CONTEXTS: dict = {}


def _get(pki, port: int, session=None):
    ctx = _CONTEXTS.get(pki.ca_cert)
    if ctx is None:  # Python's ssl resumes a session only with the context that made it
        ctx = _CONTEXTS[pki.ca_cert] = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # a TLS 1.2 ticket: one per session, reusable
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        status, _v, _h, body = read_response(s)
        assert status == 200
        return s.session, s.session_reused, echo_lines(body)["x-ssl-session-reused"][0]


def test_rotation_ends_old_tickets_and_refuses_no_request(pki, tmp_path):
    stack = start_stack(pki, tmp_path, CONFIG, rotation=ROTATION_SECONDS)
    ports, proxy = stack.ports, stack.proxy
    try:
        start = stack.wait(lambda: (s := stack.ready())["workers"]["ready"] == 2 and s, "workers")
        generation = start["generation"]
        session, reused, header = _get(pki, ports["p_tls"])
        assert (reused, header) == (False, "Initial")
        assert _get(pki, ports["p_tls"], session)[1:] == (True, "Resumed")
        with Load(stack) as load:
            stack.wait(lambda: stack.ready()["generation"] >= generation + 2, "two rotations",
                       timeout=4 * ROTATION_SECONDS + 10)
            n = len(load.results)
            stack.wait(lambda: len(load.results) >= n + 5, "requests after the rotations")
        assert not load.failures, load.failures
        # The old generations drained: the ticket's keys are gone.
        misses = f'tlsfront_tls_session_cache_misses_total{{vhost="localhost:{ports["p_tls"]}"}}'
        before = stack.settled_metric(misses)  # the load's own misses, all in the snapshots
        _s, reused, header = _get(pki, ports["p_tls"], session)
        assert (reused, header) == (False, "Initial")
        # The client offered the ticket (lifetime hint 300 s): a cache miss.
        stack.wait(lambda: stack.metric(misses) == before + 1, "one session-cache miss")
        fresh, _r, _h = _get(pki, ports["p_tls"])
        assert _get(pki, ports["p_tls"], fresh)[1:] == (True, "Resumed")
        log = stack.error_log()
        assert len(re.findall(r"TLSF0012: session ticket keys rotated: new TLS contexts for 1 vhosts", log)) >= 2
        assert "TLSF0005" not in log  # no SIGHUP involved
        assert stack.metric('tlsfront_config_reloads_total{result="success"}') == 1  # the start only
    finally:
        code = stack.stop()
    assert code == 0, proxy.output()


def test_rotation_interval_is_checked_by_the_loader(tmp_path, pki):
    from tlsfront import config as config_mod
    from tlsfront.errors import ConfigErrors

    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG.format(d=tmp_path, pki=pki, rotation=-1, p_tls=1, p_admin=2, b=3))
    with pytest.raises(ConfigErrors, match="session_ticket_rotation_seconds"):
        config_mod.load(cfg)
    cfg.write_text(CONFIG.format(d=tmp_path, pki=pki, rotation=0, p_tls=1, p_admin=2, b=3))
    assert config_mod.load(cfg).server.session_ticket_rotation_seconds == 0
