"""The folders the package ships: `datasets/` (dataset family files) and `baselines/` (the
suites). The checkout's top-level folders are the source; a built wheel carries them inside
the package (`benchmark.datasets`, `benchmark.baselines`, mapped in pyproject.toml), so an
install that is not editable has every family and suite. `$XDKD_DATASETS` and
`$XDKD_BASELINES` add folders (os.pathsep-separated), searched before the shipped one."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from benchmark.errors import XdkdError

ENV = {"datasets": "XDKD_DATASETS", "baselines": "XDKD_BASELINES"}


def shipped(folder: str) -> Path:
    """The package's own `datasets` or `baselines` folder: inside an installed wheel, else the
    checkout's top-level folder (a source tree or an editable install)."""
    spec = importlib.util.find_spec(f"benchmark.{folder}")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir():
            return Path(location)
    return Path(__file__).resolve().parents[1] / folder


def search_path(folder: str) -> list[Path]:
    """The folders `$XDKD_<FOLDER>` adds, in order, then the shipped one; a missing added
    folder is one line naming it."""
    added = [Path(entry) for entry in os.environ.get(ENV[folder], "").split(os.pathsep) if entry]
    for path in added:
        if not path.is_dir():
            raise XdkdError(f"{ENV[folder]}: no folder {path}; give folders of {folder} files")
    return [*added, shipped(folder)]
