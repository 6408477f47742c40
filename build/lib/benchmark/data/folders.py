"""Image-folder families (Office-31, Office-Home, PACS, VLCS, VisDA-2017) and list-file
families (DomainNet) read from the data root.

An image folder has one sub-folder per class, images at any depth inside it; a label is the
class's position in the family's `classes`. A list file holds `relative/path.jpg LABEL` lines
(DomainNet, Peng et al. 2019; the same format as MNIST-M's label files).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmark.data.images import is_image
from benchmark.data.sources import READERS, Need, SplitSource
from benchmark.data.splits import split_indices
from benchmark.errors import XdkdError
from benchmark.registry import unknown_name_message
from benchmark.suite.families import DomainInfo


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder`, at any depth, sorted; hidden entries skipped."""
    return sorted(
        path
        for path in folder.rglob("*")
        if is_image(path)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    )


def class_folders(folder: Path) -> dict[str, list[Path]]:
    """Sub-folder name -> its image files, for every visible sub-folder of `folder`."""
    return {
        sub.name: image_files(sub)
        for sub in sorted(folder.iterdir())
        if sub.is_dir() and not sub.name.startswith(".")
    }


def labelled(
    found: dict[str, list[Path]], classes: tuple[str, ...]
) -> tuple[list[Path], np.ndarray]:
    """(image files, labels) of the class folders in `found`, in class order."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = found.get(name, [])
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, dtype=np.int64)


def read_list(
    list_file: Path, base: Path, classes: tuple[str, ...]
) -> tuple[list[Path], np.ndarray]:
    """(image files under `base`, labels) from `relative/path LABEL` lines; blank lines skipped."""
    paths, labels = [], []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) >= len(classes):
            raise XdkdError(
                f"{list_file}:{number}: expected 'relative/path.jpg LABEL' with LABEL in "
                f"0..{len(classes) - 1}, got {line.strip()!r}"
            )
        paths.append(base / parts[0])
        labels.append(int(parts[1]))
    return paths, np.array(labels, dtype=np.int64)


def image_source(paths: list[Path], labels: np.ndarray, folder: Path) -> SplitSource:
    """A split of image files; the manifest names them relative to the domain's folder."""
    files = [os.path.relpath(path, folder) for path in paths]
    return SplitSource(labels=labels, files=files, paths=paths)


@READERS.register("image_folder")
class ImageFolder:
    def needs(self, info: DomainInfo, folder: Path) -> list[Need]:
        return [Need(folder / info.entry.path, folder=True)]

    def read(self, info: DomainInfo, folder: Path) -> dict[str, SplitSource]:
        base = folder / info.entry.path
        found = class_folders(base)
        unknown = [name for name in found if name not in info.classes]
        if unknown:  # most likely a misspelt class, whose images would silently be lost
            raise XdkdError(
                f"domain '{info.name}' ({info.family}): folder {base / unknown[0]}: "
                f"{unknown_name_message('class', unknown[0], list(info.classes))}; "
                f"xdkd datasets check {info.family} lists every problem"
            )
        paths, labels = labelled(found, info.classes)
        train, test = split_indices(labels, info.split_group) if paths else ([], [])
        return {
            split: image_source([paths[i] for i in index], labels[index], folder)
            for split, index in (("train", train), ("test", test))
        }


@READERS.register("image_list")
class ImageList:
    def needs(self, info: DomainInfo, folder: Path) -> list[Need]:
        entry = info.entry
        return [
            Need(folder / entry.path, folder=True),
            Need(folder / entry.train_list, folder=False),
            Need(folder / entry.test_list, folder=False),
        ]

    def read(self, info: DomainInfo, folder: Path) -> dict[str, SplitSource]:
        entry = info.entry
        sources = {}
        for split, list_file in (("train", entry.train_list), ("test", entry.test_list)):
            paths, labels = read_list(folder / list_file, folder / entry.path, info.classes)
            sources[split] = image_source(paths, labels, folder)
        return sources
