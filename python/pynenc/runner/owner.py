"""Who runs an invocation: this process's identity, and whether another owner is still alive.

An owner is `host:pid:start`, where `start` is the process start time in clock ticks since boot
(from `/proc/PID/stat`), so a recycled pid is never mistaken for the original owner.
"""

from __future__ import annotations

import functools
import os
import socket

__all__ = ["current_owner", "owner_is_dead"]


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return fields[19].decode()


@functools.cache
def _host() -> str:
    return socket.gethostname()


_owner: str | None = None


def _forget_owner() -> None:
    global _owner
    _owner = None


# A forked child is another owner: it computes its own string on first use.
os.register_at_fork(after_in_child=_forget_owner)


def current_owner() -> str:
    """The owner string of this process (recomputed after a fork)."""
    global _owner
    if _owner is None:
        pid = os.getpid()
        _owner = f"{_host()}:{pid}:{_start_ticks(pid) or 0}"
    return _owner


def owner_is_dead(owner: str) -> bool | None:
    """Whether the owning process is gone.

    Returns:
        True when the owner ran on this host and its process no longer exists (or its pid now
        belongs to another process), False when it is alive, None when it ran on another host
        (only its lease expiry can tell).
    """
    try:
        host, pid_text, start = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != _host():
        return None
    now_start = _start_ticks(pid)
    if now_start is None:
        return True
    return start != "0" and now_start != start
