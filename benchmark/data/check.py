"""`xdkd datasets check FAMILY`: is a family's data under the data root whole and as declared?

Per domain: its folders and files are there; every class of the family has images (and an
image folder has no sub-folder that is not a class); the image count matches the family file
(a warning: releases differ by a few images); every image decodes to its end. Errors make the
check fail; warnings do not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from benchmark.data.folders import class_folders, labelled
from benchmark.data.images import decode_images
from benchmark.data.readers import missing, read_domain
from benchmark.data.settings import data_workers
from benchmark.data.sources import images_folder
from benchmark.errors import XdkdError
from benchmark.registry import unknown_name_message
from benchmark.suite.families import DomainInfo, domain_info, family_domains, family_names

CHECK_SIZE = 32  # every file is read to its end; how big its decoded copy is does not matter


@dataclass
class DomainReport:
    name: str
    summary: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _folder_inventory(
    info: DomainInfo, root: Path, report: DomainReport
) -> tuple[list, np.ndarray]:
    """An image folder's files and labels, reporting class folders missing, empty or unknown."""
    base = images_folder(info, root)
    found = class_folders(base)
    paths, labels = labelled(found, info.classes)
    if not paths:
        return paths, labels
    for name in info.classes:
        if name not in found:
            report.errors.append(f"class '{name}' is missing: no folder {base / name}")
        elif not found[name]:
            report.errors.append(f"class '{name}' has no images in {base / name}")
    for name in found:
        if name not in info.classes:
            message = unknown_name_message("class", name, list(info.classes))
            report.errors.append(f"folder {base / name} is not a class: {message}")
    return paths, labels


def _inventory(info: DomainInfo, root: Path, report: DomainReport) -> tuple[list, np.ndarray]:
    """(image files to decode, empty for array formats; labels of every image)."""
    if info.entry.kind == "image_folder":
        return _folder_inventory(info, root, report)
    sources = read_domain(info, root).values()
    paths = [path for source in sources for path in source.paths or []]
    labels = np.concatenate([source.labels for source in sources])
    if len(labels):
        for label in sorted(set(range(len(info.classes))) - set(labels.tolist())):
            report.errors.append(f"class '{info.classes[label]}' has no images")
    return paths, labels


def check_domain(info: DomainInfo, root: Path) -> DomainReport:
    report = DomainReport(info.name, "")
    if info.embedded:
        report.summary = "embedded (built from installed packages), nothing to check"
        return report
    problem = missing(info, root)
    if problem:
        report.summary = "missing"
        report.errors.append(problem)
        return report
    try:
        paths, labels = _inventory(info, root, report)
    except XdkdError as error:
        report.summary = "unreadable"
        report.errors.append(str(error))
        return report
    if not len(labels):
        report.summary = "empty"
        report.errors.append(f"no images in {images_folder(info, root)}")
        return report
    classes = len(np.unique(labels))
    report.summary = f"{len(labels)} images in {classes} classes"
    if len(labels) != info.entry.images:
        report.warnings.append(
            f"{len(labels)} images, but {info.file.name} says {info.entry.images}"
        )
    bar = tqdm(total=len(paths), desc=info.name, unit="image", leave=False, mininterval=1.0)
    for images, failed in decode_images(paths, CHECK_SIZE, data_workers()):
        report.errors += [f"unreadable image {paths[index]}: {reason}" for index, reason in failed]
        bar.update(len(images) + len(failed))
    bar.close()
    return report


@dataclass(frozen=True)
class CheckedFamily:
    """What `--root` was taken to be: the data root, or the family's own folder (the folder
    a user just unpacked, whatever its name), which is read as the family's `root` there."""

    domains: list[DomainInfo]
    root: Path
    family_folder: bool

    @property
    def description(self) -> str:
        folders = ", ".join(sorted({f"{info.entry.root}/" for info in self._published}))
        if self.family_folder:
            return f"in {self.root} (taken as the family's own folder: what {folders} holds)"
        return f"under {self.root} (taken as the data root, holding {folders or 'nothing'})"

    @property
    def _published(self) -> list[DomainInfo]:
        return [domain_info(info.name) for info in self.domains if not info.embedded]


def locate_family(family: str, root: Path) -> CheckedFamily:
    """`root` is the data root when it holds one of the family's folders; otherwise, when
    it is a folder, the family's own folder: its domains are then looked for right in it."""
    if family not in family_names():
        raise XdkdError(unknown_name_message("dataset family", family, family_names()))
    domains = [domain_info(name) for name in family_domains(family)]
    published = [info for info in domains if not info.embedded]
    if not root.is_dir() or not published or any((root / i.entry.root).exists() for i in published):
        return CheckedFamily(domains, root, family_folder=False)
    moved = [
        dataclasses.replace(info, entry=info.entry.model_copy(update={"root": "."}))
        if not info.embedded
        else info
        for info in domains
    ]
    return CheckedFamily(moved, root, family_folder=True)


def check_family(located: CheckedFamily) -> Iterator[DomainReport]:
    """One report per domain of the family, in the family file's order, as each is done."""
    for info in located.domains:
        yield check_domain(info, located.root)
