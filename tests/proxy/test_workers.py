"""Issue 6: the master and its workers under real signals, with a client sending requests.

- a worker killed with SIGKILL under load is replaced; connections routed to its socket
  wait for the replacement, so at most the request in flight at the kill fails, and none
  after the replacement is up;
- SIGHUP ten times under load: no failed request; each reload is a new generation;
- SIGHUP with a broken configuration: logged (TLSF0007), counted, the old one keeps serving;
- SIGTERM lets a slow in-flight request finish, exit status 0;
- SIGUSR1: master and workers reopen their logs (logrotate);
- start-up problems (address in use) are a message and exit status 1, not a traceback.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from tlsfront import affinity

from helpers import Proc, TLSFRONT, free_ports, read_response
from stack import ADMIN_TLS_ONE_VHOST, Load, Stack, children, start_stack

WORKERS = 2

CONFIG = """
[server]
allow_root = true
error_log = "{d}/error.log"
access_log = "{d}/access.log"
pid_file = "{d}/tlsfront.pid"
workers = {workers}
shutdown_grace_seconds = {grace}
""" + ADMIN_TLS_ONE_VHOST


def _start(pki, d: Path, grace: float = 10, record: Path | None = None) -> Stack:
    return start_stack(pki, d, CONFIG, workers=WORKERS, grace=grace, record=record)


def _stop(stack: Stack) -> int:
    return stack.stop(timeout=30)


@pytest.fixture(scope="module")
def stack(pki, tmp_path_factory):
    s = _start(pki, tmp_path_factory.mktemp("workers"))
    yield s
    assert _stop(s) == 0, s.proxy.output()


def test_killed_worker_is_replaced_and_no_request_fails_after(stack):
    index = affinity.worker_for("127.0.0.1", WORKERS)  # the worker our client lands on
    victim = stack.ready()["workers"]["pids"][index]
    restarts = stack.metric("tlsfront_worker_restarts_total")
    with Load(stack) as load:
        stack.wait(lambda: len(load.results) >= 20, "20 requests before the kill")
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        state = stack.wait(lambda: (s := stack.ready())["workers"]["ready"] == WORKERS
                           and s["workers"]["pids"][index] not in (victim, None) and s,
                           "the replacement worker")
        up_at = time.monotonic()
        n = len(load.results)
        stack.wait(lambda: len(load.results) >= n + 20, "20 requests after the replacement")
    replacement = state["workers"]["pids"][index]
    assert replacement != victim
    after = [r for r in load.results if r[0] >= up_at]
    assert len(after) >= 20 and not [r for r in after if r[2]], after
    # Requests sent while no worker held the socket waited in its queue: only the one
    # in flight at the kill may fail.
    assert len(load.failures) <= 1, load.failures
    assert all(r[0] <= killed_at for r in load.failures), load.failures
    assert re.search(rf"TLSF0010: worker {index}/\d+ \(pid {victim}\) exited: killed by SIGKILL; "
                     r"restarting in [\d.]+s", stack.error_log())
    assert stack.wait(lambda: stack.metric("tlsfront_worker_restarts_total") == restarts + 1, "restart counted")


def test_ten_reloads_under_load_fail_no_request(stack):
    generation = stack.ready()["generation"]
    master = int((stack.dir / "tlsfront.pid").read_text())
    series = f'tlsfront_http_requests_total{{code="2xx",vhost="localhost:{stack.ports["p_tls"]}"}}'
    before = stack.settled_metric(series)  # the earlier tests' requests, all in the snapshots
    with Load(stack) as load:
        stack.wait(lambda: len(load.results) >= 10, "requests before the reloads")
        for i in range(1, 11):
            os.kill(master, signal.SIGHUP)
            stack.wait(lambda: stack.ready()["generation"] == generation + i, f"generation {generation + i}")
        n = len(load.results)
        stack.wait(lambda: len(load.results) >= n + 10, "requests after the reloads")
    assert not load.failures, load.failures
    assert len(load.results) >= 30
    assert stack.error_log().count("TLSF0006: configuration reloaded") >= 10
    # The old generations drained and exited: exactly WORKERS workers remain.
    stack.wait(lambda: len(children(master)) == WORKERS, f"{WORKERS} worker processes")
    # Counters survive 10 generations of workers (dead workers' snapshots are folded in).
    stack.wait(lambda: stack.metric(series) == before + len(load.results),
               f"{series} == {before} + {len(load.results)}")


def test_bad_config_on_sighup_keeps_the_old_one_serving(stack):
    good = stack.config.read_text()
    generation = stack.ready()["generation"]
    failures = _reload_failures(stack)
    master = int((stack.dir / "tlsfront.pid").read_text())
    try:
        stack.config.write_text(good.replace('server_name = "localhost"', 'server_name = "localhost"\nbogus_key = 1'))
        os.kill(master, signal.SIGHUP)
        line = stack.wait(lambda: [l for l in stack.error_log().splitlines() if "TLSF0007" in l
                                   and "bogus_key" in l], "TLSF0007")[0]
        assert "the old configuration keeps serving" in line
        assert stack.wait(lambda: _reload_failures(stack) == failures + 1, "failure counted")
        assert stack.ready()["generation"] == generation
        with Load(stack) as load:
            stack.wait(lambda: len(load.results) >= 5, "requests")
        assert not load.failures
    finally:
        stack.config.write_text(good)


def _reload_failures(stack: Stack) -> float:
    return stack.metric('tlsfront_config_reloads_total{result="failure"}')


def test_sigusr1_reopens_logs_in_master_and_workers(stack):
    master = int((stack.dir / "tlsfront.pid").read_text())
    for name in ("error.log", "access.log"):
        (stack.dir / name).rename(stack.dir / f"{name}.1")
    os.kill(master, signal.SIGUSR1)
    stack.wait(lambda: (stack.dir / "error.log").exists() and
               stack.error_log().count("TLSF0008") >= 1 + WORKERS, "TLSF0008 from master and workers")
    with Load(stack, path="/after-rotation") as load:
        stack.wait(lambda: len(load.results) >= 3, "requests")
    stack.wait(lambda: "/after-rotation" in (stack.dir / "access.log").read_text(), "access line in the new file")
    assert "/after-rotation" not in (stack.dir / "access.log.1").read_text()


def test_sigterm_lets_a_slow_request_finish(pki, tmp_path):
    received = tmp_path / "received.txt"
    stack = _start(pki, tmp_path, grace=10, record=received)
    result: dict = {}

    def slow() -> None:
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        raw = socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=20)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /slow/2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            result["response"] = read_response(s)

    t = threading.Thread(target=slow)
    t.start()
    # The request is at the backend (its record says so). Was: a fixed 0.7 s, after which a
    # loaded machine had sometimes not even finished the handshake, so SIGTERM found an idle
    # connection and closed it.
    stack.wait(lambda: received.exists() and b"/slow/2" in received.read_bytes(), "the request at the backend")
    stack.proxy.popen.send_signal(signal.SIGTERM)

    def refused() -> bool:  # no longer accepting (was: one try after a fixed 0.3 s)
        try:
            socket.create_connection(("127.0.0.1", stack.ports["p_tls"]), timeout=2).close()
            return False
        except OSError:
            return True
    stack.wait(refused, "the listener closed after SIGTERM", timeout=10)
    t.join(20)
    assert result["response"][0] == 200
    assert stack.proxy.popen.wait(20) == 0
    assert _stop(stack) == 0
    log = stack.error_log()
    assert "TLSF0003: caught SIGTERM" in log and log.rstrip().endswith("TLSF0004: shutdown complete")
    assert not (tmp_path / "tlsfront.pid").exists()


def test_address_in_use_is_explained(pki, tmp_path):
    names = ["p_tls", "p_admin", "b"]
    ports = dict(zip(names, free_ports(len(names))))
    cfg = tmp_path / "t.toml"
    cfg.write_text(CONFIG.format(d=tmp_path, pki=pki, workers=WORKERS, grace=1, **ports))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports["p_tls"]))
        busy.listen()
        proc = Proc("tlsfront", [TLSFRONT, "serve", "-c", str(cfg)], tmp_path)
        assert proc.popen.wait(20) == 1
    out = proc.output()
    assert f"127.0.0.1:{ports['p_tls']}" in out and "Traceback" not in out
    proc.stop()


def test_reload_adds_and_removes_a_listening_address(stack):
    from helpers import free_port

    good = stack.config.read_text()
    master = int((stack.dir / "tlsfront.pid").read_text())
    new_port = free_port()
    extra = good.split("[[vhost]]", 1)[1].replace(f":{stack.ports['p_tls']}", f":{new_port}")
    generation = stack.ready()["generation"]
    try:
        stack.config.write_text(good + "\n[[vhost]]" + extra)
        os.kill(master, signal.SIGHUP)
        stack.wait(lambda: stack.ready()["generation"] == generation + 1, "the reload")
        ports = {stack.ports["p_tls"], new_port}
        assert {int(l["address"].rsplit(":", 1)[1]) for l in stack.ready()["listeners"]} == ports
        for port in ports:
            load = Load(stack)
            load.stack = Stack(stack.dir, stack.pki, {**stack.ports, "p_tls": port}, stack.proxy, stack.config)
            load.one()
    finally:
        stack.config.write_text(good)
    os.kill(master, signal.SIGHUP)
    stack.wait(lambda: stack.ready()["generation"] == generation + 2, "the second reload")

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", new_port), timeout=2).close()
            return False
        except ConnectionRefusedError:
            return True
    stack.wait(refused, f"127.0.0.1:{new_port} closed once the old workers drained")


def test_admin_survives_a_silent_and_a_slow_client(stack):
    """The master's admin responder is non-blocking: a client that sends nothing, or half a
    request, does not stop /healthz for others; it is dropped after its deadline."""
    silent = socket.create_connection(("127.0.0.1", stack.ports["p_admin"]), timeout=10)
    half = socket.create_connection(("127.0.0.1", stack.ports["p_admin"]), timeout=10)
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    try:
        started = time.monotonic()
        assert stack.admin("/healthz")[0] == 200
        assert time.monotonic() - started < 2
        silent.settimeout(10)
        assert silent.recv(1) == b""  # closed by the master after ADMIN_REQUEST_TIMEOUT_SECONDS
    finally:
        silent.close()
        half.close()
