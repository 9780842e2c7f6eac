"""The master's pid file (`[server] pid_file`): written once the configuration, Contexts
and sockets are ready, removed at exit, so `kill -HUP $(cat tlsfront.pid)` reloads.

Content: the master's pid and a newline, e.g. ``12345\\n`` (the format of Apache's
PidFile). A missing file at removal is not an error (an operator may have deleted it).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_pid_file(path: Path | None) -> None:
    """Write this process's pid to `path`; nothing when `path` is None."""
    if path is not None:
        path.write_text(f"{os.getpid()}\n")


def remove_pid_file(path: Path | None) -> None:
    """Remove `path` if it is there; nothing when `path` is None."""
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass
