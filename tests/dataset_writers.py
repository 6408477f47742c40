"""Tiny datasets in every published format, written into a test's tmp_path.

Every image of class c is one flat grey level, LEVEL * c + 10 (colour images: that level in
every channel), so a test can read a label back from the pixels after any resize.
"""

from __future__ import annotations

import bz2
import struct
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

LEVEL = 20
DIGITS = [str(d) for d in range(10)]


def level(label: int) -> int:
    return LEVEL * label + 10


def flat(label: int, height: int, width: int, channels: int = 0) -> np.ndarray:
    shape = (height, width, channels) if channels else (height, width)
    return np.full(shape, level(label), dtype=np.uint8)


def cycle_labels(count: int, classes: int = 10) -> np.ndarray:
    return np.arange(count, dtype=np.int64) % classes


def write_family(datasets: Path, body: dict) -> Path:
    datasets.mkdir(parents=True, exist_ok=True)
    path = datasets / f"{body['family']}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _idx(path: Path, array: np.ndarray) -> None:
    """The idx format MNIST ships in: magic (0x08 = uint8, number of dims), sizes, bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(folder: Path, train: int = 20, test: int = 10) -> None:
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = cycle_labels(count)
        _idx(raw / f"{prefix}-images-idx3-ubyte", np.stack([flat(y, 28, 28) for y in labels]))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def write_usps(folder: Path, train: int = 20, test: int = 10) -> None:
    """LIBSVM lines `label index:value ...`, labels 1..10 for digits 0..9, values in [-1, 1]."""
    folder.mkdir(parents=True)
    for name, count in (("usps.bz2", train), ("usps.t.bz2", test)):
        lines = []
        for label in cycle_labels(count):
            value = level(label) / 255 * 2 - 1
            pixels = " ".join(f"{index}:{value:.6f}" for index in range(1, 257))
            lines.append(f"{label + 1} {pixels}\n")
        (folder / name).write_bytes(bz2.compress("".join(lines).encode()))


def write_svhn(folder: Path, train_file: str, test_file: str, train: int = 20, test: int = 10):
    """SVHN's .mat layout: X (32, 32, 3, N) uint8, y (N, 1) with the digit 0 labelled 10."""
    from scipy.io import savemat

    folder.mkdir(parents=True)
    for name, count in ((train_file, train), (test_file, test)):
        labels = cycle_labels(count)
        images = np.stack([flat(y, 32, 32, 3) for y in labels], axis=-1)
        savemat(folder / name, {"X": images, "y": np.where(labels == 0, 10, labels)[:, None]})


def write_mnistm(folder: Path, train: int = 20, test: int = 10) -> None:
    for split, count in (("train", train), ("test", test)):
        images = folder / f"mnist_m_{split}"
        images.mkdir(parents=True)
        lines = []
        for index, label in enumerate(cycle_labels(count)):
            name = f"{index:08d}.png"
            Image.fromarray(flat(label, 28, 28, 3)).save(images / name)
            lines.append(f"{name} {label}\n")
        (folder / f"mnist_m_{split}_labels.txt").write_text("".join(lines))


def save_image(path: Path, label: int, size: tuple[int, int] = (24, 16)) -> Path:
    """A flat image of `label` at (width, height), in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(flat(label, size[1], size[0], 3)).save(path, quality=95)
    return path


def save_truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: PIL opens it, then fails to load it to the end."""
    save_image(path, 0, (64, 48))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


OFFICE_CLASSES = ["back_pack", "bike", "mug"]


def office_family(name: str = "fxoffice", domains: tuple[str, ...] = ("amazon", "webcam", "dslr")):
    return {
        "family": name,
        "description": "An Office-31-like fixture",
        "classes": OFFICE_CLASSES,
        "licence": "test fixture",
        "homepage": "https://example.org/office",
        "root": name,
        "layout": f"{name}/<domain>/images/<class>/<image>.jpg",
        "domains": {
            f"{name}_{domain}": {"kind": "image_folder", "path": f"{domain}/images", "images": 12}
            for domain in domains
        },
    }


def write_office_tree(root: Path, name: str = "fxoffice", per_class: int = 4) -> None:
    """amazon: every class, one `.JPG` upper-case file and one truncated JPEG in mug;
    webcam: no `bike` folder, a `.jpg` that is no image; dslr: an empty images/ folder."""
    base = root / name
    for label, cls in enumerate(OFFICE_CLASSES):
        for index in range(per_class):
            suffix = ".JPG" if (label, index) == (1, 0) else ".jpg"
            save_image(base / "amazon" / "images" / cls / f"frame_{index:04d}{suffix}", label)
            if cls != "bike":
                save_image(base / "webcam" / "images" / cls / f"frame_{index:04d}.jpg", label)
    save_truncated_jpeg(base / "amazon" / "images" / "mug" / "frame_0099.jpg")
    (base / "webcam" / "images" / "mug" / "notes.jpg").write_bytes(b"not a picture")
    (base / "dslr" / "images").mkdir(parents=True)


def write_domainnet(root: Path, per_class: int = 5) -> None:
    """domainnet-style: <domain>/<class>/<image>.jpg with <domain>_{train,test}.txt beside them."""
    base = root / "fxnet"
    for split, first in (("train", 0), ("test", per_class)):
        lines = []
        for label, cls in enumerate(OFFICE_CLASSES):
            for index in range(first, first + (per_class if split == "train" else 2)):
                relative = f"clipart/{cls}/clipart_{index:03d}.jpg"
                save_image(base / relative, label, (20, 30))
                lines.append(f"{relative} {label}\n")
        (base / f"clipart_{split}.txt").write_text("".join(lines))


NET_FAMILY = {
    "family": "fxnet",
    "classes": OFFICE_CLASSES,
    "licence": "test fixture",
    "homepage": "https://example.org/net",
    "root": "fxnet",
    "layout": "fxnet/<domain>/<class>/<image>.jpg and fxnet/<domain>_{train,test}.txt",
    "domains": {
        "fxnet_clipart": {
            "kind": "image_list",
            "train_list": "clipart_train.txt",
            "test_list": "clipart_test.txt",
            "images": 21,
        }
    },
}


def write_digits(root: Path) -> None:
    """Every published digit format, where datasets/digits.yaml looks for it."""
    write_mnist(root / "mnist")
    write_usps(root / "usps")
    write_svhn(root / "svhn", "train_32x32.mat", "test_32x32.mat")
    write_svhn(root / "syndigits", "synth_train_32x32.mat", "synth_test_32x32.mat")
    write_mnistm(root / "mnist_m")


def use_fixtures(tmp_path: Path, monkeypatch) -> Path:
    """Family files (fxoffice, fxnet; beside the shipped ones, digits.yaml among them), a data
    root holding every fixture, and a fresh cache, all under tmp_path; returns the data root."""
    datasets, root = tmp_path / "datasets", tmp_path / "data"
    datasets.mkdir()
    write_family(datasets, office_family())
    write_family(datasets, NET_FAMILY)
    write_digits(root)
    write_office_tree(root)
    write_domainnet(root)
    monkeypatch.setenv("XDKD_DATASETS", str(datasets))
    monkeypatch.setenv("XDKD_DATA", str(root))
    monkeypatch.setenv("XDKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("XDKD_BAD_IMAGES", raising=False)
    monkeypatch.delenv("XDKD_DEVICE_DATA_GB", raising=False)
    return root


CAMELYON_HEADER = ",patient,node,x_coord,y_coord,tumor,slide,center,split\n"


def write_camelyon(root: Path, per_class: int = 3, centres: int = 5) -> Path:
    """WILDS v1.0's camelyon17_v1.0/: metadata.csv and flat 12x12 PNG patches, `per_class`
    normal and tumour patches per centre C, from patient `0CC` (ids keep their leading zero)."""
    base = root / "camelyon17_v1.0"
    lines, index = [CAMELYON_HEADER], 0
    for centre in range(centres):
        patient, node = f"0{centre}{centre}", centre % 5
        slide = f"patient_{patient}_node_{node}"
        for tumor in (0, 1) * per_class:
            x, y = 96 * index, 32 * index + 1
            save_image(base / "patches" / slide / f"patch_{slide}_x_{x}_y_{y}.png", tumor, (12, 12))
            lines.append(f"{index},{patient},{node},{x},{y},{tumor},{centre},{centre},0\n")
            index += 1
    (base / "metadata.csv").write_text("".join(lines))
    return base
