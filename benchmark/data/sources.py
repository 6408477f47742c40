"""Where a domain's data lies under the data root, and what a reader returns (the readers
themselves, one per published kind, register in `READERS`; `benchmark.data.readers` asks them).

Each published kind registers a reader: `needs` lists the folders and files that must exist
(so a missing dataset is reported before anything is read, in one line that says where to get
it), and `read` returns the train and test splits as image files to decode or decoded arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from benchmark.data.settings import data_root
from benchmark.registry import Registry
from benchmark.suite.families import DomainInfo


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


def domain_folder(info: DomainInfo, root: Path | None = None) -> Path:
    """The domain's folder: its `root` under the data root."""
    return (root or data_root()) / info.entry.root


def images_folder(info: DomainInfo, root: Path | None = None) -> Path:
    """The folder the domain's images are under: its `path` in its folder, where it has one."""
    return domain_folder(info, root) / getattr(info.entry, "path", ".")
