"""What the machine lends this process: the CPU cores it may run on."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """Cores this process may run on: its affinity mask where the OS has one (taskset, a
    Slurm job's or a container's cpuset), else every core. `os.cpu_count()` counts the whole
    node, so a job given 8 of 128 cores would start 128 threads on 8."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


RUN_THREADS = 1  # a run's CPU intra-op threads unless $XDKD_THREADS (`--threads`) says


def run_threads() -> int:
    """The intra-op thread count every run trains and evaluates with ($XDKD_THREADS, `xdkd
    run --threads`, else RUN_THREADS), whatever the pool size: a reduction split over another
    number of threads rounds differently, and a chaotic method (gradient reversal) then lands
    points away, so the count is a fixed part of the device a record names, not a share of
    the cores that moves with --workers."""
    raw = os.environ.get("XDKD_THREADS") or str(RUN_THREADS)
    if not raw.isdigit() or int(raw) < 1:
        from benchmark.errors import XdkdError

        raise XdkdError(f"XDKD_THREADS={raw!r} is not a thread count; give a whole number >= 1")
    return int(raw)
