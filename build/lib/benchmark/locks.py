"""Advisory file locks (POSIX `flock`) that every process sharing a directory respects.

A lock belongs to an open file description, so the kernel drops it the moment its holder
exits, SIGKILL included: a crashed worker never leaves a stale lock behind, and whoever
waits next simply gets it. Used for run claims, teacher training and cache builds.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockHeld(Exception):
    """A non-blocking lock attempt found the lock held by another process."""


@contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the `with` block.
    Non-blocking: raise LockHeld at once instead of waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(descriptor, flags)
        except BlockingIOError:
            raise LockHeld(str(path)) from None
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock on `path` right now."""
    if not path.exists():
        return False
    try:
        with file_lock(path, blocking=False):
            return False
    except LockHeld:
        return True
