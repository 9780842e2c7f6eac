"""The master's reload (SIGHUP) and ticket-key rotation: a rolling replacement of the
worker generation (issue 6).

Mixed into `master.Master`, which owns the state (`gen`, `pending`, `metrics`, ...).

- `_reload(rotate=False)`: load the configuration again, build its Contexts, logs and new
  sockets; any problem is logged (TLSF0007 `reload_failed`) and the old workers keep
  serving. Otherwise a new generation is forked on the kept and new sockets.
- `_commit_reload()`: every new worker is ready: the old generation gets SIGTERM and
  drains; sockets no longer configured are closed.
- `_abort_reload(why)`: a new worker died or did not start within READY_TIMEOUT_SECONDS.
- `_reload(rotate=True)` every `server.session_ticket_rotation_seconds`: the same with the
  same configuration and freshly built Contexts (new ticket keys; decrypted private keys
  are reused, no pass phrase is asked). docs/sessions.md.
"""

from __future__ import annotations

import signal
import time

from .affinity import BindFailure, open_listeners
from .master_children import READY_TIMEOUT_SECONDS, Generation, worker_count


def _one_line(text: str) -> str:
    return " ".join(str(text).split())



class ReloadMixin:
    """Reload and rotation; see the module docstring."""

    def _schedule_rotation(self) -> None:
        assert self.gen is not None
        every = self.gen.config.server.session_ticket_rotation_seconds
        self.next_rotation = time.monotonic() + every if every > 0 else None


    def _reload(self, rotate: bool) -> None:
        from . import config as config_mod
        from . import keys, logfiles, tlsctx
        from .errors import ConfigErrors
        from .vhosts import VHostTable

        old = self.gen
        assert old is not None
        path = old.config.path
        if rotate:
            self.next_rotation = None
        else:
            self.log("reload_begin", path=path)
        try:
            if rotate:
                config, loader = old.config, old.loader
            else:
                config = config_mod.load(path)
                loader = keys.KeyLoader(known=list(getattr(old.loader, "known", [])))
            contexts, _warnings = tlsctx.build_contexts_with_warnings(config, loader=loader)
            if config.server == old.config.server or rotate:
                logs = old.logs
            else:
                logs = logfiles.Logs.from_settings(config.server)
                self._chown_logs(logs)
            listeners, notes = open_listeners(config, VHostTable(config.vhosts).bind_addresses(),
                                              old.workers, keep=old.listeners)
        except (ConfigErrors, logfiles.LogFileError, BindFailure, OSError) as exc:
            self.log("reload_failed", error=_one_line(str(exc)))
            self.metrics.config_loaded(False)
            if rotate:
                self._schedule_rotation()
            return
        if worker_count(config) != old.workers:
            notes.append(f"workers = {worker_count(config)} takes effect at the next restart "
                         f"({old.workers} workers keep running)")
        for name, before, after in (("[admin] listen", old.config.admin.listen, config.admin.listen),
                                    ("server.pid_file", old.config.server.pid_file, config.server.pid_file),
                                    ("server.user/group", (old.config.server.user, old.config.server.group),
                                     (config.server.user, config.server.group))):
            if before != after:
                notes.append(f"{name} changed: takes effect at the next restart")
        if not rotate:
            self._log_startup_facts(logs, config, _warnings)
        for note in notes:
            self.log("reload_partial", detail=note)
        gen = Generation(old.number + 1, config, contexts, listeners, logs, old.workers, loader)
        gen.rotation = rotate  # type: ignore[attr-defined]
        self.pending = gen
        self.pending_deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for i in range(gen.workers):
            if self.pending is not gen:
                break  # a fork failed: the reload was aborted
            self._fork_worker(gen, i)

    def _commit_reload(self) -> None:
        old, new = self.gen, self.pending
        assert old is not None and new is not None
        self.gen, self.pending = new, None
        for pid in old.slots:
            if pid is not None:
                self._signal(pid, signal.SIGTERM)
        for key in [k for k in self.restarts if k[0] == "worker"]:
            del self.restarts[key]
        self._close_listeners(l for a, l in old.listeners.items() if new.listeners.get(a) is not l)
        if new.logs is not old.logs:
            old.logs.close()
        rotation = getattr(new, "rotation", False)
        self.metrics.set_vhosts(new.config.vhosts)
        if not rotation:
            self.metrics.config_loaded(True)
        if rotation:
            self.log("tickets_rotated", vhosts=sum(1 for v in new.config.vhosts if v.is_tls))
        else:
            self.log("reload_done", path=new.config.path, vhosts=len(new.config.vhosts))
        self._schedule_rotation()
        if self.reload_again is not None:
            self.reload_again = None
            self._reload(rotate=False)

    def _abort_reload(self, why: str) -> None:
        new = self.pending
        assert new is not None and self.gen is not None
        self.pending = None
        for pid in new.slots:
            if pid is not None:
                self._signal(pid, signal.SIGTERM)
        self._close_listeners(l for a, l in new.listeners.items() if self.gen.listeners.get(a) is not l)
        self.gen.logs.error("reload_failed", error=_one_line(why))
        if new.logs is not self.gen.logs:
            new.logs.close()
        self.metrics.config_loaded(False)
        self._schedule_rotation()
