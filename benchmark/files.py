"""Writes that a killed process can never leave half done: a file, or a whole directory,
is written beside its final place and renamed into it (a rename is atomic on POSIX)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temp directory beside `final`; when the block ends without an error it
    replaces `final` (readers see the old or the new one, never a mix), else it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: Path) -> str:
    """The file's sha256, read in 16 MB blocks (memory stays flat for any size)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(2**24):
            digest.update(block)
    return digest.hexdigest()
