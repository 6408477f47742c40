"""`xdkd status`: what a runs directory holds, read from the directory alone.

A run is done when it has record.json; failed when it has error.json and nobody holds its
claim; running while a process holds its claim (claim.lock); queued otherwise (queued by a
sweep, or started by a process that died before finishing: the next sweep runs it). The
same rules hold for any executor, on any host sharing the directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import XdkdError
from benchmark.store import RunStore


@dataclass
class Status:
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # label, reason
    running: list[tuple[str, str]] = field(default_factory=list)  # label, who and since when
    queued: list[str] = field(default_factory=list)
    teachers: dict[str, int] = field(default_factory=dict)


def read_status(root: Path) -> Status:
    if not (root / "runs").is_dir():
        raise XdkdError(
            f"{root} is not a runs directory (no {root / 'runs'}/); give the --out of an "
            "xdkd run, e.g. xdkd status runs/quick"
        )
    store = RunStore(root)
    status = Status()
    for directory in sorted(path for path in (root / "runs").iterdir() if path.is_dir()):
        key = directory.name
        label = _label(store, key)
        if store.record(key) is not None:
            status.done.append(label)
        elif store.is_running(key):
            status.running.append((label, _holder(store, key)))
        elif (error := store.error(key)) is not None:
            status.failed.append((label, error["error"]))
        else:
            status.queued.append(label)
    status.teachers = _teachers(root)
    return status


def clear_failures(root: Path) -> int:
    """Move every failed run's and teacher's error.json aside (to error.previous.json), so
    that the next `xdkd run` runs them again; returns how many runs were cleared."""
    store = RunStore(root)
    cleared = sum(store.clear_error(key) for key in store.run_keys() if not store.is_running(key))
    store.clear_teacher_errors()
    return cleared


def _label(store: RunStore, key: str) -> str:
    spec = store.load_spec(key)
    return key if spec is None else f"{key} {spec.label}"


def _holder(store: RunStore, key: str) -> str:
    info = store.running_info(key)
    if info is None:
        return "claimed"
    minutes = (time.time() - info["since"]) / 60
    return f"on {info['host']} pid {info['pid']} for {minutes:.0f} min"


def _teachers(root: Path) -> dict[str, int]:
    counts = {"trained": 0, "failed": 0}
    for _, state in RunStore(root).teacher_keys():
        counts[state] += 1
    return counts


def print_status(status: Status, root: Path, verbose: bool) -> None:
    total = len(status.done) + len(status.failed) + len(status.running) + len(status.queued)
    print(
        f"{root}: {total} runs: {len(status.done)} done, {len(status.failed)} failed, "
        f"{len(status.running)} running, {len(status.queued)} queued; teachers: "
        f"{status.teachers['trained']} trained, {status.teachers['failed']} failed"
    )
    for label, reason in status.failed:
        print(f"  failed   {label}: {reason}")
    for label, holder in status.running:
        print(f"  running  {label} ({holder})")
    if verbose:
        for label in status.queued:
            print(f"  queued   {label}")
        for label in status.done:
            print(f"  done     {label}")
    if status.failed:
        print(
            "rerun the same xdkd run command with --retry-failed to run the failed ones again "
            "(or clear them here with xdkd status --retry-failed, e.g. before a Slurm resubmit)"
        )
    elif status.queued:
        print("rerun the same xdkd run command to finish the queued runs")
