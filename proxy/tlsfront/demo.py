"""`tlsfront demo -c conf/demo.toml` (what `make run` starts).

1. a throwaway self-signed certificate in `.state/demo/` next to the repository
   root (made once, reused: the paths in conf/demo.toml point there);
2. the demo backend (demo_backend.py) in the same reactor, on the address the
   config's backends name (127.0.0.1:8081 in conf/demo.toml);
3. the proxy with conf/demo.toml: https://127.0.0.1:8443/, http://127.0.0.1:8080/.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEMO_BACKEND_PORT = 8081


def state_dir(config_path: Path) -> Path:
    """`.state/demo` at the repository root: the parent of the config's `conf/` directory."""
    config_path = Path(config_path).resolve()
    root = config_path.parent.parent if config_path.parent.name == "conf" else config_path.parent
    return root / ".state" / "demo"


def demo_backends(cfg) -> list[tuple[str, int]]:
    """The loopback backends the demo config names (where the echo app must listen)."""
    out: list[tuple[str, int]] = []
    for v in cfg.vhosts:
        for b in v.backends:
            if b.host in ("127.0.0.1", "localhost") and (b.host, b.port) not in out:
                out.append(("127.0.0.1", b.port))
    return out or [("127.0.0.1", DEMO_BACKEND_PORT)]


def main(args) -> int:
    from . import certgen
    from . import config as config_mod
    from .errors import ConfigErrors

    config_path = Path(args.config)
    cert, key = certgen.ensure_demo_certificate(state_dir(config_path))
    # conf/demo.toml logs to .state/demo/logs/ (tlsfront itself never creates log directories)
    (state_dir(config_path) / "logs").mkdir(parents=True, exist_ok=True)
    try:
        cfg = config_mod.load(config_path)
    except ConfigErrors as exc:
        print(f"tlsfront demo: {exc}", file=sys.stderr)
        return 1
    from . import serve

    backends = demo_backends(cfg)

    def setup(reactor, server) -> None:
        from . import demo_backend
        for host, port in backends:
            try:
                demo_backend.listen(reactor, port, host)
            except Exception as exc:  # noqa: BLE001 - CannotListenError: explain, do not trace
                print(f"tlsfront demo: cannot start the demo backend on {host}:{port}: {exc}\n"
                      f"  fix: stop whatever listens there (ss -ltnp 'sport = :{port}')",
                      file=sys.stderr)
                reactor.callWhenRunning(reactor.stop)

    def announce(server) -> None:
        print(f"tlsfront demo: certificate {cert} (self-signed; curl -k or --cacert {cert})")
        for host, port in backends:
            print(f"  demo backend  http://{host}:{port}/")
        for v in cfg.vhosts:
            host = "127.0.0.1" if v.listen.is_wildcard else v.listen.host
            scheme = "https" if v.is_tls else "http"
            print(f"  {v.server_name:<14} {scheme}://{host}:{v.listen.port}/")
        if cfg.admin.listen is not None:
            print(f"  admin         http://{cfg.admin.listen}/healthz")
        print("  stop with Ctrl-C", flush=True)

    return serve.run(cfg, stderr=bool(getattr(args, "stderr", False)), extra_setup=setup, announce=announce)
