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
