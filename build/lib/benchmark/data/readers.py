"""What the readers of the published kinds find for a domain: the first missing folder or
file, or its train and test splits. Importing this module imports every kind's reader, and
each registers itself in `benchmark.data.sources.READERS`."""

from __future__ import annotations

from pathlib import Path

from benchmark.data import camelyon, digits, folders  # noqa: F401  (importing registers them)
from benchmark.data.settings import data_root
from benchmark.data.sources import READERS, Reader, SplitSource, domain_folder
from benchmark.errors import XdkdError
from benchmark.suite.families import DomainInfo


def reader(info: DomainInfo) -> Reader:
    return READERS.get(info.entry.kind)()


def missing(info: DomainInfo, root: Path | None = None) -> str | None:
    """One line naming the first missing folder or file, or None when all are there."""
    root = root or data_root()
    for need in reader(info).needs(info, domain_folder(info, root)):
        if not (need.path.is_dir() if need.folder else need.path.is_file()):
            what = "folder" if need.folder else "file"
            return (
                f"domain '{info.name}' ({info.family}): no {what} {need.path}; expected layout "
                f"{info.entry.layout} under the data root (--data-root or XDKD_DATA, now "
                f"{root}); get it from {info.entry.homepage}"
            )
    return None


def read_domain(info: DomainInfo, root: Path | None = None) -> dict[str, SplitSource]:
    """{'train': ..., 'test': ...} for a published domain, or one clear error line: a missing
    folder or file, or a file its format's reader cannot parse."""
    root = root or data_root()
    problem = missing(info, root)
    if problem:
        raise XdkdError(problem)
    folder = domain_folder(info, root)
    try:
        return reader(info).read(info, folder)
    except XdkdError:
        raise
    except Exception as error:  # a damaged file in any format: name it, never a traceback
        raise XdkdError(
            f"domain '{info.name}' ({info.family}): cannot read its data in {folder}: "
            f"{type(error).__name__}: {error}"
        ) from error
