"""Writes that a killed process can never leave half done: a file, or a whole directory,
is written beside its final place and renamed into it (a rename is atomic on POSIX)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark.errors import XdkdError


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


def note(message: str) -> None:
    """A line for the person running xdkd, beside the progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(f"xdkd: note: {message}", file=sys.stderr)


def set_aside(path: Path, why: str) -> Path:
    """Move a damaged artefact out of the way (kept, never deleted) and say so; whoever
    called this rebuilds or reruns what it held."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return aside
    note(f"{path} is damaged ({why}); set aside as {aside.name}, and what it held is rebuilt")
    return aside


def read_manifest(path: Path) -> dict | None:
    """A cache folder's manifest.json: None when absent; a damaged one is set aside."""
    import json

    manifest = path / "manifest.json"
    try:
        data = json.loads(manifest.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a mapping")
        return data
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        set_aside(manifest, f"not a valid manifest: {error}")
        return None


def output_directory(path: Path, flag: str) -> Path:
    """A directory the command can write (created if missing), checked before anything runs;
    `flag` names the option it came from in the message."""
    if path.exists() and not path.is_dir():
        raise XdkdError(f"{flag} '{path}' is a file, not a directory; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise XdkdError(f"{flag} '{path}': cannot create it ({error.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise XdkdError(f"{flag} '{path}' is not writable by you; give another directory")
    return path


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xdkd"
    return Path(os.environ.get("XDKD_CACHE", default))
