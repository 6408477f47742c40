"""Failure reasons that are true: the errno and its text for an OS error (a full disk says
ENOSPC and names the file), the signal for a killed worker, memory only when the kernel's
out-of-memory killer acted (the cgroup's `oom_kill` count rose) or Python ran out of it."""

from __future__ import annotations

import errno
import signal
from pathlib import Path

CGROUP_EVENTS = Path("/sys/fs/cgroup/memory.events")


def describe_failure(error: BaseException) -> str:
    """One line for a run's error.json and the sweep's output."""
    from benchmark.errors import XdkdError

    if isinstance(error, XdkdError):
        return str(error)
    if isinstance(error, OSError) and error.errno is not None:
        name = errno.errorcode.get(error.errno, str(error.errno))
        where = f": {error.filename}" if error.filename else ""
        fix = " (free some disk space and rerun)" if error.errno == errno.ENOSPC else ""
        return f"{name} ({error.strerror}){where}{fix}"
    if isinstance(error, MemoryError):
        return "out of memory (MemoryError): use fewer workers or smaller batches"
    if type(error).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        first = str(error).splitlines()[0] if str(error) else ""
        return f"GPU out of memory: {first}; use smaller batches or fewer jobs per GPU"
    return f"{type(error).__name__}: {error}"


def oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has killed in this cgroup (None: unknown)."""
    try:
        for line in CGROUP_EVENTS.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def describe_exit(exitcode: int | None, oom_before: int | None, oom_after: int | None) -> str:
    """Why a worker process ended: its exit status, or the signal that killed it, and the OOM
    killer only when its count rose meanwhile."""
    if exitcode is None:
        return "the worker process vanished"
    if exitcode >= 0:
        return f"the worker process exited with status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if oom_before is not None and oom_after is not None and oom_after > oom_before:
        return f"the worker process was killed by {name}: the kernel ran out of memory (OOM killer)"
    return f"the worker process was killed by {name}"
