"""Who the workers run as, and handing the master's files to them (issue 11).

The master keeps root's credentials (it binds low ports and reads private keys before the
fork); each worker switches to `[server] user`/`group` (worker.py). Here:

- `worker_ids(config)`: the uid/gid the workers switch to, or (None, None) when the master
  is not root or neither `user` nor `group` is set. Raises KeyError for an unknown name.
- `root_refusal(config, uid, gid)`: why the workers must not start as root, or None
  (a root master with no `user`/`group` to switch to is refused too, unless `allow_root`).
  Example: ``user = "root"`` without ``allow_root = true`` gives "refusing to serve as
  root: [server] user = 'root' gives the workers uid 0. Fix: ...".
- `chown(path, uid, gid)`: give a file the master made (log, metrics directory) to the
  workers, so they can reopen or write it after dropping privileges.
"""

from __future__ import annotations

import os
from pathlib import Path

from .model import Config


def worker_ids(config: Config) -> tuple[int | None, int | None]:
    """uid/gid the workers switch to, when the master runs as root and `user`/`group` say so."""
    s = config.server
    if os.geteuid() != 0 or (s.user is None and s.group is None):
        return None, None
    import grp
    import pwd

    uid = gid = None
    if s.user is not None:
        pw = pwd.getpwnam(s.user)
        uid, gid = pw.pw_uid, pw.pw_gid
    if s.group is not None:
        gid = grp.getgrnam(s.group).gr_gid
    return uid, gid


def root_refusal(config: Config, worker_uid: int | None, worker_gid: int | None) -> str | None:
    """Why the workers must not start: `user`/`group` name root (uid/gid 0) while
    `allow_root` is false (Apache refuses `User root` unless built with BIG_SECURITY_HOLE).
    Also refused: a root master with neither `user` nor `group` set (the workers would keep
    root's credentials). None when fine."""
    if os.geteuid() != 0 or config.server.allow_root:
        return None
    s = config.server
    if s.user is None and s.group is None:
        return ("refusing to serve as root: the master runs as root and [server] names no user "
                "to switch to, so the workers would keep root's credentials. Fix: set [server] "
                "user = \"www-data\" (and group) to an unprivileged account (the ports are bound and "
                "the keys read before the switch), or set allow_root = true in [server] to accept "
                "the risk.")
    if worker_uid != 0 and worker_gid != 0:
        return None
    named = f"user = {s.user!r}" if worker_uid == 0 else f"group = {s.group!r}"
    return (f"refusing to serve as root: [server] {named} gives the workers "
            f"{'uid' if worker_uid == 0 else 'gid'} 0. Fix: set [server] user (and group) to an "
            f"unprivileged account such as \"www-data\", or set allow_root = true in [server] "
            f"to accept the risk.")


def chown(path: Path, uid: int | None, gid: int | None) -> None:
    """chown `path` to the workers' uid/gid (None keeps that id); silent when it fails, as
    the worker's own open then reports the problem with the file's name."""
    if uid is not None or gid is not None:
        try:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
        except OSError:
            pass
