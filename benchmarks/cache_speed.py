"""Times the cache of an image-folder domain on this machine: the first load (decode, resize,
write), a later load (manifest, verification, memory maps) and reading every image once, at
32 and 224 px, with the sizes on disk.

    .venv/bin/python benchmarks/cache_speed.py [--images 3000] [--sizes 32 224]

Writes a fixture family (random JPEGs of 64-96 px a side, 10 classes) and a fresh cache into
a temporary folder, removed at the end, so nothing is reused from earlier runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

CLASSES = [f"class_{index}" for index in range(10)]


def write_fixture(root: Path, count: int) -> None:
    """`count` JPEGs of random size and content under root/speed/<class>/, and its family file."""
    rng = np.random.default_rng(0)
    for index in range(count):
        width, height = rng.integers(64, 97, size=2)
        pixels = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
        folder = root / "data" / "speed" / CLASSES[index % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:05d}.jpg", quality=90)
    family = {
        "family": "speed",
        "classes": CLASSES,
        "licence": "generated",
        "homepage": "benchmarks/cache_speed.py",
        "root": "speed",
        "layout": "speed/<class>/<image>.jpg",
        "domains": {"speed": {"kind": "image_folder", "path": ".", "images": count}},
    }
    (root / "datasets").mkdir()
    (root / "datasets" / "speed.yaml").write_text(yaml.safe_dump(family))


def megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def timed(action, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = action(*args, **kwargs)
    return time.perf_counter() - started, result


def read_all(*arrays: np.ndarray) -> int:
    return sum(int(array.sum()) for array in arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xdkd-cache-speed-") as folder:
        measure(Path(folder), args.images, args.sizes)


def measure(root: Path, count: int, sizes: list[int]) -> None:
    seconds, _ = timed(write_fixture, root, count)
    os.environ |= {
        "XDKD_DATASETS": str(root / "datasets"),
        "XDKD_DATA": str(root / "data"),
        "XDKD_CACHE": str(root / "cache"),
    }

    from benchmark.data.cache import published_path
    from benchmark.data.domains import load_domain
    from benchmark.data.settings import data_workers

    print(
        f"{count} JPEGs (64-96 px), {megabytes(root / 'data'):.1f} MB, written in "
        f"{seconds:.1f} s; {data_workers()} decoding workers, {os.cpu_count()} CPUs"
    )
    for size in sizes:
        build, _ = timed(load_domain, "speed", size=size)
        load, splits = timed(load_domain, "speed", size=size)
        read, _ = timed(read_all, splits.train_images, splits.test_images)
        print(
            f"{size:>4} px: first load (decode, resize, write) {build:.2f} s; later load "
            f"{load:.3f} s; reading every image once {read:.3f} s; "
            f"{megabytes(published_path('speed', size)):.1f} MB on disk"
        )
        del splits  # release the memory maps before the folder goes


if __name__ == "__main__":
    main()
