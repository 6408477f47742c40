"""MNIST, USPS, SVHN, SynDigits and MNIST-M in their published file formats, official splits.

MNIST (LeCun et al. 1998) and USPS (Hull 1994) are read by torchvision's own dataset classes
(download=False). SVHN (Netzer et al. 2011) and SynDigits (Ganin et al. 2016) share SVHN's
.mat format, read with scipy as torchvision's SVHN does: its class accepts only the official
SVHN file names and checksums, so it cannot read SynDigits. MNIST-M (Ganin et al. 2016) is a
folder of PNGs with label files. Every image keeps its native size until the cache resizes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.data.folders import image_source, read_list
from benchmark.data.sources import READERS, Need, SplitSource
from benchmark.suite.families import DomainInfo

SPLITS = ("train", "test")
MNIST_PREFIX = {"train": "train", "test": "t10k"}
USPS_FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}


def _idx_files(split: str) -> list[str]:
    prefix = MNIST_PREFIX[split]
    return [f"MNIST/raw/{prefix}-images-idx3-ubyte", f"MNIST/raw/{prefix}-labels-idx1-ubyte"]


@READERS.register("mnist_idx")
class MnistIdx:
    def needs(self, info: DomainInfo, folder: Path) -> list[Need]:
        return [Need(folder / name, False) for split in SPLITS for name in _idx_files(split)]

    def read(self, info: DomainInfo, folder: Path) -> dict[str, SplitSource]:
        from torchvision.datasets import MNIST

        sources = {}
        for split in SPLITS:
            data = MNIST(str(folder), train=split == "train", download=False)
            labels = data.targets.numpy().astype(np.int64)
            sources[split] = SplitSource(labels, _idx_files(split), arrays=data.data.numpy())
        return sources


@READERS.register("usps_bz2")
class UspsBz2:
    def needs(self, info: DomainInfo, folder: Path) -> list[Need]:
        return [Need(folder / USPS_FILES[split], False) for split in SPLITS]

    def read(self, info: DomainInfo, folder: Path) -> dict[str, SplitSource]:
        from torchvision.datasets import USPS

        sources = {}
        for split in SPLITS:
            data = USPS(str(folder), train=split == "train", download=False)
            labels = np.asarray(data.targets, dtype=np.int64)
            sources[split] = SplitSource(labels, [USPS_FILES[split]], arrays=data.data)
        return sources


@READERS.register("svhn_mat")
class SvhnMat:
    def needs(self, info: DomainInfo, folder: Path) -> list[Need]:
        return [
            Need(folder / info.entry.train_file, False),
            Need(folder / info.entry.test_file, False),
        ]

    def read(self, info: DomainInfo, folder: Path) -> dict[str, SplitSource]:
        from scipy.io import loadmat

        sources = {}
        for split, name in (("train", info.entry.train_file), ("test", info.entry.test_file)):
            mat = loadmat(folder / name, variable_names=["X", "y"])
            images = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2)), dtype=np.uint8)
            labels = mat["y"].astype(np.int64).reshape(-1)
            labels[labels == 10] = 0  # SVHN labels the digit 0 as 10
            sources[split] = SplitSource(labels, [name], arrays=images)  # HWCN became NHWC
        return sources


@READERS.register("mnistm_folder")
class MnistmFolder:
    def needs(self, info: DomainInfo, folder: Path) -> list[Need]:
        return [
            need
            for split in SPLITS
            for need in (
                Need(folder / f"mnist_m_{split}", True),
                Need(folder / f"mnist_m_{split}_labels.txt", False),
            )
        ]

    def read(self, info: DomainInfo, folder: Path) -> dict[str, SplitSource]:
        sources = {}
        for split in SPLITS:
            labels_file = folder / f"mnist_m_{split}_labels.txt"
            paths, labels = read_list(labels_file, folder / f"mnist_m_{split}", info.classes)
            sources[split] = image_source(paths, labels, folder)
        return sources
