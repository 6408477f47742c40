"""Camelyon17-WILDS (Koh et al. ICML 2021; Bandi et al. 2018) as WILDS v1.0 publishes it.

`metadata.csv` holds one row per 96x96 patch: `,patient,node,x_coord,y_coord,tumor,slide,
center,split` (the first, unnamed column the index); the patch is
patches/patient_{patient}_node_{node}/patch_patient_{patient}_node_{node}_x_{x}_y_{y}.png, the
patient zero-padded to three digits, as WILDS's `camelyon17_dataset.py` builds the names. A
domain is one hospital (`center`); its label is `tumor` (1: tumour tissue in the central
32x32 region). WILDS's own split is by hospital, so within one a seeded stratified 80/20 split
is drawn, as for image folders.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from benchmark.data.folders import image_source
from benchmark.data.sources import READERS, Need, SplitSource
from benchmark.data.splits import split_indices
from benchmark.errors import XdkdError
from benchmark.suite.families import DomainInfo

COLUMNS = ("patient", "node", "x_coord", "y_coord", "tumor", "center")
PATCHES = "patches"


def patch_path(folder: Path, patient: str, node: str, x: str, y: str) -> Path:
    """Where WILDS puts a patch; the patient keeps (or regains) its three-digit zero padding."""
    slide = f"patient_{patient.zfill(3)}_node_{node}"
    return folder / PATCHES / slide / f"patch_{slide}_x_{x}_y_{y}.png"


def centre_rows(metadata: Path, centre: int) -> list[dict[str, str]]:
    """The rows of one hospital, in file order; a file without WILDS's columns, or a row
    whose `tumor` is not 0 or 1, is one line naming the file (and the line)."""
    with metadata.open(newline="") as file:
        reader = csv.DictReader(file)
        absent = [name for name in COLUMNS if name not in (reader.fieldnames or [])]
        if absent:
            raise XdkdError(
                f"{metadata}: no column {', '.join(absent)}; expected WILDS v1.0's header "
                "',patient,node,x_coord,y_coord,tumor,slide,center,split'"
            )
        rows = []
        for row in reader:
            if row["center"].strip() != str(centre):
                continue
            if row["tumor"].strip() not in ("0", "1"):
                raise XdkdError(
                    f"{metadata}:{reader.line_num}: tumor must be 0 or 1, got {row['tumor']!r}"
                )
            rows.append(row)
    return rows


def _missing_patch(info: DomainInfo, paths: list[Path], metadata: Path) -> None:
    """One line naming the first listed patch that is not there, and how many are not."""
    absent = [path for path in paths if not path.is_file()]
    if absent:
        raise XdkdError(
            f"domain '{info.name}' ({info.family}): no file {absent[0]} ({len(absent)} of the "
            f"{len(paths)} patches {metadata.name} lists for centre {info.entry.center} are "
            f"missing); expected layout {info.entry.layout}; get it from {info.entry.homepage}"
        )


@READERS.register("camelyon17")
class Camelyon17:
    def needs(self, info: DomainInfo, folder: Path) -> list[Need]:
        return [Need(folder / info.entry.metadata, folder=False), Need(folder / PATCHES, True)]

    def read(self, info: DomainInfo, folder: Path) -> dict[str, SplitSource]:
        metadata = folder / info.entry.metadata
        rows = centre_rows(metadata, info.entry.center)
        paths = [
            patch_path(folder, r["patient"], r["node"], r["x_coord"], r["y_coord"]) for r in rows
        ]
        _missing_patch(info, paths, metadata)
        labels = np.array([int(row["tumor"]) for row in rows], dtype=np.int64)
        train, test = split_indices(labels, info.split_group) if paths else ([], [])
        return {
            split: image_source([paths[i] for i in index], labels[index], folder)
            for split, index in (("train", train), ("test", test))
        }
