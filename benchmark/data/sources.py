"""Where a domain's data lies under the data root, and what a reader finds there.

Each published kind registers a reader: `needs` lists the folders and files that must exist
(so a missing dataset is reported before anything is read, in one line that says where to get
it), and `read` returns the train and test splits as image files to decode or decoded arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from benchmark.data.domains import DomainInfo
from benchmark.data.settings import data_root
from benchmark.errors import XdkdError
from benchmark.registry import Registry


class Need(NamedTuple):
    path: Path
    folder: bool  # a folder, else a file


@dataclass(frozen=True)
class SplitSource:
    """One split as found: labels (N,) int64, and either `paths` (one image file per label) or
    `arrays` ((N, H, W) grey or (N, H, W, 3) RGB uint8). `files` names what was read, for the
    cache manifest: one entry per image, or the array files."""

    labels: np.ndarray
    files: list[str]
    paths: list[Path] | None = None
    arrays: np.ndarray | None = None


class Reader(Protocol):
    def needs(self, info: DomainInfo, folder: Path) -> list[Need]: ...

    def read(self, info: DomainInfo, folder: Path) -> dict[str, SplitSource]: ...


READERS: Registry[type[Reader]] = Registry("domain kind")


def reader(info: DomainInfo) -> Reader:
    from benchmark.data import camelyon, digits, folders  # noqa: F401  (importing registers them)

    return READERS.get(info.entry.kind)()


def domain_folder(info: DomainInfo, root: Path | None = None) -> Path:
    """The domain's folder: its `root` under the data root."""
    return (root or data_root()) / info.entry.root


def images_folder(info: DomainInfo, root: Path | None = None) -> Path:
    """The folder the domain's images are under: its `path` in its folder, where it has one."""
    return domain_folder(info, root) / getattr(info.entry, "path", ".")


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
