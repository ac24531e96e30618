"""Who runs an invocation: this process's identity, and whether another owner is still alive.

An owner is `HOST:pid=PID:start=boot+SECONDS`: the host name, the process id and the moment the
process started, in seconds after the machine booted (from `psutil`, which reads it from the
kernel on Linux, macOS and the BSDs), so a recycled pid is not mistaken for the original owner.
Seconds after boot, not a wall-clock time, so that setting the system clock does not change a
live process's identity. Where the start cannot be read the owner ends in `start=?` and only its
lease expiry can tell that it died.

Owners written before this format (`HOST:PID:TICKS`, the start in clock ticks after boot, or
`0` when unknown) are still judged: dead when their pid is gone, compared by start time where
that can be read, and unknown otherwise.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import sys
from types import ModuleType

__all__ = ["current_owner", "owner_is_dead"]

# Two readings of one process's start agree within this. It covers the rounding of the stored
# value and a slewing clock; a pid reused within a second of the previous start is not told apart.
_TOLERANCE_SECONDS = 1.0

_OWNER = re.compile(r"(?P<host>.*):pid=(?P<pid>[0-9]+):start=(?:boot\+(?P<start>[0-9.]+)|\?)")
_LEGACY = re.compile(r"(?P<host>.*):(?P<pid>[0-9]+):(?P<ticks>[0-9]+)")


@functools.cache
def _psutil() -> ModuleType | None:
    # Imported on first use (about 11 ms), not by every program that imports pynenc.
    try:
        import psutil
    except Exception:  # noqa: BLE001 - a declared dependency; without it, lease expiry alone
        return None
    return psutil


def _started_after_boot(pid: int) -> float | None:
    """When process `pid` started, in seconds after boot; None when that cannot be read (the
    process is gone, or the platform or its permissions do not tell)."""
    psutil = _psutil()
    if psutil is None:
        return None
    try:
        return float(psutil.Process(pid).create_time() - psutil.boot_time())
    except Exception:  # noqa: BLE001 - any failure to read means "not known", never "dead"
        return None


def _pid_exists(pid: int) -> bool | None:
    """Whether a process with this pid exists; None when that cannot be asked."""
    if pid <= 0:
        return False
    if os.name == "posix":
        # Signal 0 asks the kernel itself: it needs no /proc and no permission on the process.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except OSError:
            return None
        except OverflowError:  # beyond any pid this system can have (a damaged owner)
            return False
        return True
    psutil = _psutil()
    return None if psutil is None else bool(psutil.pid_exists(pid))


@functools.cache
def _host() -> str:
    return socket.gethostname()


_owner: str | None = None


def _forget_owner() -> None:
    global _owner
    _owner = None


# A forked child is another owner: it computes its own string on first use.
os.register_at_fork(after_in_child=_forget_owner)


def _owner_of(pid: int) -> str:
    start = _started_after_boot(pid)
    return f"{_host()}:pid={pid}:start=" + ("?" if start is None else f"boot+{start:.2f}")


def current_owner() -> str:
    """The owner string of this process (recomputed after a fork)."""
    global _owner
    if _owner is None:
        _owner = _owner_of(os.getpid())
    return _owner


def owner_is_dead(owner: str) -> bool | None:
    """Whether the owning process is gone.

    Returns:
        True when the owner ran on this host and its pid no longer exists, or now belongs to a
        process that started at another time; False when it is alive; None when this cannot
        be told (another host, a start time that cannot be read here, a string of no known
        format): then only the owner's lease expiry can tell.
    """
    if match := _OWNER.fullmatch(owner):
        recorded = None if match["start"] is None else _parse_seconds(match["start"])
    elif match := _LEGACY.fullmatch(owner):
        recorded = _legacy_seconds(match["ticks"])
    else:
        return None
    if match["host"] != _host():
        return None
    pid = int(match["pid"])
    exists = _pid_exists(pid)
    if exists is None:
        return None
    if not exists:
        return True
    if recorded is None:
        return None
    now = _started_after_boot(pid)
    if now is None:
        return None
    return abs(now - recorded) > _TOLERANCE_SECONDS


def _parse_seconds(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _legacy_seconds(ticks: str) -> float | None:
    """The start of an owner of the previous format, in seconds after boot. Its ticks came from
    Linux's /proc, so they convert only on Linux; `0` meant the start was unknown."""
    if ticks == "0" or not sys.platform.startswith("linux"):
        return None
    try:
        return int(ticks) / os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return None
