"""The first code a spawned pool worker (`benchmark.executors.local`) runs. It asks Linux to
SIGKILL the worker when its driver dies before it imports torch and the harness, which take
seconds: set after those imports, a driver killed while its workers start left them running
until their imports ended. Kept free of heavy imports for that reason (this module, and what
its arguments unpickle to, are all a worker loads before the request)."""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSetup:
    """What one worker process runs on: a device name, the GPU it is pinned to (None on
    CPU) and its share of CPU threads."""

    device: str
    gpu: int | None
    threads: int


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(driver: int, root: str, setup: WorkerSetup, retry_failed: bool, tasks, results) -> None:
    """A worker's entry point: bound to its driver's life first, then the harness's loop."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    if os.getppid() != driver:  # the driver died before the request took hold
        return
    from benchmark.executors.local import worker_main

    worker_main(driver, root, setup, retry_failed, tasks, results)
